//! `exec` and `attach`: sessions with a running box's processes.

use a3s_box_core::guest::message::ProcessSpec;
use a3s_box_runtime::home::Home;
use a3s_box_runtime::manager::client::{run_session, ClientIo, Outcome};
use a3s_box_runtime::manager::exec::ClientRequest;
use a3s_box_runtime::manager::BoxManager;
use anyhow::Result;

use super::terminal::{self, RawMode};
use crate::cli::{AttachArgs, ExecArgs};

/// Exit code when the box stopped under a session (as for SIGKILL).
const EXIT_LOST: u8 = 137;

/// The exit code a session's outcome gives the CLI.
fn exit_code(outcome: Outcome, what: &str) -> u8 {
    match outcome {
        Outcome::Exited(code) => code.clamp(0, 255) as u8,
        Outcome::SpawnFailed(code, reason) => {
            eprintln!("a3s-box: {reason}");
            code.clamp(0, 255) as u8
        }
        Outcome::Detached | Outcome::Started => 0,
        Outcome::Lost => {
            eprintln!("a3s-box: the box stopped before {what} ended");
            EXIT_LOST
        }
    }
}

fn local_io(stdin: bool, tty: bool) -> ClientIo {
    ClientIo {
        stdin: stdin.then(|| Box::new(tokio::io::stdin()) as _),
        close_stdin_at_eof: true,
        detach_keys: false,
        stdout: Box::new(tokio::io::stdout()),
        stderr: Box::new(tokio::io::stderr()),
        events: Some(terminal::events(tty)),
        return_when_started: false,
        already_running: false,
    }
}

/// `exec`: run a command in a running box; its exit code is ours.
pub async fn exec(args: ExecArgs) -> Result<u8> {
    let manager = BoxManager::new(&Home::from_env()?);
    let record = manager.store().get(&args.target)?;
    let options = &record.config.options;
    let mut env = options.env.clone();
    env.extend(super::run::env_items(&args.env_file, &args.env)?);
    let (executable, rest) = args
        .command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no command given: a3s-box exec BOX COMMAND [ARG...]"))?;
    let tty = args.tty && !args.detach;
    if tty && !env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".into(), "xterm".into()));
    }
    let spec = ProcessSpec {
        process: 0,
        container: None,
        executable: executable.clone(),
        args: rest.to_vec(),
        env,
        workdir: args
            .workdir
            .clone()
            .or_else(|| options.workdir.clone())
            .unwrap_or_else(|| "/".into()),
        user: args.user.clone().or_else(|| options.user.clone()),
        stdin: args.interactive && !args.detach,
        terminal: tty.then(|| terminal::window_size().unwrap_or_default()),
        builtin: false,
    };
    let request = ClientRequest::Exec {
        spec,
        detach: args.detach,
    };
    let (reader, writer) = manager.open_session(&record, &request).await?;
    let mut io = local_io(args.interactive && !args.detach, tty);
    io.return_when_started = args.detach;
    // As Docker: Ctrl-P Ctrl-Q leaves an interactive terminal session
    // with its process still running.
    io.detach_keys = tty && args.interactive;
    let raw = match tty && args.interactive {
        true => RawMode::enter()?,
        false => None,
    };
    let outcome = run_session(reader, writer, io).await;
    drop(raw);
    Ok(exit_code(outcome?, "the command"))
}

/// `attach`: follow the main process's output, write its stdin (unless
/// `--no-stdin`), detach with Ctrl-P Ctrl-Q.
pub async fn attach(args: AttachArgs) -> Result<u8> {
    let manager = BoxManager::new(&Home::from_env()?);
    let record = manager.store().get(&args.target)?;
    let options = &record.config.options;
    let stdin = options.stdin && !args.no_stdin;
    // An `--rm` box would take its exit code with it: hold it meanwhile.
    let _hold = manager.hold_end(&record)?;
    attach_to(&manager, &record, stdin, options.tty, false).await
}

/// Attach to `record`'s main process (`run -it` replays the output it
/// missed while the box started).
pub async fn attach_to(
    manager: &BoxManager,
    record: &a3s_box_runtime::state::BoxRecord,
    stdin: bool,
    tty: bool,
    replay: bool,
) -> Result<u8> {
    let request = ClientRequest::Attach { stdin, replay };
    let (reader, writer) = manager.open_session(record, &request).await?;
    let mut io = local_io(stdin, tty);
    io.already_running = true;
    io.detach_keys = tty;
    // `run -i` ends the workload's input with ours; `attach` leaves it open.
    io.close_stdin_at_eof = replay;
    let raw = match tty && stdin {
        true => RawMode::enter()?,
        false => None,
    };
    if tty {
        if let Some(size) = terminal::window_size() {
            // The box started with a default size: send ours at once.
            let _ = io.events.as_ref();
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let _ = tx.send(a3s_box_runtime::manager::client::ClientEvent::Resize(size));
            io.events = Some(merge(io.events.take(), rx));
        }
    }
    let outcome = run_session(reader, writer, io).await;
    drop(raw);
    match outcome? {
        Outcome::Exited(code) => Ok(code.clamp(0, 255) as u8),
        // The main process's end closes the session: its code is the box's.
        Outcome::Lost => Ok(manager.wait(&record.config.id)?.clamp(0, 255) as u8),
        other => Ok(exit_code(other, "the session")),
    }
}

fn merge<T: Send + 'static>(
    a: Option<tokio::sync::mpsc::UnboundedReceiver<T>>,
    mut b: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> tokio::sync::mpsc::UnboundedReceiver<T> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let tx2 = tx.clone();
    tokio::spawn(async move {
        while let Some(v) = b.recv().await {
            let _ = tx2.send(v);
        }
    });
    if let Some(mut a) = a {
        tokio::spawn(async move {
            while let Some(v) = a.recv().await {
                let _ = tx.send(v);
            }
        });
    }
    rx
}
