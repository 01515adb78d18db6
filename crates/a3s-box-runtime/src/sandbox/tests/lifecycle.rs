//! Starts, exits, restart policies, stops, `--rm`, waits, reconciliation.

use std::time::{Duration, Instant};

use a3s_box_core::status::{BoxStatus, RestartPolicy};
use a3s_box_core::ErrorKind;

use super::env;
use crate::manager::{RemoveOptions, WaitCondition};
use crate::sandbox::fake::FakeBehaviour;

#[tokio::test]
async fn a_box_runs_and_its_exit_is_recorded_once() {
    let t = env();
    let id = t.run(&["echo:hello", "sleep:20", "exit:3"], |_| {}).await;
    assert_eq!(
        t.engine.wait(&id, WaitCondition::NotRunning).await.unwrap(),
        3
    );
    let r = t.engine.get(&id).unwrap();
    assert_eq!(r.state.status, BoxStatus::Exited);
    assert_eq!(r.state.exit_code, Some(3));
    assert!(r.state.shim_pid.is_none(), "{:?}", r.state);
    assert!(r.state.accelerator.unwrap().starts_with("fake"));
    assert_eq!(t.actions(&id), ["create", "start", "die"]);
    let mut lines = Vec::new();
    let opts = crate::manager::logs::LogsOptions::default();
    t.engine
        .logs(&id, &opts, &mut |l| lines.push(l.log.clone()))
        .await
        .unwrap();
    assert_eq!(lines, ["hello\n"]);
    // Started again: a new VM, the same record.
    t.engine.start(&id).await.unwrap().unwrap();
    assert_eq!(
        t.engine.wait(&id, WaitCondition::NotRunning).await.unwrap(),
        3
    );
    assert_eq!(t.vmm.boots(), 2);
}

#[tokio::test]
async fn start_failures_carry_dockers_codes() {
    let t = env();
    let id = t.create(&["missing"], |_| {}).await.config.id;
    let failed = t.engine.start(&id).await.unwrap().unwrap_err();
    assert_eq!(failed.code, 127);
    assert!(failed.reason.contains("not found"), "{}", failed.reason);
    let r = t.until(&id, |r| r.state.shim_pid.is_none()).await;
    assert_eq!(r.state.status, BoxStatus::Exited);
    assert_eq!(r.state.exit_code, Some(127));
    assert!(!t.actions(&id).contains(&"start".to_string()));

    // A VM that cannot start is a3s-box's own failure: 125.
    t.vmm.set(FakeBehaviour {
        fail_boot: true,
        ..FakeBehaviour::default()
    });
    let id = t.create(&["exit:0"], |_| {}).await.config.id;
    let failed = t.engine.start(&id).await.unwrap().unwrap_err();
    assert_eq!(failed.code, 125);
    assert!(
        failed.reason.contains("does not start"),
        "{}",
        failed.reason
    );
    let r = t.until(&id, |r| r.state.shim_pid.is_none()).await;
    assert_eq!(r.state.status, BoxStatus::Exited);
    assert!(r.state.error.unwrap().contains("does not start"));
}

#[tokio::test]
async fn on_failure_restarts_up_to_its_limit_with_back_off() {
    let t = env();
    let begun = Instant::now();
    let id = t
        .run(&["exit:1"], |c| {
            c.restart = RestartPolicy::OnFailure {
                max_retries: Some(3),
            }
        })
        .await;
    assert_eq!(
        t.engine.wait(&id, WaitCondition::NotRunning).await.unwrap(),
        1
    );
    let r = t.engine.get(&id).unwrap();
    assert_eq!(r.state.restart_count, 3);
    assert_eq!(r.state.status, BoxStatus::Exited);
    assert_eq!(t.vmm.boots(), 4);
    // Back-off of the fast timings: 10 + 20 + 40 ms.
    assert!(begun.elapsed() >= Duration::from_millis(70));
    let actions = t.actions(&id);
    assert_eq!(
        actions.iter().filter(|a| *a == "restart").count(),
        3,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "die").count(),
        4,
        "{actions:?}"
    );
    // Success is not a failure: no restart.
    let id = t
        .run(&["exit:0"], |c| {
            c.restart = RestartPolicy::OnFailure { max_retries: None }
        })
        .await;
    assert_eq!(
        t.engine.wait(&id, WaitCondition::NotRunning).await.unwrap(),
        0
    );
    assert_eq!(t.engine.get(&id).unwrap().state.restart_count, 0);
}

