//! Pods: one VM, containers joining and leaving it.

use std::time::Duration;

use a3s_box_core::spec::{BoxSpec, ContainerSpec, Mount, ProcessSpec, RootSource};
use a3s_box_core::status::{BoxStatus, RestartPolicy};
use a3s_box_core::ErrorKind;

use super::{env, Env};
use crate::manager::resolve::PullOptions;
use crate::manager::views::list::{ListFilter, ListOptions};
use crate::manager::{ExecRequest, PodCreate, RemoveOptions, WaitCondition};
use crate::state::BoxRecord;

impl Env {
    /// A box of pod `pod` running the fake program `steps`.
    async fn create_in(
        &self,
        pod: &str,
        steps: &[&str],
        f: impl FnOnce(&mut ContainerSpec),
    ) -> a3s_box_core::Result<BoxRecord> {
        let mut c = ContainerSpec::new(
            RootSource::Dir {
                path: self.root.path().into(),
            },
            ProcessSpec {
                args: steps.iter().map(|s| s.to_string()).collect(),
                ..ProcessSpec::default()
            },
        );
        f(&mut c);
        let mut spec = BoxSpec::single(c);
        spec.sandbox.pod = Some(pod.into());
        self.engine.create(spec, PullOptions::default()).await
    }
}

#[tokio::test]
async fn containers_join_a_running_pod_without_a_boot() {
    let t = env();
    let pod = t
        .engine
        .pod_create(PodCreate {
            name: Some("p".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(pod.state, "Created");
    assert!(t
        .home
        .path()
        .join("pods")
        .join(&pod.id[..12])
        .join("rw.img")
        .exists());
    let a = t.create_in("p", &["echo:a", "hang"], |_| {}).await.unwrap();
    // A container of a pod keeps its layer on the pod's disk.
    assert!(!a.dir.join("rw.img").exists());
    assert_eq!(a.config.spec.sandbox.pod.as_deref(), Some(pod.id.as_str()));
    t.engine.start(&a.config.id).await.unwrap().unwrap();
    assert_eq!(t.vmm.boots(), 1);
    assert_eq!(t.engine.pod_inspect("p").unwrap().state, "Running");

    // The second container joins the running VM.
    let b = t.create_in("p", &["hang"], |_| {}).await.unwrap();
    t.engine.start(&b.config.id).await.unwrap().unwrap();
    assert_eq!(t.vmm.boots(), 1, "no second boot");
    let exec = ExecRequest {
        args: vec!["exit:7".into()],
        ..Default::default()
    };
    let (reader, writer) = t.engine.exec(&b.config.id, exec).await.unwrap();
    let io = crate::manager::client::ClientIo {
        stdin: None,
        close_stdin_at_eof: true,
        detach_keys: false,
        stdout: Box::new(tokio::io::sink()),
        stderr: Box::new(tokio::io::sink()),
        events: None,
        return_when_started: false,
        already_running: false,
    };
    let outcome = crate::manager::client::run_session(reader, writer, io)
        .await
        .unwrap();
    assert_eq!(outcome, crate::manager::client::Outcome::Exited(7));

    // ps shows the pod; a filter by pod finds its containers.
    let rows = t
        .engine
        .list(&ListOptions {
            all: true,
            filters: vec![ListFilter::Pod("p".into())],
        })
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.pod.as_deref() == Some("p")));
    assert_eq!(t.engine.pod_list().unwrap()[0].number_of_containers, 2);

    // One container stops; the other and the VM go on.
    t.engine
        .stop(&a.config.id, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(t.status(&a.config.id), BoxStatus::Exited);
    assert_eq!(t.status(&b.config.id), BoxStatus::Running);
    assert_eq!(t.engine.pod_inspect("p").unwrap().state, "Degraded");
    // Pausing one container of a pod is not offered.
    let err = t.engine.pause(&b.config.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);

    // The restart policy restarts in the same VM.
    let c = t
        .create_in("p", &["exit:1"], |c| {
            c.restart = RestartPolicy::OnFailure {
                max_retries: Some(2),
            }
        })
        .await
        .unwrap();
    t.engine.start(&c.config.id).await.unwrap().unwrap();
    assert_eq!(
        t.engine
            .wait(&c.config.id, WaitCondition::NotRunning)
            .await
            .unwrap(),
        1
    );
    assert_eq!(t.engine.get(&c.config.id).unwrap().state.restart_count, 2);
    assert_eq!(t.vmm.boots(), 1);

    // --rm containers of a pod go when they end.
    let d = t
        .create_in("p", &["exit:0"], |c| c.auto_remove = true)
        .await
        .unwrap();
    t.engine.start(&d.config.id).await.unwrap().unwrap();
    t.engine
        .wait(&d.config.id, WaitCondition::Removed)
        .await
        .unwrap();
    assert!(t.engine.get(&d.config.id).is_err());

    // rm of a running container needs -f; it leaves the others.
    let err = t
        .engine
        .remove(&b.config.id, RemoveOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let force = RemoveOptions {
        force: true,
        volumes: false,
    };
    t.engine.remove(&b.config.id, force).await.unwrap();
    assert!(t.engine.get(&b.config.id).is_err());
    t.engine
        .remove(&c.config.id, RemoveOptions::default())
        .await
        .unwrap();

    // The pod stops (its VM too) and starts again with its container.
    t.engine
        .pod_stop("p", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(t.engine.pod_inspect("p").unwrap().state, "Exited");
    assert!(!t.vmm.last().unwrap().running());
    t.engine.pod_start("p").await.unwrap();
    assert_eq!(t.vmm.boots(), 2);
    assert_eq!(t.status(&a.config.id), BoxStatus::Running);

    // pod rm: refused while it runs, -f ends everything.
    let err = t.engine.pod_remove("p", false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    t.engine.pod_remove("p", true).await.unwrap();
    assert!(t.engine.pod_list().unwrap().is_empty());
    assert!(t.engine.get(&a.config.id).is_err());
    assert!(!t.vmm.last().unwrap().running());
}

#[tokio::test]
async fn what_a_running_vm_cannot_take_is_refused_at_create() {
    let t = env();
    t.engine
        .pod_create(PodCreate {
            name: Some("p".into()),
            ..Default::default()
        })
        .unwrap();
    let shared = t.home.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let err = t
        .create_in("p", &["hang"], |c| {
            c.storage.mounts.push(Mount::Bind {
                source: shared.clone(),
                target: "/data".into(),
                read_only: false,
                create_source: false,
            })
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.to_string().contains("/data"), "{err}");
    let err = t.create_in("nope", &["hang"], |_| {}).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(t
        .engine
        .list(&ListOptions {
            all: true,
            ..Default::default()
        })
        .unwrap()
        .is_empty());
    // A pod with no containers starts and stops its VM alone.
    t.engine.pod_start("p").await.unwrap();
    assert_eq!(t.vmm.boots(), 1);
    t.engine.pod_remove("p", true).await.unwrap();
}
