//! The `a3s-box` command.

mod cli;
mod cli_image;
mod cli_lazy;
mod cli_network;
mod cli_pod;
mod cli_storage;
mod commands;
#[cfg(test)]
mod fuzz_tests;

use std::process::ExitCode;

use a3s_box_core::ErrorKind;
use clap::Parser;

use cli::{Cli, Command};
use commands::EXIT_BOX_ERROR;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help / --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_BOX_ERROR);
        }
    };
    commands::set_insecure_registries(cli.insecure_registries.clone());
    let Some(filter) = log_filter(&cli.log_level) else {
        eprintln!(
            "a3s-box: invalid --log-level {:?}: use error, warn, info, debug or trace \
             (or tracing directives such as a3s_box_runtime=debug)",
            cli.log_level
        );
        return ExitCode::from(EXIT_BOX_ERROR);
    };
    tracing_subscriber::fmt()
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match dispatch(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(report(&e)),
    }
}

fn dispatch(command: Command) -> anyhow::Result<u8> {
    use commands::{
        commit, cp, events, exec, info, layers, lifecycle, logs, monitor, pod, ps, run, volume,
    };
    match command {
        Command::Run(args) => block_on(|| run::run(args.into_inner()))?,
        Command::Create(args) => block_on(|| lifecycle::create(args.into_inner()))?,
        Command::Start(args) => block_on(|| lifecycle::start(args.into_inner()))?,
        Command::Stop(args) => block_on(|| lifecycle::stop(args.into_inner()))?,
        Command::Restart(args) => block_on(|| lifecycle::restart(args.into_inner()))?,
        Command::Kill(args) => block_on(|| lifecycle::kill(args.into_inner()))?,
        Command::Pause(args) => block_on(|| lifecycle::pause(args.into_inner()))?,
        Command::Unpause(args) => block_on(|| lifecycle::unpause(args.into_inner()))?,
        Command::Rename(args) => block_on(|| lifecycle::rename(args.into_inner()))?,
        Command::Prune(_) => lifecycle::prune(false),
        Command::System(system) => match system.into_inner() {
            cli::SystemCommand::Prune(_) => lifecycle::prune(true),
            cli::SystemCommand::Df => commit::df(),
        },
        Command::Rm(args) => block_on(|| lifecycle::rm(args.into_inner()))?,
        Command::Wait(args) => block_on(|| lifecycle::wait(args.into_inner()))?,
        Command::Inspect(args) => lifecycle::inspect(args.into_inner()),
        Command::Ps(args) => ps::ps(args.into_inner()),
        Command::Exec(args) => block_on(|| exec::exec(args.into_inner()))?,
        Command::Attach(args) => block_on(|| exec::attach(args.into_inner()))?,
        Command::Cp(args) => block_on(|| cp::cp(args.into_inner()))?,
        Command::Top(args) => block_on(|| monitor::top(args.into_inner()))?,
        Command::Stats(args) => block_on(|| monitor::stats(args.into_inner()))?,
        Command::Port(args) => commands::port::run(args.into_inner()),
        Command::Logs(args) => block_on(|| logs::logs(args.into_inner()))?,
        Command::Volume(command) => volume::dispatch(command.into_inner()),
        Command::Network(command) => commands::network::dispatch(command.into_inner()),
        Command::Diff(args) => block_on(|| layers::diff(args.into_inner()))?,
        Command::Export(args) => block_on(|| layers::export(args.into_inner()))?,
        Command::Commit(args) => block_on(|| commit::commit(args.into_inner()))?,
        Command::Import(args) => commit::import(args.into_inner()),
        Command::Events(args) => block_on(|| events::events(args.into_inner()))?,
        Command::Pod(command) => block_on(|| pod::dispatch(command.into_inner()))?,
        Command::Info(args) => info::run(args.into_inner()).map(|_| 0),
        Command::Image(command) => commands::image::dispatch(command),
        Command::Version(args) => {
            commands::version::run(args.into_inner());
            Ok(0)
        }
    }
}

