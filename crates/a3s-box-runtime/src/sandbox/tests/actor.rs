//! The actor on its own, as the foreground `run --rm` and the helpers of a
//! stopped box use it: nothing stored, an in-process connection.

use std::sync::Arc;
use std::time::Duration;

use a3s_box_core::status::RestartPolicy;

use crate::config::EngineConfig;
use crate::manager::client::{run_session, ClientIo, Outcome};
use crate::sandbox::fake::{FakeBehaviour, FakeVmm};
use crate::sandbox::rpc::Request;
use crate::sandbox::{
    server, Actor, ContainerSetup, Discard, Kind, RunOptions, SandboxClient, Setup, Timing,
};

fn options(command: &[&str], stdin: bool) -> RunOptions {
    RunOptions {
        rootfs_dir: "/r".into(),
        image: None,
        command: command.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        workdir: None,
        user: None,
        vcpus: 1,
        memory_mib: 128,
        kernel: None,
        accel: "auto".into(),
        hostname: None,
        debug: false,
        stdin,
        tty: false,
        storage: Default::default(),
        builtin: false,
        network: None,
    }
}

fn actor(dir: &std::path::Path, vmm: Arc<FakeVmm>, command: &[&str], stdin: bool) -> Actor {
    let id = "f".repeat(64);
    let container = ContainerSetup {
        id: id.clone(),
        name: "fg".into(),
        dir: dir.to_path_buf(),
        image: String::new(),
        options: options(command, stdin),
        restart: RestartPolicy::No,
        auto_remove: false,
        stop_signal: libc::SIGTERM,
        sink: Box::new(Discard),
    };
    let setup = Setup {
        id,
        dir: dir.to_path_buf(),
        engine: Arc::new(EngineConfig::defaults(dir.into(), None, None)),
        vmm,
        records: None,
        kind: Kind::Standalone(Box::new(container)),
        report_expected: false,
        control: false,
        watch_dir: false,
    };
    Actor::new(setup).0.with_timing(Timing::fast())
}

#[tokio::test]
async fn stdin_sent_while_the_vm_boots_reaches_the_main_process() {
    let dir = tempfile::tempdir().unwrap();
    let vmm = FakeVmm::new(FakeBehaviour {
        boot_delay: Duration::from_millis(50),
        ..FakeBehaviour::default()
    });
    let actor = actor(dir.path(), vmm, &["cat"], true);
    let handle = actor.handle();
    let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
    tokio::spawn(server::serve_connection(theirs, handle));
    let client = SandboxClient::over(ours, "fg");
    let session = async {
        let request = Request::Attach {
            container: None,
            stdin: true,
            replay: true,
            hold: false,
        };
        let (reader, writer) = client.session(request).await.unwrap();
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        let io = ClientIo {
            stdin: Some(Box::new(std::io::Cursor::new(b"typed early\n".to_vec()))),
            close_stdin_at_eof: true,
            detach_keys: false,
            stdout: Box::new(Sink(out.clone())),
            stderr: Box::new(tokio::io::sink()),
            events: None,
            return_when_started: false,
            already_running: true,
        };
        let outcome = run_session(reader, writer, io).await.unwrap();
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        (outcome, text)
    };
    let (code, (outcome, text)) = tokio::join!(actor.run(), session);
    assert_eq!(code.unwrap(), 0);
    assert_eq!(outcome, Outcome::Exited(0));
    assert_eq!(text, "typed early\n");
}

#[tokio::test]
async fn a_crashed_vm_is_an_error_with_its_reason_and_a_signal_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let vmm = FakeVmm::new(FakeBehaviour::default());
    let err = actor(dir.path(), vmm.clone(), &["sleep:10", "crash"], false)
        .run()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("fake VM was killed"), "{err}");
    // A forwarded signal ends the workload with 128+N, not an error.
    let a = actor(dir.path(), vmm, &["hang"], false);
    let conn = a.handle().connect();
    let run = tokio::spawn(a.run());
    tokio::time::sleep(Duration::from_millis(30)).await;
    let signal = Request::Signal {
        container: None,
        signal: libc::SIGINT,
    };
    assert!(matches!(
        conn.request(signal, None).await,
        crate::sandbox::Outcome::Reply(_)
    ));
    assert_eq!(run.await.unwrap().unwrap(), 130);
}

/// An in-memory output.
struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

impl tokio::io::AsyncWrite for Sink {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
