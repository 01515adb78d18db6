//! The life of the sandbox's containers and VM: starts and exits as the
//! store and the events log record them, the restart policy with back-off,
//! the VM's end, `--rm` removal once the holds are released, and the end
//! of the actor. Stops are in `stop`.

use std::time::{Duration, Instant};

use a3s_box_core::event::{Event, EventAction, EventType};
use a3s_box_core::guest::message::{HostMessage, Message};
use a3s_box_core::guest::Frame;
use a3s_box_core::status::BoxStatus;
use a3s_box_core::time::now_rfc3339;
use a3s_box_core::{BoxError, Result};

use super::{Actor, Msg, Outcome, Timer, Vm, EXIT_KILLED};
use crate::sandbox::container::Phase;
use crate::sandbox::rpc::{Reply, SandboxEvent, WaitCondition};
use crate::state::BoxState;

/// Time for the guest to power off after the host says so.
pub(crate) const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Exit code of a start that failed in a3s-box itself (Docker's 125).
const EXIT_START_ERROR: i32 = 125;

impl Actor {
    // --- records ---------------------------------------------------------

    /// Update container `id`'s stored state.
    pub(super) fn record(&self, id: &str, f: impl FnOnce(&mut BoxState)) {
        let (Some(records), Some(c)) = (&self.records, self.containers.get(id)) else {
            return;
        };
        if let Err(e) = records.store.update_dir(&c.setup.dir, f) {
            tracing::warn!(container = id, "record state: {e}");
        }
    }

    /// Record a container event.
    pub(super) fn event(&self, id: &str, action: EventAction, extra: &[(&str, String)]) {
        let (Some(records), Some(c)) = (&self.records, self.containers.get(id)) else {
            return;
        };
        let mut e = Event::now(EventType::Container, action, id)
            .with("name", &c.setup.name)
            .with("image", &c.setup.image);
        if let Some(pod) = &self.pod {
            e = e.with("pod", &pod.name);
        }
        for (k, v) in extra {
            e = e.with(k, v.clone());
        }
        records.events.record(&e);
    }

    /// Record a pod event.
    fn pod_event(&self, action: EventAction) {
        if let (Some(records), Some(pod)) = (&self.records, &self.pod) {
            records
                .events
                .record(&Event::now(EventType::Pod, action, &self.id).with("name", &pod.name));
        }
    }

    fn record_pod(&self, f: impl FnOnce(&mut crate::sandbox::pods::PodState)) {
        if let (Some(records), true) = (&self.records, self.is_pod()) {
            if let Err(e) = records.pods.update_dir(&self.dir, f) {
                tracing::warn!("record pod state: {e}");
            }
        }
    }

    /// A start by the user: the restart policy applies again.
    pub(super) fn mark_started_by_user(&mut self) {
        let ids: Vec<String> = self.containers.keys().cloned().collect();
        for id in ids {
            if let Some(c) = self.containers.get_mut(&id) {
                c.stopped_by_user = false;
            }
            self.record(&id, |s| {
                s.stopped_by_user = false;
                s.shim_pid = Some(std::process::id());
            });
        }
    }

    pub(super) fn record_pod_starting(&self) {
        self.record_pod(|s| {
            s.shim_pid = Some(std::process::id());
            s.error = None;
        });
    }

    // --- starts ----------------------------------------------------------

    /// The pod's VM runs: report it and start the containers waiting.
    pub(super) async fn pod_booted(&mut self, vm_pid: u32) {
        self.record_pod(|s| {
            s.status = BoxStatus::Running;
            s.vm_pid = Some(vm_pid);
            s.started_at = Some(now_rfc3339());
            s.finished_at = None;
        });
        self.pod_event(EventAction::Start);
        self.set_first_start(Outcome::Reply(Reply::Started { vm_pid }));
        let waiting: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, c)| c.phase == Phase::Starting)
            .map(|(id, _)| id.clone())
            .collect();
        for id in waiting {
            self.start_in_vm(&id).await;
        }
    }

    /// The first start's outcome: the starter's report.
    pub(super) fn set_first_start(&mut self, outcome: Outcome) {
        if self.first_start.is_some() {
            return;
        }
        for waiter in self.report_waiters.drain(..) {
            let _ = waiter.send(copy(&outcome));
        }
        self.first_start = Some(outcome);
    }

    /// Make a pod's container run: create its root first if needed.
    pub(super) async fn start_in_vm(&mut self, id: &str) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        c.phase = Phase::Starting;
        c.started_this_run = false;
        if c.in_guest {
            return self.start_main(id).await;
        }
        if !c.creating {
            self.create_in_vm(id).await;
        }
    }

    /// Ask the guest to create a pod's container (its image built first).
    pub(super) async fn create_in_vm(&mut self, id: &str) {
        let Vm::Up { running, .. } = &self.vm else {
            return;
        };
        let storage = running.storage.clone();
        let hostname = self.pod_hostname();
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        let image = match self.vmm.shared_image(&c.setup.options.rootfs_dir) {
            Ok(image) => image,
            Err(e) => {
                c.last_stderr = e.to_string();
                if c.phase == Phase::Starting {
                    self.finalize_exit(id, EXIT_START_ERROR, Some(e)).await;
                }
                return;
            }
        };
        let mut own = match crate::storage::plan::plan(
            &self.engine.home_dir(),
            &c.setup.dir,
            &crate::storage::StorageOptions {
                read_only: true,
                ..c.setup.options.storage.clone()
            },
        ) {
            Ok(s) => s,
            Err(e) => {
                let e = BoxError::from(e);
                c.last_stderr = e.to_string();
                if c.phase == Phase::Starting {
                    self.finalize_exit(id, EXIT_START_ERROR, Some(e)).await;
                }
                return;
            }
        };
        own.read_only = c.setup.options.storage.read_only;
        own.devices = storage.devices;
        let hostname = c.setup.options.hostname.clone().unwrap_or(hostname);
        let spec = c.joining_spec(hostname, super::boot::IMAGE_TAG, image, &own);
        c.creating = true;
        self.send_frame(&Frame::Control(Message::Host(
            HostMessage::CreateContainer(spec),
        )))
        .await;
    }

    fn pod_hostname(&self) -> String {
        match &self.pod {
            Some(p) => p.sandbox.hostname.clone().unwrap_or_else(|| p.name.clone()),
            None => String::new(),
        }
    }

    /// Start a pod container's main process (its root exists).
    pub(super) async fn start_main(&mut self, id: &str) {
        let process = self.next_id();
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        c.process = Some(process);
        let spec = c.main_process(process, true);
        self.router.main_started(id, process);
        self.send_frame(&Frame::Control(Message::Host(HostMessage::Start(spec))))
            .await;
    }

    /// A container's main process runs.
    pub(super) async fn on_main_started(&mut self, id: &str) {
        let (vm_pid, accelerator) = match &self.vm {
            Vm::Up { running, .. } => (running.handler.pid(), running.accelerator.clone()),
            _ => (0, None),
        };
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        c.phase = Phase::Running;
        c.ever_started = true;
        c.started_this_run = true;
        c.exit_code = None;
        let stop_pending = c.stopped_by_user && !c.stop_waiters.is_empty();
        let waiters: Vec<_> = c.start_waiters.drain(..).collect();
        let shim_pid = std::process::id();
        self.record(id, |s| {
            s.status = BoxStatus::Running;
            s.accelerator = accelerator;
            s.shim_pid = Some(shim_pid);
            s.vm_pid = Some(vm_pid);
            s.started_at = Some(now_rfc3339());
            s.finished_at = None;
            s.exit_code = None;
            s.error = None;
        });
        self.event(id, EventAction::Start, &[]);
        self.emit(SandboxEvent::Started {
            container: id.to_string(),
            vm_pid,
        });
        for w in waiters {
            let _ = w.send(Outcome::Reply(Reply::Started { vm_pid }));
        }
        if !self.is_pod() {
            self.set_first_start(Outcome::Reply(Reply::Started { vm_pid }));
        }
        if stop_pending {
            // A stop asked while it started: its signal goes now.
            self.signal_main(id, self.stop_signal(id)).await;
        }
    }

    // --- exits -----------------------------------------------------------

    /// A container's main process ended (or could not start).
    pub(super) async fn on_main_exited(&mut self, id: &str, code: i32) {
        self.router.main_exited(id, code);
        if self.is_pod() {
            return self.finalize_exit(id, code, None).await;
        }
        // A standalone box's VM ends with it; its exit is recorded once
        // the VM is gone.
        if let Some(c) = self.containers.get_mut(id) {
            c.pending_exit = Some(code);
        }
        self.shutdown_vm().await;
    }

    /// Let the VM go: wait `grace` for it to end by itself, kill it, stop
    /// its daemons, then tell the actor (on a task: the actor goes on).
    pub(super) fn retire_vm(&mut self, grace: Duration, error: Option<BoxError>) {
        let vm = std::mem::replace(&mut self.vm, Vm::Down);
        let (gen, mut running) = match vm {
            Vm::Up { gen, running, .. } => (gen, running),
            Vm::Booting { gen, task } => {
                task.abort();
                self.early.clear();
                self.vm = Vm::Retiring { gen };
                let _ = self.tx.send(Msg::VmDown { gen, error });
                return;
            }
            other => {
                self.vm = other;
                return;
            }
        };
        self.vm = Vm::Retiring { gen };
        self.router.vm_ended(false);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + grace;
            while running.handler.is_running() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            if running.handler.is_running() {
                let _ = running.handler.stop(libc::SIGKILL, 0);
            }
            drop(running);
            tracing::debug!("VM gone");
            let _ = tx.send(Msg::VmDown { gen, error });
        });
    }

    /// A boot failed: nothing ran.
    pub(super) async fn on_vm_down_error(&mut self, e: BoxError) {
        let gen = self.gen;
        self.vm = Vm::Retiring { gen };
        self.on_vm_down(gen, Some(e)).await;
    }

    /// The VM `gen` is gone.
    pub(super) async fn on_vm_down(&mut self, gen: u64, error: Option<BoxError>) {
        if !matches!(self.vm, Vm::Retiring { gen: g } if g == gen) {
            return;
        }
        self.vm = Vm::Down;
        self.paused = false;
        self.router.vm_ended(false);
        for (_, reply) in self.net_waiters.drain(..) {
            let _ = reply.send(super::Outcome::Error(BoxError::NotRunning(
                "the box stopped before its interface was configured".into(),
            )));
        }
        if self.is_pod() {
            return self.pod_vm_down(error).await;
        }
        let Some(id) = self.containers.keys().next().cloned() else {
            return;
        };
        let pending = self
            .containers
            .get_mut(&id)
            .and_then(|c| c.pending_exit.take());
        match (pending, error) {
            (Some(code), _) => self.finalize_exit(&id, code, None).await,
            (None, Some(e)) => self.finalize_exit(&id, EXIT_KILLED, Some(e)).await,
            (None, None) => self.finalize_exit(&id, EXIT_KILLED, None).await,
        }
    }

    async fn pod_vm_down(&mut self, error: Option<BoxError>) {
        let live: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, c)| c.is_live() || c.phase == Phase::Restarting)
            .map(|(id, _)| id.clone())
            .collect();
        let reason = error.as_ref().map(|e| e.to_string());
        for id in live {
            if let Some(c) = self.containers.get_mut(&id) {
                c.stopped_by_user |= !self.stopping.is_empty();
                c.in_guest = false;
            }
            let e = reason
                .clone()
                .map(|r| BoxError::Unavailable(format!("the pod's VM stopped: {r}")));
            self.finalize_exit(&id, EXIT_KILLED, e).await;
        }
        for c in self.containers.values_mut() {
            c.in_guest = false;
            c.creating = false;
        }
        if self.first_start.is_none() {
            let e = error
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "the pod's VM stopped".into());
            self.set_first_start(Outcome::Reply(Reply::StartFailed {
                code: EXIT_START_ERROR,
                reason: e,
            }));
        }
        let error_text = error.as_ref().map(|e| e.to_string());
        self.record_pod(|s| {
            s.status = BoxStatus::Exited;
            s.finished_at = Some(now_rfc3339());
            s.vm_pid = None;
            s.error = error_text;
        });
        self.pod_event(EventAction::Stop);
        self.last_error = error;
        for w in self.stopping.drain(..) {
            let _ = w.send(Outcome::Reply(Reply::Ok));
        }
        self.begin_end();
    }

    /// A container's run is over: record it, tell its waiters, and apply
    /// its restart policy.
    pub(super) async fn finalize_exit(&mut self, id: &str, code: i32, error: Option<BoxError>) {
        let pod = self.is_pod();
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        c.setup.sink.flush();
        c.process = None;
        c.exit_code = Some(code);
        let started = c.started_this_run;
        c.started_this_run = false;
        let restart = started
            && c.setup
                .restart
                .should_restart(code, c.restart_count, c.stopped_by_user);
        let error_text = error.as_ref().map(|e| e.to_string());
        if !started {
            // It never ran: the start failed.
            let (code, reason) = match &error {
                Some(e) => (EXIT_START_ERROR, e.to_string()),
                None => (code, c.last_stderr.clone()),
            };
            let failed = Outcome::Reply(Reply::StartFailed {
                code,
                reason: reason.clone(),
            });
            for w in c.start_waiters.drain(..) {
                let _ = w.send(copy(&failed));
            }
            self.emit(SandboxEvent::StartFailed {
                container: id.to_string(),
                code,
                reason,
            });
            if !pod {
                self.set_first_start(failed);
            }
        }
        let shim_pid = std::process::id();
        self.record(id, |s| {
            s.status = BoxStatus::Exited;
            s.finished_at = Some(now_rfc3339());
            s.exit_code = Some(code);
            s.error = error_text;
            s.vm_pid = None;
            s.shim_pid = Some(shim_pid);
        });
        if started {
            self.event(id, EventAction::Die, &[("exitCode", code.to_string())]);
            self.emit(SandboxEvent::Exited {
                container: id.to_string(),
                code,
            });
        }
        if restart {
            return self.schedule_restart(id);
        }
        if !pod {
            self.last_error = error;
        }
        self.container_over(id, code);
        if !pod {
            self.begin_end();
        } else if self.stopping.iter().len() > 0 && !self.any_live() {
            self.shutdown_vm().await;
        }
    }

    /// No restart follows: waiters of the exit get it.
    pub(super) fn container_over(&mut self, id: &str, code: i32) {
        let last = !self.is_pod();
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        c.phase = Phase::Exited;
        let exited = Reply::Exited { code, last };
        for w in c.stop_waiters.drain(..) {
            let _ = w.send(Outcome::Reply(exited.clone()));
        }
        let mut kept = Vec::new();
        for w in c.exit_waiters.drain(..) {
            match w.condition {
                WaitCondition::Removed if c.setup.auto_remove => kept.push(w),
                _ => {
                    let _ = w.reply.send(Outcome::Reply(exited.clone()));
                }
            }
        }
        c.exit_waiters = kept;
        if c.setup.auto_remove && self.is_pod() {
            let id = id.to_string();
            self.pending_removals.push(id);
            self.begin_removals();
        }
    }

    pub(super) fn any_live(&self) -> bool {
        self.containers.values().any(|c| c.is_live())
    }

    fn schedule_restart(&mut self, id: &str) {
        let first = self.timing.first_backoff;
        let max = self.timing.max_backoff;
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        c.phase = Phase::Restarting;
        c.restart_count += 1;
        let count = c.restart_count;
        let delay = c.backoff.unwrap_or(first);
        c.backoff = Some((delay * 2).min(max));
        self.record(id, |s| {
            s.status = BoxStatus::Restarting;
            s.restart_count = count;
        });
        self.event(id, EventAction::Restart, &[]);
        self.emit(SandboxEvent::Restarting {
            container: id.to_string(),
            restart_count: count,
            delay_ms: delay.as_millis() as u64,
        });
        self.after(
            delay,
            Timer::Restart {
                container: id.to_string(),
            },
        );
    }

    /// The back-off is over: start it again, unless it was stopped meanwhile.
    pub(super) async fn restart(&mut self, id: &str) {
        let Some(c) = self.containers.get(id) else {
            return;
        };
        if c.phase != Phase::Restarting {
            return;
        }
        if c.stopped_by_user {
            // A stop that arrived during the back-off ends it.
            let code = c.exit_code.unwrap_or(0);
            self.record(id, |s| s.status = BoxStatus::Exited);
            self.container_over(id, code);
            if !self.is_pod() {
                self.begin_end();
            }
            return;
        }
        if self.is_pod() {
            if matches!(self.vm, Vm::Up { .. }) {
                self.start_in_vm(id).await;
            }
        } else {
            self.boot();
        }
    }

    // --- the end ---------------------------------------------------------

    /// Nothing more will run: the actor ends once the holds allow.
    pub(super) fn begin_end(&mut self) {
        if self.ending {
            return;
        }
        self.ending = true;
        self.after(self.timing.hold_limit, Timer::HoldsOver);
    }

    /// Whether the actor may end now.
    pub(super) fn may_end(&self) -> bool {
        let vm_gone = matches!(self.vm, Vm::Down);
        vm_gone && (self.holds_over || (!self.report_pending && self.holds.is_empty()))
    }

    /// `--rm` containers of a pod whose holds are gone are removed.
    pub(super) fn begin_removals(&mut self) {
        let held: Vec<String> = self.holds.values().cloned().collect();
        let ready: Vec<String> = self
            .pending_removals
            .iter()
            .filter(|id| !held.contains(id))
            .cloned()
            .collect();
        self.pending_removals.retain(|id| held.contains(id));
        for id in ready {
            let tx = self.tx.clone();
            let _ = tx.send(Msg::Timer(Timer::Remove { container: id }));
        }
    }

    /// Remove the box `id` (its `--rm`): out of the sandbox, out of the store.
    pub(super) async fn remove_box(&mut self, id: &str) {
        if self.is_pod() {
            let Some(c) = self.containers.get_mut(id) else {
                return;
            };
            if !c.remove_waiters.is_empty() {
                // Already leaving the VM (`rm -f`): the box goes with it.
                c.removing_box = true;
                return;
            }
            if c.in_guest && matches!(self.vm, Vm::Up { .. }) {
                c.removing_box = true;
                self.send_frame(&Frame::Control(Message::Host(
                    HostMessage::RemoveContainer {
                        container: id.to_string(),
                        discard: true,
                    },
                )))
                .await;
                return;
            }
        }
        self.delete_box(id);
    }

    /// Delete the box `id` from the store and forget it; whoever waits for
    /// its removal hears of it.
    pub(super) fn delete_box(&mut self, id: &str) {
        let Some(c) = self.containers.get(id) else {
            return;
        };
        let dir = c.setup.dir.clone();
        let deleted = match &self.records {
            Some(records) => match records.store.load_dir(&dir) {
                Ok(record) => match records.store.remove(&record) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(container = id, "remove: {e}");
                        false
                    }
                },
                // Removed by someone else meanwhile (`rm -f`).
                Err(_) => false,
            },
            None => false,
        };
        if deleted {
            self.event(id, EventAction::Destroy, &[]);
        }
        let Some(mut c) = self.containers.remove(id) else {
            return;
        };
        let code = c.exit_code.unwrap_or(0);
        for w in c.remove_waiters.drain(..) {
            let _ = w.send(Outcome::Reply(Reply::Ok));
        }
        self.emit(SandboxEvent::Removed {
            container: id.to_string(),
        });
        for w in c.exit_waiters.drain(..) {
            let _ = w.reply.send(Outcome::Reply(Reply::Removed { code }));
        }
        self.router.forget(id);
    }

    /// The actor is over: remove `--rm` boxes, answer whoever still waits.
    pub(super) fn finish(mut self) -> Result<i32> {
        let ids: Vec<String> = self.containers.keys().cloned().collect();
        let mut last = None;
        for id in &ids {
            let Some(c) = self.containers.get(id) else {
                continue;
            };
            last = c.exit_code.or(last);
            if c.setup.auto_remove && c.phase == Phase::Exited && !self.is_pod() {
                self.delete_box(id);
            }
        }
        let code = last.unwrap_or(0);
        for c in self.containers.values_mut() {
            let over = Outcome::Reply(Reply::Exited {
                code: c.exit_code.unwrap_or(code),
                last: true,
            });
            for w in c.exit_waiters.drain(..) {
                let _ = w.reply.send(copy(&over));
            }
            for w in c.stop_waiters.drain(..) {
                let _ = w.send(copy(&over));
            }
            for w in c.start_waiters.drain(..) {
                let _ = w.send(Outcome::Error(BoxError::NotRunning(
                    "the sandbox ended before the container started".into(),
                )));
            }
        }
        if self.first_start.is_none() {
            let reason = self
                .last_error
                .as_ref()
                .map_or_else(|| "the sandbox ended".into(), |e| e.to_string());
            self.set_first_start(Outcome::Reply(Reply::StartFailed {
                code: EXIT_START_ERROR,
                reason,
            }));
        }
        let shim = std::process::id();
        for id in self.containers.keys() {
            self.record(id, |s| {
                if s.shim_pid == Some(shim) {
                    s.shim_pid = None;
                }
            });
        }
        self.record_pod(|s| s.shim_pid = None);
        match self.last_error.take() {
            Some(e) => Err(e),
            None => Ok(code),
        }
    }
}

/// A second copy of an outcome that is a reply (others cannot be copied
/// and become an error).
pub(super) fn copy(outcome: &Outcome) -> Outcome {
    match outcome {
        Outcome::Reply(r) => Outcome::Reply(r.clone()),
        Outcome::Error(e) => Outcome::Error(BoxError::from(crate::sandbox::rpc::RpcError::from(e))),
        Outcome::Session(_) | Outcome::Events(_) => {
            Outcome::Error(BoxError::Invalid("not a reply".into()))
        }
    }
}
