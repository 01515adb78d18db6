//! Routing the guest channel between the box's clients.
//!
//! One channel carries every process of a box. The main process's output
//! goes to the box's sink (the log or our terminal) and to any attached
//! clients; every other process belongs to exactly one exec client. The
//! router keeps the books that make a client's failure its own: credit it
//! received but never returned is given back when it goes, so the guest
//! never stalls, and its process is killed, so nothing keeps running
//! without an owner. A client that sends more stdin than the guest granted
//! loses its stdin instead of breaking the channel for everyone.

use std::collections::{HashMap, VecDeque};

use a3s_box_core::guest::message::{GuestMessage, HostMessage, Message, ProcessSpec};
use a3s_box_core::guest::{Frame, StdStream, STREAM_WINDOW_BYTES};
use tokio::sync::mpsc::UnboundedSender;

/// The main process always has this id on the wire.
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

/// A client attached to the main process.
#[derive(Debug)]
struct Attached {
    tx: ClientTx,
    /// Whether it may write the main process's stdin.
    stdin: bool,
}

/// Who gets what on one box's channel.
#[derive(Debug, Default)]
pub struct Router {
    execs: HashMap<u32, Exec>,
    attached: HashMap<u32, Attached>,
    /// Main-process stdin in flight (all attached writers share it).
    main_in_flight: u32,
    /// The main process's latest output, for clients that attach late.
    recent: VecDeque<(StdStream, Vec<u8>)>,
    recent_bytes: usize,
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

    /// Attach a client (numbered `client`) to the main process; with
    /// `replay` it first gets the latest output.
    pub fn attach(&mut self, client: u32, tx: ClientTx, stdin: bool, replay: bool) {
        if replay {
            for (stream, bytes) in &self.recent {
                let _ = tx.send(Frame::Data {
                    process: MAIN_PROCESS,
                    stream: *stream,
                    bytes: bytes.clone(),
                });
            }
        }
        self.attached.insert(client, Attached { tx, stdin });
    }

    /// Whether `process` is a known exec process.
    pub fn is_exec(&self, process: u32) -> bool {
        self.execs.contains_key(&process)
    }

    /// Main-process output: a copy for every attached client.
    pub fn main_output(&mut self, stream: StdStream, bytes: &[u8]) {
        self.recent.push_back((stream, bytes.to_vec()));
        self.recent_bytes += bytes.len();
        while self.recent_bytes > RECENT_OUTPUT_BYTES {
            match self.recent.pop_front() {
                Some((_, old)) => self.recent_bytes -= old.len(),
                None => break,
            }
        }
        self.attached.retain(|_, a| {
            a.tx.send(Frame::Data {
                process: MAIN_PROCESS,
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

    /// A frame from attached client `client` for the main process.
    pub fn on_attached_input(&mut self, client: u32, frame: Frame) -> Option<Frame> {
        let attached = self.attached.get(&client)?;
        match frame {
            Frame::Data {
                stream: StdStream::Stdin,
                bytes,
                ..
            } if attached.stdin => {
                let len = bytes.len() as u32;
                if self.main_in_flight.saturating_add(len) > STREAM_WINDOW_BYTES {
                    tracing::warn!(client, "attached client outran the stdin credit: dropped");
                    return None;
                }
                self.main_in_flight += len;
                Some(Frame::Data {
                    process: MAIN_PROCESS,
                    stream: StdStream::Stdin,
                    bytes,
                })
            }
            Frame::Eof {
                stream: StdStream::Stdin,
                ..
            } if attached.stdin => Some(Frame::Eof {
                process: MAIN_PROCESS,
                stream: StdStream::Stdin,
            }),
            Frame::Control(Message::Host(HostMessage::Resize { size, .. })) => {
                Some(to_guest(HostMessage::Resize {
                    process: MAIN_PROCESS,
                    size,
                }))
            }
            Frame::Control(Message::Host(HostMessage::Signal { signal, .. })) => {
                Some(to_guest(HostMessage::Signal {
                    process: MAIN_PROCESS,
                    signal,
                }))
            }
            _ => None,
        }
    }

    /// The main process ended: attached clients learn its exit code.
    pub fn main_exited(&mut self, exit_code: i32) {
        let exited = Frame::Control(Message::Guest(GuestMessage::Exited {
            process: MAIN_PROCESS,
            exit_code,
        }));
        for (_, a) in self.attached.drain() {
            let _ = a.tx.send(exited.clone());
        }
    }

    /// The guest returned stdin credit of the main process.
    pub fn main_stdin_credit(&mut self, bytes: u32) {
        self.main_in_flight = self.main_in_flight.saturating_sub(bytes);
        let credit = Frame::Credit {
            process: MAIN_PROCESS,
            stream: StdStream::Stdin,
            bytes,
        };
        self.attached
            .retain(|_, a| !a.stdin || a.tx.send(credit.clone()).is_ok());
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
#[path = "mux_tests.rs"]
mod tests;
