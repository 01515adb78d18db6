//! The supervisor's logic, tested in-process: the engine over in-process
//! supervisors whose hypervisor is the fake one (`super::fake`), so a box's
//! whole life takes milliseconds. What needs a real VM is in the VM tests
//! of the `a3s-box` crate.
#![allow(clippy::unwrap_used)]

mod actor;
mod lifecycle;
mod pods;
mod sessions;

use std::sync::Arc;
use std::time::{Duration, Instant};

use a3s_box_core::spec::{BoxSpec, ContainerSpec, ProcessSpec, RootSource};
use a3s_box_core::status::BoxStatus;

use super::fake::{FakeBehaviour, FakeVmm};
use super::spawn::InProcess;
use crate::config::EngineConfig;
use crate::manager::resolve::PullOptions;
use crate::manager::Engine;
use crate::state::BoxRecord;

/// A home, a root directory, a fake hypervisor and an engine over them.
struct Env {
    home: tempfile::TempDir,
    root: tempfile::TempDir,
    vmm: Arc<FakeVmm>,
    supervisors: Arc<InProcess>,
    engine: Engine,
}

fn env() -> Env {
    let home = tempfile::Builder::new().prefix("a3s-t").tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let vmm = FakeVmm::new(FakeBehaviour::default());
    let supervisors = Arc::new(InProcess::new(vmm.clone()));
    let config = EngineConfig::defaults(home.path().into(), None, None);
    let engine = Engine::with_supervisors(config, supervisors.clone());
    Env {
        home,
        root,
        vmm,
        supervisors,
        engine,
    }
}

impl Env {
    /// A box running the fake program `steps`, shaped by `f`.
    async fn create(&self, steps: &[&str], f: impl FnOnce(&mut ContainerSpec)) -> BoxRecord {
        let mut c = ContainerSpec::new(
            RootSource::Dir {
                path: self.root.path().into(),
            },
            ProcessSpec {
                args: steps.iter().map(|s| s.to_string()).collect(),
                ..ProcessSpec::default()
            },
        );
        // No writable layer: nothing to format.
        c.storage.read_only = true;
        f(&mut c);
        self.engine
            .create(BoxSpec::single(c), PullOptions::default())
            .await
            .unwrap()
    }

    /// Create and start; the box's id.
    async fn run(&self, steps: &[&str], f: impl FnOnce(&mut ContainerSpec)) -> String {
        let id = self.create(steps, f).await.config.id;
        self.engine.start(&id).await.unwrap().unwrap();
        id
    }

    fn status(&self, id: &str) -> BoxStatus {
        self.engine.get(id).unwrap().state.status
    }

    /// Poll the store (at most 5 s) until `pred` holds of the box.
    async fn until(&self, id: &str, pred: impl Fn(&BoxRecord) -> bool) -> BoxRecord {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = self.engine.get(id).unwrap();
            if pred(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "timed out: {:?}", r.state);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The actions recorded for `id`, in order.
    fn actions(&self, id: &str) -> Vec<String> {
        let (events, _) = self.engine.events_since(None, &[]);
        events
            .iter()
            .filter(|e| e.actor.id == id)
            .map(|e| e.action.to_string())
            .collect()
    }
}
