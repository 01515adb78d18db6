//! Routing the guest channel between a sandbox's clients.
//!
//! One channel carries every process of a sandbox. A container's main
//! process's output goes to the container's sink (its log or our terminal)
//! and to the clients attached to that container; every other process
//! belongs to exactly one exec client. The
//! router keeps the books that make a client's failure its own: credit it
//! received but never returned is given back when it goes, so the guest
//! never stalls, and its process is killed, so nothing keeps running
//! without an owner. A client that sends more stdin than the guest granted
//! loses its stdin instead of breaking the channel for everyone.

use std::collections::{HashMap, VecDeque};

use a3s_box_core::guest::message::{GuestMessage, HostMessage, Message, ProcessSpec};
use a3s_box_core::guest::{Frame, StdStream, STREAM_WINDOW_BYTES};
use tokio::sync::mpsc::UnboundedSender;

/// The first container's main process has this id on the wire (others
/// get ids from the sandbox's counter, as exec processes do).
pub const MAIN_PROCESS: u32 = 1;

/// Frames to one client.
pub type ClientTx = UnboundedSender<Frame>;

#[derive(Debug)]
struct Exec {
    /// `None` once the client has gone.
    tx: Option<ClientTx>,
    /// Output bytes forwarded and not yet credited back by the client.
    out_unacked: [u32; 2],
    /// Stdin bytes sent to the guest and not yet credited by it.
    in_flight: u32,
    stdin_open: bool,
    exited: bool,
    /// Leave the process running when the client goes.
    detach: bool,
}

/// A client attached to a container's main process.
#[derive(Debug)]
struct Attached {
    container: String,
    tx: ClientTx,
    /// Whether it may write the main process's stdin.
    stdin: bool,
}

/// A container's main process, as the router sees it.
#[derive(Debug, Default)]
struct Main {
    /// Its id on the wire, while it runs.
    process: Option<u32>,
    /// Stdin in flight (all attached writers share it).
    in_flight: u32,
    /// Its latest output, for clients that attach late.
    recent: VecDeque<(StdStream, Vec<u8>)>,
    recent_bytes: usize,
}

/// Who gets what on one sandbox's channel.
#[derive(Debug, Default)]
pub struct Router {
    execs: HashMap<u32, Exec>,
    attached: HashMap<u32, Attached>,
    mains: HashMap<String, Main>,
}

/// Output of the main process kept for a late attach (`run -it` attaches
/// just after the box starts, and should see the first prompt).
const RECENT_OUTPUT_BYTES: usize = 64 * 1024;

fn out_index(stream: StdStream) -> Option<usize> {
    match stream {
        StdStream::Stdout => Some(0),
        StdStream::Stderr => Some(1),
        StdStream::Stdin => None,
    }
}

fn to_guest(msg: HostMessage) -> Frame {
    Frame::Control(Message::Host(msg))
}

impl Router {
    /// Register an exec client and return the frame that starts its process.
    pub fn exec(
        &mut self,
        mut spec: ProcessSpec,
        process: u32,
        tx: ClientTx,
        detach: bool,
    ) -> Frame {
        spec.process = process;
        self.execs.insert(
            process,
            Exec {
                tx: Some(tx),
                out_unacked: [0; 2],
                in_flight: 0,
                stdin_open: spec.stdin,
                exited: false,
                detach,
            },
        );
        to_guest(HostMessage::Exec(spec))
    }

    /// Attach a client (numbered `client`) to `container`'s main process
    /// (running or about to start); with `replay` it first gets the latest
    /// output.
    pub fn attach(
        &mut self,
        container: &str,
        client: u32,
        tx: ClientTx,
        stdin: bool,
        replay: bool,
    ) {
        let main = self.mains.entry(container.to_string()).or_default();
        if replay {
            let process = main.process.unwrap_or(MAIN_PROCESS);
            for (stream, bytes) in &main.recent {
                let _ = tx.send(Frame::Data {
                    process,
                    stream: *stream,
                    bytes: bytes.clone(),
                });
            }
        }
        self.attached.insert(
            client,
            Attached {
                container: container.to_string(),
                tx,
                stdin,
            },
        );
    }

    /// `container`'s main process started as `process`: its recent output
    /// starts over.
    pub fn main_started(&mut self, container: &str, process: u32) {
        let main = self.mains.entry(container.to_string()).or_default();
        *main = Main {
            process: Some(process),
            ..Main::default()
        };
    }

    /// The container whose main process is `process`.
    pub fn main_of(&self, process: u32) -> Option<&str> {
        self.mains
            .iter()
            .find(|(_, m)| m.process == Some(process))
            .map(|(c, _)| c.as_str())
    }

