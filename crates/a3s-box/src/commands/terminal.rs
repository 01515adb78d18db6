//! Our side of an interactive session: raw mode on the local terminal
//! (restored however the session ends), its size and resizes, and the
//! signals forwarded to the box.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::sync::Mutex;

use a3s_box_core::guest::message::WindowSize;
use a3s_box_runtime::manager::client::ClientEvent;
use nix::sys::termios::{self, SetArg, Termios};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// The settings to restore, shared with the panic hook.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

fn restore_saved() {
    let saved = SAVED.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(saved) = saved {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &saved);
    }
}

/// The local terminal in raw mode until dropped.
#[derive(Debug)]
pub struct RawMode(());

impl RawMode {
    /// Put stdin's terminal in raw mode; `None` when stdin is not a terminal.
    pub fn enter() -> anyhow::Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_saved();
            previous(info);
        }));
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSADRAIN, &raw)?;
        Ok(Some(RawMode(())))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_saved();
    }
}

/// The size of our terminal (stdout, else stdin), if we have one.
pub fn window_size() -> Option<WindowSize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        // SAFETY: TIOCGWINSZ writes one winsize struct we own.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 {
            return Some(WindowSize {
                rows: ws.ws_row,
                cols: ws.ws_col,
            });
        }
    }
    None
}

/// Forward what the user does to the session: resizes of our terminal
/// (with `tty`) and, without a terminal in raw mode, the signals `docker`
/// forwards. Events arrive on the returned channel.
pub fn events(tty: bool) -> UnboundedReceiver<ClientEvent> {
    let (tx, rx) = unbounded_channel();
    if tty {
        watch(&tx, SignalKind::window_change(), |_| {
            window_size().map(ClientEvent::Resize)
        });
    }
    for (num, kind) in [
        (libc::SIGINT, SignalKind::interrupt()),
        (libc::SIGTERM, SignalKind::terminate()),
        (libc::SIGHUP, SignalKind::hangup()),
        (libc::SIGQUIT, SignalKind::quit()),
        (libc::SIGUSR1, SignalKind::user_defined1()),
        (libc::SIGUSR2, SignalKind::user_defined2()),
    ] {
        watch(&tx, kind, move |_| Some(ClientEvent::Signal(num)));
    }
    rx
}

fn watch(
    tx: &UnboundedSender<ClientEvent>,
    kind: SignalKind,
    event: impl Fn(()) -> Option<ClientEvent> + Send + 'static,
) {
    let Ok(mut stream) = signal(kind) else {
        return;
    };
    let tx = tx.clone();
    tokio::spawn(async move {
        while stream.recv().await.is_some() {
            if let Some(e) = event(()) {
                if tx.send(e).is_err() {
                    break;
                }
            }
        }
    });
}
