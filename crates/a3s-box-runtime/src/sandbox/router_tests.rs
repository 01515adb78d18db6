use a3s_box_core::guest::message::WindowSize;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::*;

fn spec(stdin: bool) -> ProcessSpec {
    ProcessSpec {
        process: 0,
        container: None,
        executable: "cat".into(),
        args: vec![],
        env: vec![],
        workdir: "/".into(),
        user: None,
        stdin,
        terminal: None,
        builtin: false,
    }
}

fn data(process: u32, stream: StdStream, n: usize) -> Frame {
    Frame::Data {
        process,
        stream,
        bytes: vec![7; n],
    }
}

fn client(router: &mut Router, process: u32, stdin: bool) -> UnboundedReceiver<Frame> {
    let (tx, rx) = unbounded_channel();
    let start = router.exec(spec(stdin), process, tx, false);
    match start {
        Frame::Control(Message::Host(HostMessage::Exec(s))) => assert_eq!(s.process, process),
        other => panic!("{other:?}"),
    }
    rx
}

#[test]
fn output_goes_to_its_own_client_and_credit_is_capped() {
    let mut r = Router::default();
    let mut a = client(&mut r, 2, false);
    let mut b = client(&mut r, 3, false);
    assert!(r.on_guest_frame(data(2, StdStream::Stdout, 10)).is_empty());
    assert_eq!(a.try_recv().unwrap(), data(2, StdStream::Stdout, 10));
    assert!(b.try_recv().is_err());
    // A client cannot return more credit than it was given.
    let credit = r.on_exec_input(
        2,
        Frame::Credit {
            process: 99,
            stream: StdStream::Stdout,
            bytes: 1_000_000,
        },
    );
    assert_eq!(
        credit,
        Some(Frame::Credit {
            process: 2,
            stream: StdStream::Stdout,
            bytes: 10
        })
    );
}

#[test]
fn a_vanished_client_gets_its_process_killed_and_credit_returned() {
    let mut r = Router::default();
    let a = client(&mut r, 2, false);
    r.on_guest_frame(data(2, StdStream::Stderr, 5));
    drop(a);
    let back = r.gone(2);
    assert!(
        back.contains(&Frame::Control(Message::Host(HostMessage::Signal {
            process: 2,
            signal: libc::SIGKILL
        })))
    );
    assert!(back.contains(&Frame::Credit {
        process: 2,
        stream: StdStream::Stderr,
        bytes: 5
    }));
    // Later output is credited straight back.
    assert_eq!(
        r.on_guest_frame(data(2, StdStream::Stdout, 3)),
        [Frame::Credit {
            process: 2,
            stream: StdStream::Stdout,
            bytes: 3
        }]
    );
}

#[test]
fn stdin_beyond_the_window_closes_that_stdin_only() {
    let mut r = Router::default();
    let _a = client(&mut r, 2, true);
    let chunk = STREAM_WINDOW_BYTES as usize / 2;
    for _ in 0..2 {
        assert!(matches!(
            r.on_exec_input(2, data(0, StdStream::Stdin, chunk)),
            Some(Frame::Data { process: 2, .. })
        ));
    }
    assert_eq!(
        r.on_exec_input(2, data(0, StdStream::Stdin, 1)),
        Some(Frame::Eof {
            process: 2,
            stream: StdStream::Stdin
        })
    );
    assert_eq!(r.on_exec_input(2, data(0, StdStream::Stdin, 1)), None);
}

#[test]
fn clients_only_reach_their_own_process() {
    let mut r = Router::default();
    let _a = client(&mut r, 2, false);
    // Stdin to a process started without it, and frames for unknown ids.
    assert_eq!(r.on_exec_input(2, data(0, StdStream::Stdin, 1)), None);
    assert_eq!(r.on_exec_input(5, data(0, StdStream::Stdin, 1)), None);
    let resize = Frame::Control(Message::Host(HostMessage::Resize {
        process: 1,
        size: WindowSize { rows: 5, cols: 9 },
    }));
    assert_eq!(
        r.on_exec_input(2, resize),
        Some(Frame::Control(Message::Host(HostMessage::Resize {
            process: 2,
            size: WindowSize { rows: 5, cols: 9 }
        })))
    );
}

#[test]
fn exit_forgets_the_process_and_attach_replays_recent_output() {
    let mut r = Router::default();
    let mut a = client(&mut r, 2, false);
    let exited = Frame::Control(Message::Guest(GuestMessage::Exited {
        process: 2,
        exit_code: 0,
    }));
    r.on_guest_frame(exited.clone());
    assert_eq!(a.try_recv().unwrap(), exited);
    assert!(!r.is_exec(2));

    r.main_started("c", MAIN_PROCESS);
    r.main_output("c", StdStream::Stdout, b"prompt$ ");
    let (tx, mut rx) = unbounded_channel();
    r.attach("c", 3, tx, false, true);
    assert_eq!(rx.try_recv().unwrap(), data_bytes(b"prompt$ "));
    r.main_output("c", StdStream::Stdout, b"x");
    assert_eq!(rx.try_recv().unwrap(), data_bytes(b"x"));
    // Another container's output is not this client's.
    r.main_output("d", StdStream::Stdout, b"y");
    assert!(rx.try_recv().is_err());
}

#[test]
fn attached_clients_follow_their_container_only() {
    let mut r = Router::default();
    let (tx_a, mut a) = unbounded_channel();
    let (tx_b, mut b) = unbounded_channel();
    // Attached before the main process starts (a container still booting).
    r.attach("a", 10, tx_a, true, false);
    r.attach("b", 11, tx_b, true, false);
    let stdin = data(0, StdStream::Stdin, 3);
    assert_eq!(
        r.on_attached_input(10, stdin.clone()),
        None,
        "nothing runs yet"
    );
    r.main_started("a", 7);
    r.main_started("b", 9);
    assert_eq!(r.main_of(9), Some("b"));
    assert!(matches!(
        r.on_attached_input(10, stdin.clone()),
        Some(Frame::Data { process: 7, .. })
    ));
    assert!(matches!(
        r.on_attached_input(11, stdin),
        Some(Frame::Data { process: 9, .. })
    ));
    r.main_exited("a", 3);
    assert_eq!(
        a.try_recv().unwrap(),
        Frame::Control(Message::Guest(GuestMessage::Exited {
            process: 7,
            exit_code: 3
        }))
    );
    assert!(!r.has_attached("a"));
    assert!(r.has_attached("b"));
    assert!(b.try_recv().is_err());
    r.vm_ended(true);
    assert!(!r.has_attached("b"));
}

fn data_bytes(b: &[u8]) -> Frame {
    Frame::Data {
        process: MAIN_PROCESS,
        stream: StdStream::Stdout,
        bytes: b.to_vec(),
    }
}

#[test]
fn a_detached_client_leaves_its_process_running() {
    let mut r = Router::default();
    let a = client(&mut r, 2, true);
    let detach = Frame::Control(Message::Host(HostMessage::Detach));
    assert_eq!(r.on_exec_input(2, detach), None);
    drop(a);
    let back = r.gone(2);
    assert!(
        !back
            .iter()
            .any(|f| matches!(f, Frame::Control(Message::Host(HostMessage::Signal { .. })))),
        "{back:?}"
    );
}