#[tokio::test]
async fn always_restarts_a_killed_vm_until_the_user_stops_it() {
    let t = env();
    let id = t
        .run(&["hang"], |c| c.restart = RestartPolicy::Always)
        .await;
    let first = t.engine.get(&id).unwrap().state.vm_pid;
    t.vmm.last().unwrap().kill();
    let r = t
        .until(&id, |r| {
            r.state.status == BoxStatus::Running && r.state.vm_pid != first
        })
        .await;
    assert_eq!(r.state.restart_count, 1);
    t.engine.stop(&id, Duration::from_secs(1)).await.unwrap();
    let r = t.engine.get(&id).unwrap();
    assert_eq!(r.state.status, BoxStatus::Exited);
    assert_eq!(r.state.exit_code, Some(143));
    assert!(r.state.stopped_by_user);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(t.vmm.boots(), 2, "no restart after a stop");
    // A stop during the back-off ends it too.
    let id = t
        .run(&["sleep:5", "exit:1"], |c| {
            c.restart = RestartPolicy::UnlessStopped
        })
        .await;
    t.until(&id, |r| r.state.status == BoxStatus::Restarting)
        .await;
    t.engine.stop(&id, Duration::from_secs(1)).await.unwrap();
    let r = t.engine.get(&id).unwrap();
    assert_eq!(r.state.status, BoxStatus::Exited);
    let boots = t.vmm.boots();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(t.vmm.boots(), boots);
}

