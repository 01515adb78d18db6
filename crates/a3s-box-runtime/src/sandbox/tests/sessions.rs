//! Exec, attach, stats and the event stream through the sandbox RPC.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use a3s_box_core::ErrorKind;
use tokio::io::AsyncWrite;

use super::env;
use crate::manager::client::{run_session, ClientIo, Outcome};
use crate::manager::{ExecRequest, WaitCondition};
use crate::sandbox::client::SandboxClient;
use crate::sandbox::rpc::{Reply, Request, SandboxEvent, RPC_VERSION};

/// An in-memory output.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Buf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl AsyncWrite for Buf {
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

fn io(out: &Buf, already_running: bool) -> ClientIo {
    ClientIo {
        stdin: None,
        close_stdin_at_eof: true,
        detach_keys: false,
        stdout: Box::new(out.clone()),
        stderr: Box::new(out.clone()),
        events: None,
        return_when_started: false,
        already_running,
    }
}

#[tokio::test]
async fn exec_runs_its_own_process_and_attach_follows_the_main_one() {
    let t = env();
    let id = t.run(&["echo:first", "hang"], |_| {}).await;
    let exec = ExecRequest {
        args: vec!["echo:from-exec".into(), "exit:5".into()],
        ..Default::default()
    };
    let (reader, writer) = t.engine.exec(&id, exec).await.unwrap();
    let out = Buf::default();
    let outcome = run_session(reader, writer, io(&out, false)).await.unwrap();
    assert_eq!(outcome, Outcome::Exited(5));
    assert_eq!(out.text(), "from-exec\n");
    assert!(t.actions(&id).contains(&"exec-start".to_string()));

    // A late attach replays the main process's output, then its end.
    let ((reader, writer), main) = t.engine.attach(&id, Some(false), true).await.unwrap();
    assert!(!main.tty);
    let out = Buf::default();
    let session = tokio::spawn(run_session(reader, writer, io(&out, true)));
    tokio::time::sleep(Duration::from_millis(30)).await;
    t.engine.kill(&id, libc::SIGTERM).await.unwrap();
    assert_eq!(session.await.unwrap().unwrap(), Outcome::Exited(143));
    assert_eq!(out.text(), "first\n");

    // A stopped box takes no exec.
    t.engine.wait(&id, WaitCondition::NotRunning).await.unwrap();
    let exec = ExecRequest {
        args: vec!["true".into()],
        ..Default::default()
    };
    let err = t.engine.exec(&id, exec).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotRunning);
}

#[tokio::test]
async fn stats_come_from_the_supervisor() {
    let t = env();
    let id = t.run(&["hang"], |_| {}).await;
    let stats = t
        .engine
        .stats(std::slice::from_ref(&id), false, Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].pids, 3);
    assert_eq!(stats[0].mem_usage_bytes, 600);
    assert_eq!(stats[0].mem_limit_bytes, 512 << 20);
}

#[tokio::test]
async fn the_rpc_speaks_its_version_streams_events_and_refuses_with_kinds() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let t = env();
    let record = t.create(&["echo:x", "hang"], |_| {}).await;
    t.engine.start(&record.config.id).await.unwrap().unwrap();
    let mut client = SandboxClient::connect(&record.dir, "box").await.unwrap();
    match client.call(Request::Version).await.unwrap() {
        Reply::Version { rpc, protocol, .. } => {
            assert_eq!(rpc, RPC_VERSION);
            assert_eq!(protocol, a3s_box_core::guest::PROTOCOL_VERSION);
        }
        other => panic!("{other:?}"),
    }
    let err = client
        .call(Request::Signal {
            container: Some("nope".into()),
            signal: 9,
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = client
        .call(Request::StartContainer {
            container: "x".into(),
            hold: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    // A request of another version, or no request at all, is refused;
    // the connection stays.
    let socket = record.dir.join(crate::sandbox::SANDBOX_SOCKET);
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(r).lines();
    for bad in [
        "{\"version\":99,\"request\":{\"op\":\"version\"}}\n",
        "hello\n",
    ] {
        w.write_all(bad.as_bytes()).await.unwrap();
        let line = lines.next_line().await.unwrap().unwrap();
        assert!(line.contains("\"kind\":\"invalid\""), "{line}");
    }
    let mut events = SandboxClient::connect(&record.dir, "box")
        .await
        .unwrap()
        .events()
        .await
        .unwrap();
    t.engine
        .kill(&record.config.id, libc::SIGTERM)
        .await
        .unwrap();
    match events.next().await {
        Some(SandboxEvent::Exited {
            code: 143,
            container,
        }) => {
            assert_eq!(container, record.config.id)
        }
        other => panic!("{other:?}"),
    }
}