    /// Whether anyone is attached to `container`.
    pub fn has_attached(&self, container: &str) -> bool {
        self.attached.values().any(|a| a.container == container)
    }

    /// Whether `process` is a known exec process.
    pub fn is_exec(&self, process: u32) -> bool {
        self.execs.contains_key(&process)
    }

    /// Output of `container`'s main process: a copy for every client
    /// attached to it.
    pub fn main_output(&mut self, container: &str, stream: StdStream, bytes: &[u8]) {
        let main = self.mains.entry(container.to_string()).or_default();
        main.recent.push_back((stream, bytes.to_vec()));
        main.recent_bytes += bytes.len();
        while main.recent_bytes > RECENT_OUTPUT_BYTES {
            match main.recent.pop_front() {
                Some((_, old)) => main.recent_bytes -= old.len(),
                None => break,
            }
        }
        let process = main.process.unwrap_or(MAIN_PROCESS);
        self.attached.retain(|_, a| {
            a.container != container
                || a.tx
                    .send(Frame::Data {
                        process,
                        stream,
                        bytes: bytes.to_vec(),
                    })
                    .is_ok()
        });
    }

    /// A frame from the guest about a non-main process. Returns frames to
    /// send back to the guest (credit for output nobody will read).
    pub fn on_guest_frame(&mut self, frame: Frame) -> Vec<Frame> {
        let process = match &frame {
            Frame::Data { process, .. }
            | Frame::Eof { process, .. }
            | Frame::Credit { process, .. } => *process,
            Frame::Control(Message::Guest(
                GuestMessage::Started { process, .. }
                | GuestMessage::SpawnFailed { process, .. }
                | GuestMessage::Exited { process, .. },
            )) => *process,
            _ => return Vec::new(),
        };
        let Some(exec) = self.execs.get_mut(&process) else {
            // Output of a process nobody owns any more: keep it flowing.
            return match frame {
                Frame::Data { stream, bytes, .. } => vec![Frame::Credit {
                    process,
                    stream,
                    bytes: bytes.len() as u32,
                }],
                _ => Vec::new(),
            };
        };
        let mut back = Vec::new();
        match &frame {
            Frame::Data { stream, bytes, .. } => {
                let len = bytes.len() as u32;
                match (out_index(*stream), exec.tx.is_some()) {
                    (Some(i), true) => {
                        exec.out_unacked[i] = exec.out_unacked[i].saturating_add(len)
                    }
                    _ => back.push(Frame::Credit {
                        process,
                        stream: *stream,
                        bytes: len,
                    }),
                }
            }
            Frame::Credit {
                stream: StdStream::Stdin,
                bytes,
                ..
            } => exec.in_flight = exec.in_flight.saturating_sub(*bytes),
            Frame::Control(Message::Guest(
                GuestMessage::SpawnFailed { .. } | GuestMessage::Exited { .. },
            )) => exec.exited = true,
            _ => {}
        }
        let done = exec.exited;
        if let Some(tx) = &exec.tx {
            if tx.send(frame).is_err() {
                back.extend(Self::abandon(process, exec));
            }
        }
        if done {
            self.execs.remove(&process);
        }
        back
    }

    /// A frame from exec client `process`, rewritten for the guest.
    /// Returns what to send to the guest (nothing for a frame out of place).
    pub fn on_exec_input(&mut self, process: u32, frame: Frame) -> Option<Frame> {
        let exec = self.execs.get_mut(&process)?;
        if exec.exited {
            return None;
        }
        match frame {
            Frame::Data {
                stream: StdStream::Stdin,
                bytes,
                ..
            } if exec.stdin_open => {
                let len = bytes.len() as u32;
                if exec.in_flight.saturating_add(len) > STREAM_WINDOW_BYTES {
                    tracing::warn!(process, "client sent stdin beyond its credit: closing it");
                    exec.stdin_open = false;
                    return Some(Frame::Eof {
                        process,
                        stream: StdStream::Stdin,
                    });
                }
                exec.in_flight += len;
                Some(Frame::Data {
                    process,
                    stream: StdStream::Stdin,
                    bytes,
                })
            }
            Frame::Eof {
                stream: StdStream::Stdin,
                ..
            } if exec.stdin_open => {
                exec.stdin_open = false;
                Some(Frame::Eof {
                    process,
                    stream: StdStream::Stdin,
                })
            }
            Frame::Credit { stream, bytes, .. } => {
                let i = out_index(stream)?;
                // Never more than the client was given.
                let bytes = bytes.min(exec.out_unacked[i]);
                exec.out_unacked[i] -= bytes;
                Some(Frame::Credit {
                    process,
                    stream,
                    bytes,
                })
            }
            Frame::Control(Message::Host(HostMessage::Signal { signal, .. })) => {
                Some(to_guest(HostMessage::Signal { process, signal }))
            }
            Frame::Control(Message::Host(HostMessage::Resize { size, .. })) => {
                Some(to_guest(HostMessage::Resize { process, size }))
            }
            Frame::Control(Message::Host(HostMessage::Detach)) => {
                exec.detach = true;
                None
            }
            _ => None,
        }
    }

