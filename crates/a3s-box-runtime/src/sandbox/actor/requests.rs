//! What clients ask of the sandbox, answered by the actor; and its timers.

use std::time::Duration;

use a3s_box_core::event::EventAction;
use a3s_box_core::guest::message::{GuestMessage, HostMessage, Message, ProcessSpec};
use a3s_box_core::guest::{builtin, Frame, PROTOCOL_VERSION};
use a3s_box_core::status::BoxStatus;
use a3s_box_core::{BoxError, Result};
use nix::fcntl::{Flock, FlockArg};
use tokio::sync::mpsc::unbounded_channel;
use tokio::sync::oneshot;

use super::{Actor, ConnId, Outcome, Timer, Vm};
use crate::sandbox::container::{Container, ContainerSetup, ExitWaiter, Phase};
use crate::sandbox::router::ClientTx;
use crate::sandbox::rpc::{Reply, Request, SandboxStats, WaitCondition, RPC_VERSION};
use crate::state::{LOG_FILE, SHIM_LOCK};

impl Actor {
    pub(super) async fn on_request(
        &mut self,
        conn: ConnId,
        request: Request,
        client: Option<ClientTx>,
        reply: oneshot::Sender<Outcome>,
    ) {
        match request {
            Request::Version => answer(
                reply,
                Ok(Reply::Version {
                    rpc: RPC_VERSION,
                    protocol: PROTOCOL_VERSION,
                    shim: env!("CARGO_PKG_VERSION").into(),
                }),
            ),
            Request::StartReport { hold } => {
                self.report_pending = false;
                if hold {
                    self.hold(conn, None);
                }
                match &self.first_start {
                    Some(outcome) => {
                        let _ = reply.send(super::lifecycle::copy(outcome));
                    }
                    None => self.report_waiters.push(reply),
                }
            }
            Request::Exec {
                container,
                spec,
                detach,
            } => {
                let outcome = match (self.container_id(container.as_deref()), client) {
                    (Ok(id), Some(tx)) => self.exec(&id, spec, tx, detach).await,
                    (Err(e), _) => Err(e),
                    (_, None) => Err(BoxError::Invalid("exec needs a client".into())),
                };
                let _ = reply.send(match outcome {
                    Ok(id) => Outcome::Session(id),
                    Err(e) => Outcome::Error(e),
                });
            }
            Request::Attach {
                container,
                stdin,
                replay,
                hold,
            } => {
                let outcome = match (self.container_id(container.as_deref()), client) {
                    (Ok(id), Some(tx)) => self.attach(conn, &id, tx, stdin, replay, hold),
                    (Err(e), _) => Err(e),
                    (_, None) => Err(BoxError::Invalid("attach needs a client".into())),
                };
                let _ = reply.send(match outcome {
                    Ok(id) => Outcome::Session(id),
                    Err(e) => Outcome::Error(e),
                });
            }
            Request::Signal { container, signal } => {
                let outcome = match self.container_id(container.as_deref()) {
                    Ok(id) => self.signal(&id, signal).await,
                    Err(e) => Err(e),
                };
                answer(reply, outcome.map(|()| Reply::Ok));
            }
            Request::Stop {
                container,
                timeout_secs,
            } => {
                let timeout = Duration::from_secs(timeout_secs);
                match container {
                    None => self.stop_sandbox(timeout, reply).await,
                    Some(key) => match self.container_id(Some(&key)) {
                        Ok(id) => self.stop_container(&id, timeout, Some(reply)).await,
                        Err(e) => {
                            let _ = reply.send(Outcome::Error(e));
                        }
                    },
                }
            }
            Request::Wait {
                container,
                condition,
                hold,
            } => match self.container_id(container.as_deref()) {
                Ok(id) => self.wait(conn, &id, condition, hold, reply),
                Err(e) => {
                    let _ = reply.send(Outcome::Error(e));
                }
            },
            Request::Pause => answer(reply, self.pause().await.map(|()| Reply::Ok)),
            Request::Unpause => answer(reply, self.unpause().await.map(|()| Reply::Ok)),
            Request::Stats => self.stats(reply).await,
            Request::Events => {
                let (tx, rx) = unbounded_channel();
                self.subscribers.push(tx);
                let _ = reply.send(Outcome::Events(rx));
            }
            Request::CreateContainer { container } => {
                let outcome = self.adopt(&container).await;
                answer(reply, outcome.map(|()| Reply::Ok));
            }
            Request::StartContainer { container, hold } => {
                self.start_container(conn, &container, hold, reply).await
            }
            Request::RemoveContainer { container, force } => {
                self.remove_container(&container, force, reply).await
            }
            Request::NetworkConnect { network, spec } => {
                self.network_change(network, spec, true, reply).await
            }
            Request::NetworkDisconnect { network, spec } => {
                self.network_change(network, spec, false, reply).await
            }
        }
    }

