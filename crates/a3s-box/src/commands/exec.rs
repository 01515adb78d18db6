//! `exec` and `attach`: sessions with a running box's processes.

use a3s_box_core::spec::{EnvVar, ProcessSpec};
use a3s_box_core::BoxError;
use a3s_box_runtime::manager::client::{run_session, ClientEvent, ClientIo, Outcome};
use a3s_box_runtime::manager::{Engine, ExecRequest, ExitWatch};
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

/// The flags of `exec` by the rules of a process spec (`-w` absolute,
/// `-u` well formed), checked before the box is looked up.
pub(crate) fn check(args: &ExecArgs, env: &[(String, String)]) -> Result<()> {
    let process = ProcessSpec {
        args: args.command.clone(),
        env: env
            .iter()
            .map(|(name, value)| EnvVar {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        cwd: args.workdir.clone(),
        user: args.user.clone(),
        tty: args.tty,
        stdin: args.interactive,
    };
    process
        .validate_exec()
        .map_err(|e| BoxError::from(e.within("process").for_cli()))?;
    Ok(())
}

/// `exec`: run a command in a running box; its exit code is ours.
pub async fn exec(args: ExecArgs) -> Result<u8> {
    let env = super::run::env_items(&args.env_file, &args.env)?;
    check(&args, &env)?;
    let engine = super::engine()?;
    let tty = args.tty && !args.detach;
    let request = ExecRequest {
        args: args.command.clone(),
        env,
        cwd: args.workdir.clone(),
        user: args.user.clone(),
        tty: tty.then(|| terminal::window_size().unwrap_or_default()),
        stdin: args.interactive && !args.detach,
        detach: args.detach,
    };
    let (reader, writer) = engine.exec(&args.target, request).await?;
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
    let engine = super::engine()?;
    // An `--rm` box would take its exit code with it: hold it meanwhile.
    let mut watch = engine.watch_exit(&args.target)?;
    engine.hold_watched(&mut watch).await?;
    attach_to(&engine, watch, !args.no_stdin, false).await
}

/// Attach to `key`'s main process (`run -it` replays the output it
/// missed while the box started).
pub async fn attach_to(engine: &Engine, watch: ExitWatch, stdin: bool, replay: bool) -> Result<u8> {
    let key = watch.record().config.id.clone();
    let ((reader, writer), main) = engine.attach(&key, Some(stdin), replay).await?;
    let mut io = local_io(main.stdin, main.tty);
    io.already_running = true;
    io.detach_keys = main.tty;
    // `run -i` ends the workload's input with ours; `attach` leaves it open.
    io.close_stdin_at_eof = replay;
    let raw = match main.tty && main.stdin {
        true => RawMode::enter()?,
        false => None,
    };
    if main.tty {
        if let Some(size) = terminal::window_size() {
            // The box started with a default size: send ours at once.
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let _ = tx.send(ClientEvent::Resize(size));
            io.events = Some(merge(io.events.take(), rx));
        }
    }
    let outcome = run_session(reader, writer, io).await;
    drop(raw);
    match outcome? {
        Outcome::Exited(code) => {
            engine.finish(watch).await?;
            Ok(code.clamp(0, 255) as u8)
        }
        // The main process's end closes the session: its code is the box's.
        Outcome::Lost => Ok(super::exit_code(engine.finish(watch).await?)),
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