    /// A frame from attached client `client` for its container's main
    /// process (nothing while that process does not run).
    pub fn on_attached_input(&mut self, client: u32, frame: Frame) -> Option<Frame> {
        let attached = self.attached.get(&client)?;
        let main = self.mains.get_mut(&attached.container)?;
        let process = main.process?;
        match frame {
            Frame::Data {
                stream: StdStream::Stdin,
                bytes,
                ..
            } if attached.stdin => {
                let len = bytes.len() as u32;
                if main.in_flight.saturating_add(len) > STREAM_WINDOW_BYTES {
                    tracing::warn!(client, "attached client outran the stdin credit: dropped");
                    return None;
                }
                main.in_flight += len;
                Some(Frame::Data {
                    process,
                    stream: StdStream::Stdin,
                    bytes,
                })
            }
            Frame::Eof {
                stream: StdStream::Stdin,
                ..
            } if attached.stdin => Some(Frame::Eof {
                process,
                stream: StdStream::Stdin,
            }),
            Frame::Control(Message::Host(HostMessage::Resize { size, .. })) => {
                Some(to_guest(HostMessage::Resize { process, size }))
            }
            Frame::Control(Message::Host(HostMessage::Signal { signal, .. })) => {
                Some(to_guest(HostMessage::Signal { process, signal }))
            }
            _ => None,
        }
    }

    /// `container`'s main process ended (or never started): the clients
    /// attached to it learn its exit code and are let go.
    pub fn main_exited(&mut self, container: &str, exit_code: i32) {
        let main = self.mains.entry(container.to_string()).or_default();
        let exited = Frame::Control(Message::Guest(GuestMessage::Exited {
            process: main.process.take().unwrap_or(MAIN_PROCESS),
            exit_code,
        }));
        self.attached.retain(|_, a| {
            if a.container != container {
                return true;
            }
            let _ = a.tx.send(exited.clone());
            false
        });
    }

    /// The guest returned stdin credit of `container`'s main process.
    pub fn main_stdin_credit(&mut self, container: &str, bytes: u32) {
        let Some(main) = self.mains.get_mut(container) else {
            return;
        };
        main.in_flight = main.in_flight.saturating_sub(bytes);
        let credit = Frame::Credit {
            process: main.process.unwrap_or(MAIN_PROCESS),
            stream: StdStream::Stdin,
            bytes,
        };
        self.attached.retain(|_, a| {
            a.container != container || !a.stdin || a.tx.send(credit.clone()).is_ok()
        });
    }

    /// The VM is gone: every exec client is let go (its connection ends,
    /// which it sees as the box stopping), main processes are forgotten.
    /// Attached clients stay for a restart unless `detach_attached`.
    pub fn vm_ended(&mut self, detach_attached: bool) {
        self.execs.clear();
        for main in self.mains.values_mut() {
            main.process = None;
            main.in_flight = 0;
        }
        if detach_attached {
            self.attached.clear();
        }
    }

    /// `container` left the sandbox: its attached clients are let go.
    pub fn forget(&mut self, container: &str) {
        self.attached.retain(|_, a| a.container != container);
        self.mains.remove(container);
    }

    /// Client `id` went away (exec or attached). Returns frames for the
    /// guest: its unreturned credit, and a kill for a process still running.
    pub fn gone(&mut self, id: u32) -> Vec<Frame> {
        self.attached.remove(&id);
        match self.execs.get_mut(&id) {
            Some(exec) if exec.tx.is_some() => Self::abandon(id, exec),
            _ => Vec::new(),
        }
    }

    fn abandon(process: u32, exec: &mut Exec) -> Vec<Frame> {
        exec.tx = None;
        let mut back = Vec::new();
        if !exec.exited && !exec.detach {
            back.push(to_guest(HostMessage::Signal {
                process,
                signal: libc::SIGKILL,
            }));
        }
        for (i, stream) in [StdStream::Stdout, StdStream::Stderr]
            .into_iter()
            .enumerate()
        {
            let bytes = std::mem::take(&mut exec.out_unacked[i]);
            if bytes > 0 {
                back.push(Frame::Credit {
                    process,
                    stream,
                    bytes,
                });
            }
        }
        back
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
