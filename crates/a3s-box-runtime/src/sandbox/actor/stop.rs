//! Stopping containers and the sandbox: the stop signal, SIGKILL once the
//! grace period is over, then the VM (a standalone box) or the container's
//! removal from the VM (a pod's); a paused VM is resumed first.

use std::time::Duration;

use a3s_box_core::event::EventAction;
use a3s_box_core::guest::message::{HostMessage, Message};
use a3s_box_core::guest::Frame;
use a3s_box_core::status::BoxStatus;

use super::{Actor, Outcome, Timer, Vm};
use crate::sandbox::container::Phase;
use crate::sandbox::rpc::Reply;

impl Actor {
    pub(super) fn stop_signal(&self, id: &str) -> i32 {
        self.containers
            .get(id)
            .map_or(libc::SIGTERM, |c| c.setup.stop_signal)
    }

    /// Deliver `signal` to `id`'s main process.
    pub(super) async fn signal_main(&mut self, id: &str, signal: i32) {
        let Some(process) = self.containers.get(id).and_then(|c| c.process) else {
            return;
        };
        self.send_frame(&Frame::Control(Message::Host(HostMessage::Signal {
            process,
            signal,
        })))
        .await;
    }

    /// Stop container `id`: its stop signal, SIGKILL after `timeout`; no
    /// restart afterwards. `reply` is answered once it is stopped.
    pub(super) async fn stop_container(
        &mut self,
        id: &str,
        timeout: Duration,
        reply: Option<tokio::sync::oneshot::Sender<Outcome>>,
    ) {
        let last = !self.is_pod();
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        c.stopped_by_user = true;
        c.stop_gen += 1;
        let stop_gen = c.stop_gen;
        let phase = c.phase;
        let code = c.exit_code.unwrap_or(0);
        self.record(id, |s| s.stopped_by_user = true);
        match phase {
            Phase::Created | Phase::Exited => {
                if let Some(r) = reply {
                    let _ = r.send(Outcome::Reply(Reply::Exited { code, last }));
                }
            }
            Phase::Restarting => {
                self.record(id, |s| s.status = BoxStatus::Exited);
                if let Some(r) = reply {
                    if let Some(c) = self.containers.get_mut(id) {
                        c.stop_waiters.push(r);
                    }
                }
                self.container_over(id, code);
                if !self.is_pod() {
                    self.begin_end();
                }
            }
            Phase::Starting | Phase::Running => {
                if let Some(r) = reply {
                    if let Some(c) = self.containers.get_mut(id) {
                        c.stop_waiters.push(r);
                    }
                }
                self.event(id, EventAction::Stop, &[]);
                let booting = matches!(self.vm, Vm::Booting { .. });
                if timeout.is_zero() && booting {
                    // Nothing runs yet: the boot is abandoned.
                    self.stopped_while_starting(id);
                    return self.retire_vm(Duration::ZERO, None);
                }
                self.resume_if_paused().await;
                let signal = match timeout.is_zero() {
                    true => libc::SIGKILL,
                    false => self.stop_signal(id),
                };
                if phase == Phase::Running {
                    self.signal_main(id, signal).await;
                }
                let container = id.to_string();
                match timeout.is_zero() {
                    true => self.after(
                        self.timing.kill_grace,
                        Timer::StopForce {
                            container,
                            stop_gen,
                        },
                    ),
                    false => self.after(
                        timeout,
                        Timer::StopKill {
                            container,
                            stop_gen,
                        },
                    ),
                }
            }
        }
    }

    /// The grace period of a stop is over.
    pub(super) async fn stop_kill(&mut self, id: &str, stop_gen: u64) {
        let Some(c) = self.containers.get(id) else {
            return;
        };
        if c.stop_gen != stop_gen || !c.is_live() {
            return;
        }
        if matches!(self.vm, Vm::Booting { .. }) && !self.is_pod() {
            self.stopped_while_starting(id);
            return self.retire_vm(Duration::ZERO, None);
        }
        // SIGKILL the workload first: the guest then syncs the writable
        // layer and powers off as after any exit. Only a guest that does
        // not answer loses its VM.
        self.signal_main(id, libc::SIGKILL).await;
        self.after(
            self.timing.kill_grace,
            Timer::StopForce {
                container: id.to_string(),
                stop_gen,
            },
        );
    }

    /// A stopped container still runs after SIGKILL: a standalone box's
    /// VM is killed; a pod's container is taken out of the VM.
    pub(super) async fn stop_force(&mut self, id: &str, stop_gen: u64) {
        let Some(c) = self.containers.get(id) else {
            return;
        };
        if c.stop_gen != stop_gen || !c.is_live() {
            return;
        }
        if self.is_pod() {
            self.send_frame(&Frame::Control(Message::Host(
                HostMessage::RemoveContainer {
                    container: id.to_string(),
                    discard: false,
                },
            )))
            .await;
            return;
        }
        if let Vm::Up { running, .. } = &mut self.vm {
            let _ = running.handler.stop(libc::SIGKILL, 0);
        }
        self.retire_vm(Duration::ZERO, None);
    }

    /// Stop the whole sandbox: every container, then (a pod) its VM.
    pub(super) async fn stop_sandbox(
        &mut self,
        timeout: Duration,
        reply: tokio::sync::oneshot::Sender<Outcome>,
    ) {
        if !self.is_pod() {
            if let Some(id) = self.containers.keys().next().cloned() {
                return self.stop_container(&id, timeout, Some(reply)).await;
            }
            return;
        }
        self.stopping.push(reply);
        let ids: Vec<String> = self.containers.keys().cloned().collect();
        for id in &ids {
            self.stop_container(id, timeout, None).await;
        }
        match &self.vm {
            Vm::Up { .. } if !self.any_live() => self.shutdown_vm().await,
            Vm::Booting { .. } => self.retire_vm(Duration::ZERO, None),
            _ => {}
        }
    }

    /// A paused VM cannot handle a signal: resume it first.
    pub(super) async fn resume_if_paused(&mut self) {
        if self.paused {
            let _ = self.unpause().await;
        }
    }

    /// Why a start that a stop cut short failed.
    fn stopped_while_starting(&mut self, id: &str) {
        if let Some(c) = self.containers.get_mut(id) {
            c.last_stderr = "it was stopped before it started".into();
        }
    }
}