/// A level name, or tracing directives (`target=level,...`); a bare word
/// that is not a level is a mistake, not a target.
fn log_filter(text: &str) -> Option<tracing_subscriber::EnvFilter> {
    let level_names = ["off", "error", "warn", "info", "debug", "trace"];
    let is_level = level_names.contains(&text.to_ascii_lowercase().as_str());
    if !is_level && !text.contains('=') {
        return None;
    }
    tracing_subscriber::EnvFilter::try_new(text).ok()
}

/// Run the future `make` returns on a runtime of its own. Not inlined, and
/// the future is made here: each command's future (some are tens of KiB)
/// then lives in this function's frame for that command only, instead of
/// `dispatch` reserving, and probing page by page, room for the largest of
/// them on every command line.
#[inline(never)]
fn block_on<F: std::future::Future>(make: impl FnOnce() -> F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = runtime.block_on(make());
    // A read of our stdin may still be blocked in a helper thread; it must
    // not keep the command from exiting.
    runtime.shutdown_background();
    Ok(out)
}

/// What the user is told beyond the message, and the exit code, by the
/// kind of the error (never by its text). Every failure of a3s-box itself
/// exits 125, as Docker's do; the workload's own codes never come here.
fn advice(kind: Option<ErrorKind>) -> (Option<&'static str>, u8) {
    let hint = match kind {
        Some(ErrorKind::Internal) => Some(
            "this looks like a bug or a host problem: rerun with --log-level debug for details",
        ),
        _ => None,
    };
    (hint, EXIT_BOX_ERROR)
}

/// One line with the cause chain; the VM console tail after it when we have
/// one; the exit code.
fn report(err: &anyhow::Error) -> u8 {
    let line = one_line(err);
    eprintln!("a3s-box: {line}");
    let kind = err
        .chain()
        .find_map(|c| c.downcast_ref::<a3s_box_core::BoxError>())
        .map(a3s_box_core::BoxError::kind);
    let (hint, code) = advice(kind);
    if let Some(hint) = hint {
        eprintln!("a3s-box: {hint}");
    }
    for cause in err.chain() {
        if let Some(a3s_box_core::BoxError::Vmm {
            console_tail: Some(tail),
            ..
        }) = cause.downcast_ref()
        {
            let tail = news_in(tail, &line);
            if !tail.is_empty() {
                eprintln!("--- VM console (last lines) ---\n{tail}");
            }
        }
    }
    code
}

/// The lines of a console `tail` that say more than `line` (guest-init's
/// own fatal message is already in it).
fn news_in(tail: &str, line: &str) -> String {
    tail.lines()
        .filter(|l| {
            l.split_once("a3s-init: fatal: ")
                .is_none_or(|(_, msg)| !line.contains(msg.trim()))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The messages of `err`'s chain joined by `: `, each said once: many of
/// our errors already end with their cause.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain().map(|c| c.to_string()) {
        if line.ends_with(&cause) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&cause);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_tail_keeps_only_what_the_message_does_not_say() {
        let line = "hypervisor failed: guest-init failed: create /x: ENOTDIR";
        let tail = "[    0.5] virtio: ok\n[    0.7] a3s-init: fatal: create /x: ENOTDIR";
        assert_eq!(news_in(tail, line), "[    0.5] virtio: ok");
        assert_eq!(
            news_in("[ 0.7] a3s-init: fatal: create /x: ENOTDIR", line),
            ""
        );
        assert_eq!(
            news_in("[ 0.7] a3s-init: fatal: other", line),
            "[ 0.7] a3s-init: fatal: other"
        );
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let err =
            anyhow::Error::from(a3s_box_core::BoxError::io("bind source /x", io)).context("run");
        assert_eq!(
            one_line(&err),
            "run: bind source /x: No such file or directory (os error 2)"
        );
    }
}
