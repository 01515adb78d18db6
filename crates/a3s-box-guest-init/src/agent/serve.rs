//! Reading the host's frames on the main thread: first the boot spec, then
//! container requests, processes, signals, stdin, credit, interfaces
//! (`network connect`/`disconnect`) and shutdown for as long as the VM
//! lives.
//!
//! Before `Boot`, the end of the port means the host is not connected yet
//! (a VM restored from a snapshot gets a new host end): guest-init waits
//! for one. After it, the end of the port powers off.
//!
//! Errors are of two kinds. A frame that cannot be decoded, or stdin beyond
//! the granted credit, is a protocol error: fatal for the session (`Fatal`,
//! then power off). A well-formed message that makes no sense here (a second
//! `Boot`, output data from the host) is logged and ignored.

use std::io::Read;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use a3s_box_core::guest::message::{BootSpec, HostMessage, Message};
use a3s_box_core::guest::{Frame, StdStream};

use crate::agent::port::Port;
use crate::agent::session::Session;
use crate::error::InitError;
use crate::pid1::log::{debug, warning};
use crate::pid1::power;

/// How often guest-init looks for a host before `Boot`.
const HOST_POLL: Duration = Duration::from_millis(20);

/// Read the next frame, `None` at the end of the port; a frame that loses
/// the framing ends the VM.
fn read_frame(port: &Port, reader: &mut impl Read) -> Option<Frame> {
    loop {
        match Frame::read_from(reader) {
            Ok(frame) => return frame,
            // A bad frame that left the stream in sync costs only itself.
            Err(e) if e.is_recoverable() => {
                warning!("skipping a bad frame from the host: {e}");
            }
            Err(e) => power::fatal(Some(port), &InitError::Port(e).to_string()),
        }
    }
}

/// Read the next frame; the end of the port ends the VM.
fn next_frame(port: &Port, reader: &mut impl Read) -> Frame {
    read_frame(port, reader).unwrap_or_else(|| {
        warning!("host closed the agent port");
        power::power_off()
    })
}

/// Wait for `Boot`. `Shutdown` before it powers off; anything else is
/// ignored; no host yet is waited for.
pub fn await_boot(port: &Port, reader: &mut impl Read) -> BootSpec {
    let mut waiting = false;
    loop {
        let Some(frame) = read_frame(port, reader) else {
            if !waiting {
                debug!("no host on the agent port: waiting for one");
                waiting = true;
            }
            thread::sleep(HOST_POLL);
            continue;
        };
        match frame {
            Frame::Control(Message::Host(HostMessage::Boot(spec))) => return spec,
            Frame::Control(Message::Host(HostMessage::Shutdown)) => {
                debug!("shutdown before boot");
                power::power_off()
            }
            other => warning!("ignoring {} before boot", describe(&other)),
        }
    }
}

/// Serve the host until it shuts the VM down or goes away.
pub fn serve(session: &Arc<Session>, mut reader: impl Read) -> ! {
    loop {
        let frame = next_frame(session.port(), &mut reader);
        if let Err(e) = dispatch(session, frame) {
            power::fatal(Some(session.port()), &e.to_string());
        }
    }
}

fn dispatch(session: &Arc<Session>, frame: Frame) -> Result<(), InitError> {
    match frame {
        Frame::Control(Message::Host(HostMessage::Shutdown)) => {
            debug!("shutdown requested");
            power::power_off()
        }
        Frame::Control(Message::Host(HostMessage::Signal { process, signal })) => {
            debug!("signal {signal} for process {process}");
            session.signal(process, signal);
        }
        Frame::Control(Message::Host(HostMessage::Exec(spec))) => {
            debug!("exec process {}", spec.process);
            session.exec(spec);
        }
        Frame::Control(Message::Host(HostMessage::Start(spec))) => {
            debug!("start process {} as a main process", spec.process);
            session.start(spec);
        }
        Frame::Control(Message::Host(HostMessage::CreateContainer(spec))) => {
            debug!("create container {}", spec.id);
            session.create_container(spec);
        }
        Frame::Control(Message::Host(HostMessage::RemoveContainer { container, discard })) => {
            debug!("remove container {container}");
            session.remove_container(container, discard);
        }
        Frame::Control(Message::Host(HostMessage::Resize { process, size })) => {
            session.resize(process, size);
        }
        Frame::Control(Message::Host(HostMessage::ConfigureInterface(iface))) => {
            debug!("configure interface {}", iface.mac);
            session.configure_interface(iface);
        }
        Frame::Control(Message::Host(HostMessage::DeconfigureInterface { mac })) => {
            debug!("deconfigure interface {mac}");
            session.deconfigure_interface(mac);
        }
        Frame::Data {
            process,
            stream: StdStream::Stdin,
            bytes,
        } => session.stdin_data(process, bytes),
        Frame::Eof {
            process,
            stream: StdStream::Stdin,
        } => session.stdin_eof(process),
        Frame::Credit {
            process,
            stream: stream @ (StdStream::Stdout | StdStream::Stderr),
            bytes,
        } => {
            if !session.credits().grant(process, stream, bytes) {
                debug!("credit for closed stream {stream:?} of process {process}");
            }
        }
        other => warning!("ignoring {}", describe(&other)),
    }
    Ok(())
}

/// A short description of a frame for the log (no payload bytes).
fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Control(Message::Host(HostMessage::Boot(_))) => "boot message".into(),
        Frame::Control(msg) => format!("control message {msg:?}"),
        Frame::Data {
            process, stream, ..
        } => format!("{stream:?} data for process {process}"),
        Frame::Eof { process, stream } => format!("{stream:?} eof for process {process}"),
        Frame::Credit {
            process, stream, ..
        } => format!("{stream:?} credit for process {process}"),
    }
}