    /// The container a request names (`None`: the only one).
    fn container_id(&self, key: Option<&str>) -> Result<String> {
        match key {
            Some(id) if self.containers.contains_key(id) => Ok(id.to_string()),
            Some(id) => Err(BoxError::not_found("container", id)),
            None if self.containers.len() == 1 && !self.is_pod() => {
                Ok(self.containers.keys().next().cloned().unwrap_or_default())
            }
            None => Err(BoxError::Invalid(
                "name the container: this sandbox is a pod".into(),
            )),
        }
    }

    fn name_of(&self, id: &str) -> String {
        self.containers
            .get(id)
            .map_or_else(|| id.to_string(), |c| c.setup.name.clone())
    }

    /// Whether the container runs a main process that can take requests.
    fn running(&self, id: &str) -> Result<()> {
        let name = self.name_of(id);
        let phase = self.containers.get(id).map(|c| c.phase);
        if self.paused && phase == Some(Phase::Running) {
            return Err(BoxError::NotRunning(format!(
                "box {name} is paused: unpause it first"
            )));
        }
        match (phase, &self.vm) {
            (Some(Phase::Running), Vm::Up { .. }) => Ok(()),
            (phase, _) => Err(BoxError::NotRunning(format!(
                "box {name} is not running ({}): start it first",
                phase_word(phase)
            ))),
        }
    }

    fn hold(&mut self, conn: ConnId, container: Option<&str>) {
        let id = container
            .map(String::from)
            .or_else(|| self.containers.keys().next().cloned())
            .unwrap_or_default();
        self.holds.insert(conn, id);
    }

