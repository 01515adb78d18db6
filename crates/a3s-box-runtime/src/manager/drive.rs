//! Driving the guest protocol of one running VM: the boot handshake, then
//! every frame of the main process and of the box's clients until the main
//! process ends.

use std::path::Path;
use std::time::Duration;

use a3s_box_core::guest::message::{BootSpec, GuestMessage, HostMessage, Message};
use a3s_box_core::guest::{Frame, StdStream, PROTOCOL_VERSION};
use a3s_box_core::{BoxError, Result, VmHandler};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::mux::{Router, MAIN_PROCESS};
use super::vm::{channel_lost, vm_error, Control, RunIo, EXIT_KILLED};
use crate::guest::{CreditBatch, FrameReader, FrameWriter};

/// Frames from the guest, read by their own task; an error ends the stream.
pub(super) type Frames = UnboundedReceiver<std::result::Result<Frame, String>>;

/// Read the guest's frames on a task of their own, so waiting for one can be
/// raced against the box's controls without losing a half-read frame. Bad
/// frames that leave the stream in sync are logged and skipped. The guest
/// sends within its credit, so the queue stays bounded.
pub(super) fn read_frames(mut reader: FrameReader) -> Frames {
    let (tx, rx) = unbounded_channel();
    tokio::spawn(async move {
        loop {
            let item = match reader.next().await {
                Ok(Some(frame)) => Ok(frame),
                Ok(None) => break,
                Err(e) if e.is_recoverable() => {
                    tracing::warn!("skipping a bad frame from the guest: {e}");
                    continue;
                }
                Err(e) => Err(e.to_string()),
            };
            let end = item.is_err();
            if tx.send(item).is_err() || end {
                break;
            }
        }
    });
    rx
}

pub(super) struct Session<'a> {
    pub frames: Frames,
    pub writer: &'a mut FrameWriter,
    pub console: &'a Path,
    pub vm: &'a mut dyn VmHandler,
    /// Output credit of the main process not yet returned.
    pub main_credit: CreditBatch,
}

/// What the guest said about the main process that ends the run.
enum MainEvent {
    Ended(i32),
    Continue,
}

