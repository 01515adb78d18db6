//! The host's container requests: create a container (its root, cgroup and
//! ulimits) and remove one (kill its processes, take its root apart), each
//! on a thread of its own and answered `ContainerCreated`,
//! `ContainerRemoved` or `ContainerFailed`. The container `Boot` carries is
//! created inline, before anything else is read.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use a3s_box_core::guest::message::{
    check_container_id, ContainerOp, ContainerSpec, GuestMessage, NetworkConfig,
};
use nix::sys::signal::{kill, Signal};

use super::session::{spawn_thread, Session};
use crate::container::cgroup::Cgroup;
use crate::container::{rlimit, Container};
use crate::error::InitError;
use crate::pid1::log::{debug, warning};
use crate::storage::root;

/// How long a removal waits for the container's processes to die.
const KILL_WAIT: Duration = Duration::from_secs(10);
const KILL_POLL: Duration = Duration::from_millis(10);

/// Build container `spec`: ulimits, cgroup, root. Nothing is left behind
/// on failure.
fn build(
    spec: &ContainerSpec,
    network: Option<&NetworkConfig>,
    workdirs: &[&str],
) -> Result<Container, InitError> {
    check_container_id(&spec.id).map_err(InitError::Protocol)?;
    let limits = spec.limits.as_deref();
    let rlimits =
        rlimit::parse_all(limits.map_or(&[], |l| &l.ulimits[..])).map_err(InitError::Protocol)?;
    let cgroup = Cgroup::create(&spec.id, limits)?;
    let layout = root::assemble(spec, network, workdirs).inspect_err(|_| {
        if let Some(cgroup) = &cgroup {
            let _ = cgroup.remove();
        }
    })?;
    Ok(Container::new(
        spec.id.clone(),
        spec.hostname.clone(),
        layout,
        cgroup,
        rlimits,
    ))
}

/// Kill every process of `container` and wait until they are gone.
fn kill_all(container: &Container) -> Result<(), String> {
    let deadline = Instant::now() + KILL_WAIT;
    let gone: Box<dyn Fn() -> bool + '_> = match &container.cgroup {
        Some(cgroup) => {
            cgroup.kill().map_err(|e| e.to_string())?;
            Box::new(|| cgroup.is_empty())
        }
        None => {
            // Without a cgroup: its PID namespace dies with its init.
            if let Some(pid) = container.main_pid() {
                let _ = kill(pid, Signal::SIGKILL);
            }
            Box::new(|| container.main_pid().is_none())
        }
    };
    while !gone() {
        if Instant::now() >= deadline {
            return Err(format!(
                "its processes still run {}s after SIGKILL",
                KILL_WAIT.as_secs()
            ));
        }
        thread::sleep(KILL_POLL);
    }
    Ok(())
}

impl Session {
    /// Create `Boot`'s container, on this thread; processes that name no
    /// container run in it. `workdirs` are made on a read-only root.
    pub fn create_first(&self, spec: &ContainerSpec, workdirs: &[&str]) -> Result<(), InitError> {
        self.containers
            .reserve(&spec.id)
            .map_err(InitError::Protocol)?;
        let (network, planned) = self.network_now();
        let built = build(spec, network.as_ref(), workdirs);
        let container = built.inspect_err(|_| self.containers.release(&spec.id))?;
        self.container_ready(Arc::new(container), &planned);
        self.containers.set_first(&spec.id);
        self.send_message(GuestMessage::ContainerCreated {
            container: spec.id.clone(),
        });
        Ok(())
    }

    fn container_failed(&self, container: String, op: ContainerOp, reason: String) {
        warning!("container {container}: {op:?} failed: {reason}");
        self.send_message(GuestMessage::ContainerFailed {
            container,
            op,
            reason,
        });
    }

    /// `CreateContainer`.
    pub fn create_container(self: &Arc<Self>, spec: ContainerSpec) {
        if let Err(reason) = self.containers.reserve(&spec.id) {
            return self.container_failed(spec.id, ContainerOp::Create, reason);
        }
        let session = Arc::clone(self);
        spawn_thread(self, format!("create-{}", spec.id), move || {
            let workdirs: Vec<&str> = spec.workdir.as_deref().into_iter().collect();
            let (network, planned) = session.network_now();
            match build(&spec, network.as_ref(), &workdirs) {
                Ok(container) => {
                    session.container_ready(Arc::new(container), &planned);
                    debug!("container {} created", spec.id);
                    session.send_message(GuestMessage::ContainerCreated { container: spec.id });
                }
                Err(e) => {
                    session.containers.release(&spec.id);
                    session.container_failed(spec.id, ContainerOp::Create, e.to_string());
                }
            }
        });
    }

    /// `RemoveContainer`.
    pub fn remove_container(self: &Arc<Self>, id: String, discard: bool) {
        let container = match self.containers.begin_remove(&id) {
            Ok(container) => container,
            Err(reason) => return self.container_failed(id, ContainerOp::Remove, reason),
        };
        let session = Arc::clone(self);
        spawn_thread(self, format!("remove-{id}"), move || {
            if let Err(reason) = kill_all(&container) {
                session.containers.restore(container);
                return session.container_failed(id, ContainerOp::Remove, reason);
            }
            container.stopped();
            root::disassemble(&container.layout, discard);
            if let Some(cgroup) = &container.cgroup {
                if let Err(e) = cgroup.remove() {
                    warning!("container {id}: {e}");
                }
            }
            session.containers.release(&id);
            debug!("container {id} removed");
            session.send_message(GuestMessage::ContainerRemoved { container: id });
        });
    }
}