    async fn exec(
        &mut self,
        id: &str,
        mut spec: ProcessSpec,
        tx: ClientTx,
        detach: bool,
    ) -> Result<u32> {
        self.running(id)?;
        let process = self.next_id();
        spec.container = Some(id.to_string());
        if !spec.builtin {
            let exec_id = std::iter::once(spec.executable.clone())
                .chain(spec.args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ");
            self.event(id, EventAction::ExecStart, &[("execID", exec_id)]);
        }
        let frame = self.router.exec(spec, process, tx, detach);
        self.send_frame(&frame).await;
        Ok(process)
    }

    fn attach(
        &mut self,
        conn: ConnId,
        id: &str,
        tx: ClientTx,
        stdin: bool,
        replay: bool,
        hold: bool,
    ) -> Result<u32> {
        let live = self.containers.get(id).is_some_and(Container::is_live);
        if !live || matches!(self.vm, Vm::Retiring { .. }) {
            return Err(BoxError::NotRunning(format!(
                "box {} is not running: start it first",
                self.name_of(id)
            )));
        }
        let client = self.next_id();
        self.router.attach(id, client, tx, stdin, replay);
        if hold {
            self.hold(conn, Some(id));
        }
        Ok(client)
    }

    async fn signal(&mut self, id: &str, signal: i32) -> Result<()> {
        let live = self.containers.get(id).is_some_and(Container::is_live);
        if !live {
            return Err(BoxError::NotRunning(format!(
                "box {} is not running",
                self.name_of(id)
            )));
        }
        self.resume_if_paused().await;
        self.signal_main(id, signal).await;
        self.event(id, EventAction::Kill, &[("signal", signal.to_string())]);
        Ok(())
    }

    fn wait(
        &mut self,
        conn: ConnId,
        id: &str,
        condition: WaitCondition,
        hold: bool,
        reply: oneshot::Sender<Outcome>,
    ) {
        let last = !self.is_pod();
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        let over = c.phase == Phase::Exited;
        let code = c.exit_code.unwrap_or(0);
        match condition {
            WaitCondition::NotRunning if over => {
                let _ = reply.send(Outcome::Reply(Reply::Exited { code, last }));
            }
            WaitCondition::Removed if !c.setup.auto_remove && over => {
                // Nobody here removes it: the client watches the store.
                let _ = reply.send(Outcome::Reply(Reply::Exited { code, last }));
            }
            _ => c.exit_waiters.push(ExitWaiter { condition, reply }),
        }
        if condition == WaitCondition::Removed {
            // Waiting for the removal cannot hold it back.
            self.holds.remove(&conn);
            if self.is_pod() {
                self.begin_removals();
            }
        } else if hold {
            self.hold(conn, Some(id));
        }
    }

    pub(super) async fn pause(&mut self) -> Result<()> {
        let running: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, c)| c.phase == Phase::Running)
            .map(|(id, _)| id.clone())
            .collect();
        let control = match &self.vm {
            Vm::Up { running: vm, .. } if !self.paused && !running.is_empty() => vm.control.clone(),
            _ => {
                let what = match self.paused {
                    true => "paused",
                    false => "not running",
                };
                return Err(BoxError::NotRunning(format!(
                    "{} is {what}: only a running box can be paused",
                    self.sandbox_name()
                )));
            }
        };
        let control = control.ok_or_else(|| {
            BoxError::Unavailable("this sandbox's VM has no control channel".into())
        })?;
        control.pause().await?;
        self.paused = true;
        for id in &running {
            self.record(id, |s| s.status = BoxStatus::Paused);
            self.event(id, EventAction::Pause, &[]);
        }
        self.emit(crate::sandbox::rpc::SandboxEvent::Paused);
        Ok(())
    }

    pub(super) async fn unpause(&mut self) -> Result<()> {
        let control = match &self.vm {
            Vm::Up { running, .. } if self.paused => running.control.clone(),
            _ => {
                return Err(BoxError::NotRunning(format!(
                    "{} is not paused",
                    self.sandbox_name()
                )))
            }
        };
        let control = control.ok_or_else(|| {
            BoxError::Unavailable("this sandbox's VM has no control channel".into())
        })?;
        control.resume().await?;
        self.paused = false;
        let running: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, c)| c.phase == Phase::Running)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &running {
            self.record(id, |s| {
                if s.status == BoxStatus::Paused {
                    s.status = BoxStatus::Running;
                }
            });
            self.event(id, EventAction::Unpause, &[]);
        }
        self.emit(crate::sandbox::rpc::SandboxEvent::Resumed);
        Ok(())
    }

    fn sandbox_name(&self) -> String {
        match &self.pod {
            Some(p) => format!("pod {}", p.name),
            None => format!(
                "box {}",
                self.containers
                    .values()
                    .next()
                    .map_or("?", |c| c.setup.name.as_str())
            ),
        }
    }

    /// `stats`: the VM's counters on the host, the guest's memory and
    /// processes from guest-init's helper (run in a running container).
    async fn stats(&mut self, reply: oneshot::Sender<Outcome>) {
        let Vm::Up { running, .. } = &self.vm else {
            let _ = reply.send(Outcome::Error(BoxError::NotRunning(format!(
                "{} is not running",
                self.sandbox_name()
            ))));
            return;
        };
        let pid = running.handler.pid();
        let (block_read_bytes, block_write_bytes) = block_io(pid);
        let mut stats = SandboxStats {
            vm_pid: pid,
            cpu_ticks: crate::vmm::qemu::process::cpu_ticks(pid).unwrap_or(0),
            ticks_per_second: crate::vmm::qemu::process::ticks_per_second(),
            block_read_bytes,
            block_write_bytes,
            ..SandboxStats::default()
        };
        let helper_in = self
            .containers
            .iter()
            .find(|(_, c)| c.phase == Phase::Running)
            .map(|(id, _)| id.clone());
        let Some(id) = helper_in.filter(|_| !self.paused) else {
            let _ = reply.send(Outcome::Reply(Reply::Stats(stats)));
            return;
        };
        let (tx, mut rx) = unbounded_channel();
        let spec = ProcessSpec {
            process: 0,
            container: Some(id.clone()),
            executable: builtin::STATS.into(),
            args: Vec::new(),
            env: Vec::new(),
            workdir: "/".into(),
            user: None,
            stdin: false,
            terminal: None,
            builtin: true,
        };
        if self.exec(&id, spec, tx, false).await.is_err() {
            let _ = reply.send(Outcome::Reply(Reply::Stats(stats)));
            return;
        }
        // The helper's frames arrive through this very actor: collect
        // them on a task of their own.
        tokio::spawn(async move {
            let mut out = Vec::new();
            while let Some(frame) = rx.recv().await {
                match frame {
                    Frame::Data { bytes, .. } => out.extend_from_slice(&bytes),
                    Frame::Control(Message::Guest(
                        GuestMessage::Exited { .. } | GuestMessage::SpawnFailed { .. },
                    )) => break,
                    _ => {}
                }
            }
            if let Ok(guest) = serde_json::from_slice::<crate::manager::GuestStats>(&out) {
                stats.mem_total_bytes = guest.mem_total_bytes;
                stats.mem_available_bytes = guest.mem_available_bytes;
                stats.pids = guest.pids;
            }
            let _ = reply.send(Outcome::Reply(Reply::Stats(stats)));
        });
    }

    /// Take the box `id` into this pod (its shim lock, its log).
    pub(super) async fn adopt(&mut self, id: &str) -> Result<()> {
        if !self.is_pod() {
            return Err(BoxError::Invalid(
                "containers join pods, not standalone boxes".into(),
            ));
        }
        if self.ending {
            return Err(BoxError::NotRunning("the pod is stopping".into()));
        }
        if self.containers.contains_key(id) {
            return Ok(());
        }
        let records = self
            .records
            .as_ref()
            .ok_or_else(|| BoxError::Invalid("this sandbox stores no boxes".into()))?;
        let record = records.store.get(id)?;
        if record.config.spec.sandbox.pod.as_deref() != Some(self.id.as_str()) {
            return Err(BoxError::Invalid(format!(
                "box {} is not in this pod",
                record.config.name
            )));
        }
        let lock_path = record.dir.join(SHIM_LOCK);
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| BoxError::io(format!("open {}", lock_path.display()), e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
            BoxError::Conflict(format!(
                "box {} already has a supervisor",
                record.config.name
            ))
        })?;
        let (_, home) = crate::state::BoxStore::of_box_dir(&record.dir)?;
        let options = crate::manager::lower::run_options(&record.config.spec, &home)?;
        let log = crate::state::log::LogWriter::open(
            &record.dir.join(LOG_FILE),
            self.engine.log_max_bytes,
        )?;
        let c = record.config.container();
        let setup = ContainerSetup {
            id: record.config.id.clone(),
            name: record.config.name.clone(),
            dir: record.dir.clone(),
            image: crate::manager::views::list::image_of(&record),
            options,
            restart: c.restart,
            auto_remove: c.auto_remove,
            stop_signal: c.stop_signal.map_or(libc::SIGTERM, |s| s.number()),
            sink: Box::new(log),
        };
        let mut container = Container::new(setup, record.state.restart_count);
        container.lock = Some(lock);
        container.exit_code = record.state.exit_code;
        if record.state.status == BoxStatus::Exited {
            container.phase = Phase::Exited;
        }
        self.containers.insert(id.to_string(), container);
        let shim = std::process::id();
        self.record(id, |s| s.shim_pid = Some(shim));
        if matches!(self.vm, Vm::Up { .. }) {
            self.create_in_vm(id).await;
        }
        Ok(())
    }

    async fn start_container(
        &mut self,
        conn: ConnId,
        id: &str,
        hold: bool,
        reply: oneshot::Sender<Outcome>,
    ) {
        if let Err(e) = self.adopt(id).await {
            let _ = reply.send(Outcome::Error(e));
            return;
        }
        let vm_pid = match &self.vm {
            Vm::Up { running, .. } => running.handler.pid(),
            _ => 0,
        };
        if hold {
            self.holds.insert(conn, id.to_string());
        }
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        match c.phase {
            Phase::Running => {
                let _ = reply.send(Outcome::Reply(Reply::Started { vm_pid }));
                return;
            }
            Phase::Starting => {
                c.start_waiters.push(reply);
                return;
            }
            Phase::Restarting => {
                let _ = reply.send(Outcome::Error(BoxError::Conflict(format!(
                    "box {} is restarting",
                    c.setup.name
                ))));
                return;
            }
            Phase::Created | Phase::Exited => {}
        }
        c.stopped_by_user = false;
        c.backoff = None;
        c.start_waiters.push(reply);
        c.phase = Phase::Starting;
        self.record(id, |s| s.stopped_by_user = false);
        if matches!(self.vm, Vm::Up { .. }) {
            self.start_in_vm(id).await;
        }
    }

    async fn remove_container(&mut self, id: &str, force: bool, reply: oneshot::Sender<Outcome>) {
        let Some(c) = self.containers.get_mut(id) else {
            let _ = reply.send(Outcome::Reply(Reply::Ok));
            return;
        };
        if (c.is_live() || c.phase == Phase::Restarting) && !force {
            let _ = reply.send(Outcome::Error(BoxError::Conflict(format!(
                "box {} is running: stop it first or use rm -f",
                c.setup.name
            ))));
            return;
        }
        c.stopped_by_user = true;
        c.remove_waiters.push(reply);
        let in_guest = c.in_guest || c.creating;
        if in_guest && matches!(self.vm, Vm::Up { .. }) {
            self.resume_if_paused().await;
            self.send_frame(&Frame::Control(Message::Host(
                HostMessage::RemoveContainer {
                    container: id.to_string(),
                    discard: true,
                },
            )))
            .await;
        } else {
            self.on_container_removed(id, None);
        }
    }

    /// A container left the VM (`error`: it could not).
    pub(super) fn on_container_removed(&mut self, id: &str, error: Option<String>) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        if let Some(reason) = error {
            for w in c.remove_waiters.drain(..) {
                let _ = w.send(Outcome::Error(BoxError::Guest(reason.clone())));
            }
            return;
        }
        c.in_guest = false;
        c.creating = false;
        if c.removing_box {
            return self.delete_box(id);
        }
        if c.remove_waiters.is_empty() {
            return;
        }
        let Some(mut c) = self.containers.remove(id) else {
            return;
        };
        for w in c.remove_waiters.drain(..) {
            let _ = w.send(Outcome::Reply(Reply::Ok));
        }
        let code = c.exit_code.unwrap_or(0);
        for w in c.exit_waiters.drain(..) {
            let _ = w
                .reply
                .send(Outcome::Reply(Reply::Exited { code, last: true }));
        }
        self.router.forget(id);
        let shim = std::process::id();
        if let Some(records) = &self.records {
            let _ = records.store.update_dir(&c.setup.dir, |s| {
                if s.shim_pid == Some(shim) {
                    s.shim_pid = None;
                }
            });
        }
    }

    pub(super) async fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::StopKill {
                container,
                stop_gen,
            } => self.stop_kill(&container, stop_gen).await,
            Timer::StopForce {
                container,
                stop_gen,
            } => self.stop_force(&container, stop_gen).await,
            Timer::Restart { container } => self.restart(&container).await,
            Timer::Remove { container } => self.remove_box(&container).await,
            Timer::HoldsOver => self.holds_over = true,
            Timer::WatchDir => {
                let file = match self.is_pod() {
                    true => crate::sandbox::pods::POD_FILE,
                    false => crate::state::CONFIG_FILE,
                };
                if self.dir.join(file).is_file() {
                    self.after(self.timing.dir_watch, Timer::WatchDir);
                    return;
                }
                // Deleted behind the store's back (say its home was
                // removed): it can never be managed again. Its VM goes;
                // there is nowhere to record anything.
                tracing::warn!(dir = %self.dir.display(), "sandbox directory is gone: stopping its VM");
                self.records = None;
                for c in self.containers.values_mut() {
                    c.stopped_by_user = true;
                }
                let e = BoxError::NotFound {
                    what: "sandbox directory",
                    name: self.dir.display().to_string(),
                };
                match &self.vm {
                    Vm::Up { .. } => self.lose_vm(e),
                    Vm::Booting { .. } => self.retire_vm(Duration::ZERO, Some(e)),
                    _ => self.begin_end(),
                }
            }
        }
    }
}

/// Send `outcome` as the reply.
fn answer(reply: oneshot::Sender<Outcome>, outcome: Result<Reply>) {
    let _ = reply.send(match outcome {
        Ok(r) => Outcome::Reply(r),
        Err(e) => Outcome::Error(e),
    });
}

fn phase_word(phase: Option<Phase>) -> &'static str {
    match phase {
        Some(Phase::Created) => "created",
        Some(Phase::Starting) => "starting",
        Some(Phase::Running) => "running",
        Some(Phase::Exited) => "exited",
        Some(Phase::Restarting) => "restarting",
        None => "removed",
    }
}

/// `read_bytes` and `write_bytes` of /proc/PID/io (storage I/O of a process).
fn block_io(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    parse_proc_io(&text)
}

fn parse_proc_io(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("read_bytes:"), field("write_bytes:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_io_fields_are_read_by_name() {
        let text =
            "rchar: 10\nwchar: 20\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_proc_io(text), (4096, 8192));
        assert_eq!(parse_proc_io(""), (0, 0));
    }
}