impl Session<'_> {
    async fn send(&mut self, msg: HostMessage) -> Result<()> {
        self.send_frame(&Frame::Control(Message::Host(msg))).await
    }

    async fn send_frame(&mut self, frame: &Frame) -> Result<()> {
        match self.writer.send(frame).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.lost(format!("lost the guest channel: {e}")).await),
        }
    }

    /// The guest channel broke: say why (see [`channel_lost`]).
    async fn lost(&self, what: String) -> BoxError {
        channel_lost(&*self.vm, what, self.console).await
    }

    /// The next frame from the guest (cancel-safe: frames are read by
    /// their own task).
    async fn next(&mut self) -> Result<Frame> {
        match self.frames.recv().await {
            Some(Ok(frame)) => Ok(frame),
            Some(Err(e)) => Err(self.lost(format!("bad frame from the guest: {e}")).await),
            None => Err(self
                .lost("the VM stopped before the workload finished".into())
                .await),
        }
    }

    pub async fn drive(
        mut self,
        boot: BootSpec,
        boot_timeout: Duration,
        mut io: RunIo<'_>,
    ) -> Result<i32> {
        // The boot spec goes out at once, before the guest's hello: it waits
        // in the channel and guest-init reads it right after saying hello,
        // which saves a round trip. The hello is still checked before any
        // output is trusted.
        self.send(HostMessage::Boot(boot)).await?;
        let hello = tokio::time::timeout(boot_timeout, self.next())
            .await
            .map_err(|_| {
                vm_error(
                    format!(
                        "the VM did not become ready within {}s",
                        boot_timeout.as_secs()
                    ),
                    self.console,
                )
            })??;
        match hello {
            Frame::Control(Message::Guest(GuestMessage::Hello { version, kernel })) => {
                if version != PROTOCOL_VERSION {
                    return Err(BoxError::Guest(format!(
                        "guest-init speaks protocol {version}, this a3s-box speaks {PROTOCOL_VERSION}: rebuild the initramfs (make setup)"
                    )));
                }
                tracing::debug!(%kernel, "guest ready");
            }
            other => return Err(BoxError::Guest(format!("expected hello, got {other:?}"))),
        }

        let mut router = Router::default();
        loop {
            tokio::select! {
                frame = self.next() => {
                    let frame = frame?;
                    if let MainEvent::Ended(code) = self.on_guest_frame(frame, &mut router, &mut io).await? {
                        return Ok(code);
                    }
                }
                Some(control) = io.controls.recv() => {
                    if let Some(code) = self.on_control(control, &mut router).await? {
                        return Ok(code);
                    }
                }
            }
        }
    }

    async fn on_control(&mut self, control: Control, router: &mut Router) -> Result<Option<i32>> {
        let frames = match control {
            Control::Signal(signal) => vec![Frame::Control(Message::Host(HostMessage::Signal {
                process: MAIN_PROCESS,
                signal,
            }))],
            Control::Kill => {
                self.vm.stop(libc::SIGKILL, 0)?;
                return Ok(Some(EXIT_KILLED));
            }
            Control::Exec {
                process,
                spec,
                tx,
                detach,
            } => vec![router.exec(spec, process, tx, detach)],
            Control::Attach {
                client,
                tx,
                stdin,
                replay,
            } => {
                router.attach(client, tx, stdin, replay);
                Vec::new()
            }
            Control::Input { id, frame } => match router.is_exec(id) {
                true => router.on_exec_input(id, frame).into_iter().collect(),
                false => router.on_attached_input(id, frame).into_iter().collect(),
            },
            Control::Gone(id) => router.gone(id),
        };
        for frame in &frames {
            self.send_frame(frame).await?;
        }
        Ok(None)
    }

    async fn on_guest_frame(
        &mut self,
        frame: Frame,
        router: &mut Router,
        io: &mut RunIo<'_>,
    ) -> Result<MainEvent> {
        match frame {
            Frame::Data {
                process: MAIN_PROCESS,
                stream,
                bytes,
            } => {
                io.sink.write(stream, &bytes);
                router.main_output(stream, &bytes);
                if let Some(len) = self.main_credit.consumed(stream, bytes.len() as u32) {
                    self.send_frame(&Frame::Credit {
                        process: MAIN_PROCESS,
                        stream,
                        bytes: len,
                    })
                    .await?;
                }
            }
            Frame::Credit {
                process: MAIN_PROCESS,
                stream: StdStream::Stdin,
                bytes,
            } => router.main_stdin_credit(bytes),
            Frame::Eof {
                process: MAIN_PROCESS,
                ..
            }
            | Frame::Credit {
                process: MAIN_PROCESS,
                ..
            } => {}
            Frame::Control(Message::Guest(GuestMessage::Started {
                process: MAIN_PROCESS,
                pid,
            })) => {
                tracing::debug!(pid, "workload started");
                (io.on_started)(pid, self.vm.pid());
            }
            Frame::Control(Message::Guest(GuestMessage::SpawnFailed {
                process: MAIN_PROCESS,
                exit_code,
                reason,
            })) => {
                let line = format!("a3s-box: {reason}\n");
                io.sink.write(StdStream::Stderr, line.as_bytes());
                router.main_output(StdStream::Stderr, line.as_bytes());
                router.main_exited(exit_code);
                self.send(HostMessage::Shutdown).await?;
                return Ok(MainEvent::Ended(exit_code));
            }
            Frame::Control(Message::Guest(GuestMessage::Exited {
                process: MAIN_PROCESS,
                exit_code,
            })) => {
                tracing::debug!(exit_code, "workload exited");
                router.main_exited(exit_code);
                self.send(HostMessage::Shutdown).await?;
                return Ok(MainEvent::Ended(exit_code));
            }
            Frame::Control(Message::Guest(GuestMessage::Fatal { reason })) => {
                return Err(vm_error(
                    format!("guest-init failed: {reason}"),
                    self.console,
                ));
            }
            Frame::Control(Message::Guest(GuestMessage::Hello { .. })) => {
                return Err(BoxError::Guest("unexpected second hello".into()));
            }
            Frame::Control(Message::Host(_)) => {
                return Err(BoxError::Guest("guest sent a host message".into()));
            }
            other => {
                for frame in router.on_guest_frame(other) {
                    self.send_frame(&frame).await?;
                }
            }
        }
        Ok(MainEvent::Continue)
    }
}
