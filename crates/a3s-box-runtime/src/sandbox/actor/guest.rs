//! Frames from the guest: output and the life of containers' main
//! processes go to their containers; everything about other processes to
//! the router; a guest that breaks the protocol loses its VM.

use a3s_box_core::guest::message::{ContainerOp, GuestMessage, HostMessage, Message};
use a3s_box_core::guest::{Frame, StdStream};
use a3s_box_core::BoxError;

use super::{Actor, Running, Vm};
use crate::sandbox::container::Phase;
use crate::sandbox::vmm::{channel_lost, vm_error};

impl Actor {
    pub(super) async fn on_guest_frame(&mut self, frame: Frame) {
        let main = match &frame {
            Frame::Data { process, .. }
            | Frame::Eof { process, .. }
            | Frame::Credit { process, .. }
            | Frame::Control(Message::Guest(
                GuestMessage::Started { process, .. }
                | GuestMessage::SpawnFailed { process, .. }
                | GuestMessage::Exited { process, .. },
            )) => self.router.main_of(*process).map(str::to_string),
            _ => None,
        };
        if let Some(container) = main {
            return self.on_main_frame(container, frame).await;
        }
        match frame {
            Frame::Control(Message::Guest(GuestMessage::ContainerCreated { container })) => {
                self.on_container_created(&container).await
            }
            Frame::Control(Message::Guest(GuestMessage::ContainerRemoved { container })) => {
                self.on_container_removed(&container, None)
            }
            Frame::Control(Message::Guest(GuestMessage::ContainerFailed {
                container,
                op,
                reason,
            })) => self.on_container_failed(&container, op, reason).await,
            Frame::Control(Message::Guest(
                message @ (GuestMessage::InterfaceConfigured { .. }
                | GuestMessage::InterfaceFailed { .. }),
            )) => self.on_interface(message),
            Frame::Control(Message::Guest(GuestMessage::Fatal { reason })) => {
                let e = self.console_error(format!("guest-init failed: {reason}"));
                self.lose_vm(e);
            }
            Frame::Control(Message::Guest(GuestMessage::Hello { .. })) => {
                self.lose_vm(BoxError::Guest("unexpected second hello".into()))
            }
            Frame::Control(Message::Host(_)) => {
                self.lose_vm(BoxError::Guest("guest sent a host message".into()))
            }
            other => {
                let back = self.router.on_guest_frame(other);
                self.send_frames(back).await;
            }
        }
    }

    /// A frame about `container`'s main process.
    async fn on_main_frame(&mut self, container: String, frame: Frame) {
        match frame {
            Frame::Data {
                process,
                stream,
                bytes,
            } => {
                let Some(c) = self.containers.get_mut(&container) else {
                    return;
                };
                c.output(stream, &bytes);
                let credit = c.credit.consumed(stream, bytes.len() as u32);
                self.router.main_output(&container, stream, &bytes);
                if let Some(len) = credit {
                    self.send_frame(&Frame::Credit {
                        process,
                        stream,
                        bytes: len,
                    })
                    .await;
                }
            }
            Frame::Credit {
                stream: StdStream::Stdin,
                bytes,
                ..
            } => self.router.main_stdin_credit(&container, bytes),
            Frame::Control(Message::Guest(GuestMessage::Started { pid, .. })) => {
                tracing::debug!(pid, container, "main process started");
                self.on_main_started(&container).await;
            }
            Frame::Control(Message::Guest(GuestMessage::SpawnFailed {
                exit_code, reason, ..
            })) => {
                let line = format!("a3s-box: {reason}\n");
                if let Some(c) = self.containers.get_mut(&container) {
                    c.output(StdStream::Stderr, line.as_bytes());
                    c.last_stderr = reason;
                }
                self.router
                    .main_output(&container, StdStream::Stderr, line.as_bytes());
                self.on_main_exited(&container, exit_code).await;
            }
            Frame::Control(Message::Guest(GuestMessage::Exited { exit_code, .. })) => {
                tracing::debug!(exit_code, container, "main process exited");
                self.on_main_exited(&container, exit_code).await;
            }
            _ => {}
        }
    }

    /// An error with the VM console's last lines.
    pub(super) fn console_error(&self, message: String) -> BoxError {
        match &self.vm {
            Vm::Up { running, .. } => vm_error(message, &running.console),
            _ => BoxError::Vmm {
                message,
                console_tail: None,
            },
        }
    }

    /// The guest channel broke without our asking: say why, and let the VM go.
    pub(super) async fn on_channel_broken(&mut self, what: String) {
        let Vm::Up { running, .. } = &self.vm else {
            return;
        };
        // A companion that ended the VM (its network's helper died) is the
        // reason, not the channel.
        let e = match running.companions.failure() {
            Some(e) => e,
            None => channel_lost(&*running.handler, what, &running.console).await,
        };
        self.lose_vm(e);
    }

    /// The VM cannot go on: kill it; its containers end with `error`.
    pub(super) fn lose_vm(&mut self, error: BoxError) {
        tracing::debug!("losing the VM: {error}");
        if let Vm::Up { running, .. } = &mut self.vm {
            let _ = running.handler.stop(libc::SIGKILL, 0);
        }
        self.retire_vm(std::time::Duration::ZERO, Some(error));
    }

    /// Ask the guest to power off.
    pub(super) async fn shutdown_vm(&mut self) {
        self.send_frame(&Frame::Control(Message::Host(HostMessage::Shutdown)))
            .await;
        let grace = match &self.vm {
            Vm::Up { running, .. } if running.clean_shutdown && !self.nothing_outlives(running) => {
                super::lifecycle::SHUTDOWN_TIMEOUT
            }
            _ => std::time::Duration::ZERO,
        };
        self.retire_vm(grace, None);
    }

    /// Whether nothing the VM could still flush outlives it: a standalone
    /// `--rm` box (its writable layer is removed with it) without host
    /// shares (their writes must reach the host). Its VM is stopped at once,
    /// without the guest's sync, trim and power-off (~40 ms under TCG).
    fn nothing_outlives(&self, running: &Running) -> bool {
        !self.is_pod()
            && running.storage.fs_mounts.is_empty()
            && self.containers.values().all(|c| c.setup.auto_remove)
    }

    /// A container's root exists in the VM.
    async fn on_container_created(&mut self, id: &str) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        c.in_guest = true;
        c.creating = false;
        if c.phase == Phase::Starting && c.process.is_none() {
            self.start_main(id).await;
        }
    }

    async fn on_container_failed(&mut self, id: &str, op: ContainerOp, reason: String) {
        tracing::warn!(container = id, ?op, "{reason}");
        if op == ContainerOp::Remove {
            return self.on_container_removed(id, Some(reason));
        }
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        c.creating = false;
        c.in_guest = false;
        if c.phase == Phase::Starting {
            c.last_stderr = reason;
            self.finalize_exit(id, 125, None).await;
        }
    }
}