#[tokio::test]
async fn stop_escalates_from_its_signal_to_sigkill() {
    let t = env();
    let id = t.run(&["ignore-term", "hang"], |_| {}).await;
    let begun = Instant::now();
    t.engine.stop(&id, Duration::from_secs(1)).await.unwrap();
    assert!(begun.elapsed() >= Duration::from_secs(1));
    let r = t.engine.get(&id).unwrap();
    assert_eq!(r.state.exit_code, Some(137));
    assert!(t.actions(&id).contains(&"stop".to_string()));
    // Stopping what does not run is fine.
    t.engine.stop(&id, Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn rm_boxes_go_once_their_holder_read_the_end() {
    let t = env();
    let id = t
        .create(&["echo:bye", "sleep:30", "exit:4"], |c| {
            c.auto_remove = true
        })
        .await
        .config
        .id;
    let mut watch = t.engine.watch_exit(&id).unwrap();
    t.engine.start_watched(&mut watch).await.unwrap().unwrap();
    let mut out = String::new();
    let code = t
        .engine
        .follow_to_exit(watch, &mut |l| out.push_str(&l.log))
        .await
        .unwrap();
    assert_eq!((code, out.as_str()), (4, "bye\n"));
    assert_eq!(t.engine.get(&id).unwrap_err().kind(), ErrorKind::NotFound);
    assert!(t
        .actions(&id)
        .ends_with(&["die".to_string(), "destroy".to_string()]));
    // Without a holder it goes by itself.
    let id = t
        .run(&["sleep:50", "exit:0"], |c| c.auto_remove = true)
        .await;
    assert_eq!(t.engine.wait(&id, WaitCondition::Removed).await.unwrap(), 0);
    assert!(t.engine.get(&id).is_err());
}

#[tokio::test]
async fn an_rm_box_is_not_flushed_before_it_goes() {
    let t = env();
    let power_off = Duration::from_millis(400);
    t.vmm.set(FakeBehaviour {
        disk_power_off: Some(power_off),
        ..FakeBehaviour::default()
    });
    // A kept box's layer must reach its disk: the guest syncs and powers off.
    let kept = t.run(&["hang"], |_| {}).await;
    let start = Instant::now();
    t.engine.stop(&kept, Duration::ZERO).await.unwrap();
    assert!(start.elapsed() >= power_off, "{:?}", start.elapsed());
    assert_eq!(t.status(&kept), BoxStatus::Exited);
    // An `--rm` box's layer goes with it: its VM is stopped at once.
    let gone = t.run(&["hang"], |c| c.auto_remove = true).await;
    let start = Instant::now();
    t.engine.stop(&gone, Duration::ZERO).await.unwrap();
    assert!(start.elapsed() < power_off, "{:?}", start.elapsed());
    let deadline = Instant::now() + Duration::from_secs(5);
    while t.engine.get(&gone).is_ok() {
        assert!(Instant::now() < deadline, "the --rm box stayed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn wait_conditions_are_dockers() {
    let t = env();
    let id = t.run(&["exit:2"], |_| {}).await;
    assert_eq!(
        t.engine.wait(&id, WaitCondition::NotRunning).await.unwrap(),
        2
    );
    // Not running: at once. Next exit: the next one.
    assert_eq!(
        t.engine.wait(&id, WaitCondition::NotRunning).await.unwrap(),
        2
    );
    let engine = t.engine.clone();
    let key = id.clone();
    let next = tokio::spawn(async move { engine.wait(&key, WaitCondition::NextExit).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!next.is_finished());
    t.engine.start(&id).await.unwrap().unwrap();
    assert_eq!(next.await.unwrap().unwrap(), 2);
    // Removed: once someone removes it.
    let engine = t.engine.clone();
    let key = id.clone();
    let removed = tokio::spawn(async move { engine.wait(&key, WaitCondition::Removed).await });
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(!removed.is_finished());
    t.engine
        .remove(&id, RemoveOptions::default())
        .await
        .unwrap();
    assert_eq!(removed.await.unwrap().unwrap(), 2);
    // A running box's next exit, by a signal.
    let id = t.run(&["hang"], |_| {}).await;
    let engine = t.engine.clone();
    let key = id.clone();
    let next = tokio::spawn(async move { engine.wait(&key, WaitCondition::NextExit).await });
    t.engine.kill(&id, libc::SIGINT).await.unwrap();
    assert_eq!(next.await.unwrap().unwrap(), 130);
    assert!(t.actions(&id).contains(&"kill".to_string()));
}

#[tokio::test]
async fn a_dead_supervisor_is_reconciled_by_the_next_reader() {
    let t = env();
    let record = t.create(&["hang"], |_| {}).await;
    let id = record.config.id.clone();
    t.engine.start(&id).await.unwrap().unwrap();
    assert_eq!(t.status(&id), BoxStatus::Running);
    let engine = t.engine.clone();
    let key = id.clone();
    let waiting = tokio::spawn(async move { engine.wait(&key, WaitCondition::NotRunning).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    t.supervisors.kill(&record.dir);
    assert_eq!(waiting.await.unwrap().unwrap(), 137);
    let r = t.engine.get(&id).unwrap();
    assert_eq!(r.state.status, BoxStatus::Exited);
    assert!(r.state.error.unwrap().contains("shim"));
    // It can be started again and removed.
    t.engine.start(&id).await.unwrap().unwrap();
    let force = RemoveOptions {
        force: true,
        volumes: false,
    };
    t.engine.remove(&id, force).await.unwrap();
    assert!(t.engine.get(&id).is_err());
    assert!(!crate::state::shim_alive(&record.dir));
}

#[tokio::test]
async fn rm_refuses_a_running_box_and_rm_f_ends_it() {
    let t = env();
    let record = t.create(&["hang"], |_| {}).await;
    let id = record.config.id.clone();
    t.engine.start(&id).await.unwrap().unwrap();
    let err = t
        .engine
        .remove(&id, RemoveOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("rm -f"));
    let force = RemoveOptions {
        force: true,
        volumes: false,
    };
    t.engine.remove(&id, force).await.unwrap();
    assert!(t.engine.get(&id).is_err());
    assert!(!t.vmm.last().unwrap().running());
    assert!(!crate::state::shim_alive(&record.dir));
}

#[tokio::test]
async fn pause_stops_the_vcpus_and_signals_resume_them() {
    let t = env();
    let id = t.run(&["hang"], |_| {}).await;
    t.engine.pause(&id).await.unwrap();
    assert_eq!(t.status(&id), BoxStatus::Paused);
    assert!(t.vmm.last().unwrap().is_paused());
    let again = t.engine.pause(&id).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::NotRunning);
    let exec = crate::manager::ExecRequest {
        args: vec!["true".into()],
        ..Default::default()
    };
    let refused = t.engine.exec(&id, exec).await.unwrap_err();
    assert!(refused.to_string().contains("paused"), "{refused}");
    t.engine.unpause(&id).await.unwrap();
    assert_eq!(t.status(&id), BoxStatus::Running);
    assert_eq!(
        t.engine.unpause(&id).await.unwrap_err().kind(),
        ErrorKind::NotRunning
    );
    // A stop of a paused box resumes it first.
    t.engine.pause(&id).await.unwrap();
    t.engine.stop(&id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(t.engine.get(&id).unwrap().state.exit_code, Some(143));
    let actions = t.actions(&id);
    for a in ["pause", "unpause", "stop", "die"] {
        assert!(actions.contains(&a.to_string()), "{actions:?}");
    }
}

#[tokio::test]
async fn a_deleted_box_directory_ends_its_vm() {
    let t = env();
    let record = t.create(&["hang"], |_| {}).await;
    t.engine.start(&record.config.id).await.unwrap().unwrap();
    let vm = t.vmm.last().unwrap();
    std::fs::remove_dir_all(&record.dir).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while vm.running() {
        assert!(Instant::now() < deadline, "the VM outlived its box");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_stop_during_the_boot_abandons_it() {
    let t = env();
    t.vmm.set(FakeBehaviour {
        boot_delay: Duration::from_millis(300),
        ..FakeBehaviour::default()
    });
    let id = t.create(&["hang"], |_| {}).await.config.id;
    let engine = t.engine.clone();
    let key = id.clone();
    let start = tokio::spawn(async move { engine.start(&key).await });
    let r = t.until(&id, |r| r.state.shim_pid.is_some()).await;
    assert_eq!(r.state.status, BoxStatus::Created, "still booting");
    t.engine.stop(&id, Duration::ZERO).await.unwrap();
    let failed = start.await.unwrap().unwrap().unwrap_err();
    assert_eq!(failed.code, 137);
    assert!(
        failed.reason.contains("stopped before it started"),
        "{}",
        failed.reason
    );
    let r = t.engine.get(&id).unwrap();
    assert_eq!(
        (r.state.status, r.state.exit_code),
        (BoxStatus::Exited, Some(137))
    );
    assert!(!t.vmm.last().unwrap().running());
}

/// `network connect` goes through a running box's supervisor (whose VMM
/// here has no network data plane: refused, the spec unchanged) and edits
/// a stopped box's spec.
#[tokio::test]
async fn network_connect_asks_the_supervisor_of_a_running_box() {
    use a3s_box_core::spec::NetworkMode;

    use crate::manager::{NetworkConnect, NetworkCreate};

    let t = env();
    t.engine
        .network_create(NetworkCreate {
            name: "meet".into(),
            ..Default::default()
        })
        .unwrap();
    let id = t.run(&["sleep:5000"], |_| {}).await;
    let e = t
        .engine
        .network_connect("meet", &id, NetworkConnect::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no network data plane"), "{e}");
    let mode = || t.engine.get(&id).unwrap().config.spec.sandbox.network.mode;
    assert_eq!(mode(), NetworkMode::Default);
    t.engine.stop(&id, Duration::from_secs(1)).await.unwrap();
    t.until(&id, |r| r.state.shim_pid.is_none()).await;
    t.engine
        .network_connect("meet", &id, NetworkConnect::default())
        .await
        .unwrap();
    let NetworkMode::Networks(list) = mode() else {
        panic!("{:?}", mode())
    };
    let names: Vec<&str> = list.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["default", "meet"]);
}
