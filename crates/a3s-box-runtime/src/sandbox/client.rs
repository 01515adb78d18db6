//! The client end of the sandbox RPC, as the engine uses it: requests and
//! their typed replies, `exec`/`attach` sessions (guest frames after the
//! reply), the event stream. A sandbox without a supervisor is
//! `NotRunning`; a supervisor that goes away mid-request is `Unavailable`.

use std::path::Path;

use a3s_box_core::{BoxError, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::rpc::{
    Envelope, Reply, Request, Response, SandboxEvent, MAX_LINE_BYTES, SANDBOX_SOCKET,
};
use crate::guest::{FrameReader, FrameWriter};

/// A connection to one sandbox's supervisor.
#[derive(Debug)]
pub struct SandboxClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// What the sandbox is, for messages ("box web").
    what: String,
}

impl SandboxClient {
    /// Connect to the sandbox in `dir`; `what` names it in errors.
    pub async fn connect(dir: &Path, what: &str) -> Result<Self> {
        match UnixStream::connect(dir.join(SANDBOX_SOCKET)).await {
            Ok(stream) => Ok(Self::over(stream, what)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Err(BoxError::NotRunning(format!("{what} is not running")))
            }
            Err(e) => Err(BoxError::io(format!("reach the supervisor of {what}"), e)),
        }
    }

    /// A client over a connected stream (an in-process socket pair).
    pub fn over(stream: UnixStream, what: &str) -> Self {
        let (r, w) = stream.into_split();
        SandboxClient {
            reader: BufReader::with_capacity(256 * 1024, r),
            writer: w,
            what: what.to_string(),
        }
    }

    fn ended(&self) -> BoxError {
        BoxError::Unavailable(format!(
            "the supervisor of {} ended before it answered",
            self.what
        ))
    }

    async fn send(&mut self, request: Request) -> Result<()> {
        let mut line = serde_json::to_vec(&Envelope::new(request))
            .map_err(|e| BoxError::io("encode a sandbox request", std::io::Error::other(e)))?;
        line.push(b'\n');
        if self.writer.write_all(&line).await.is_err() {
            return Err(self.ended());
        }
        Ok(())
    }

    async fn response(&mut self) -> Result<Reply> {
        let mut line = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut line)
            .await;
        match read {
            Ok(0) | Err(_) => return Err(self.ended()),
            Ok(_) => {}
        }
        match serde_json::from_slice::<Response>(&line) {
            Ok(Response::Reply(reply)) => Ok(reply),
            Ok(Response::Error(e)) => Err(e.into()),
            Err(e) => Err(BoxError::Unavailable(format!(
                "the supervisor of {} answered something else than the sandbox RPC: {e}",
                self.what
            ))),
        }
    }

    /// Ask `request` and read its reply.
    pub async fn call(&mut self, request: Request) -> Result<Reply> {
        self.send(request).await?;
        self.response().await
    }

    /// `exec` or `attach`: once accepted, the connection carries frames.
    pub async fn session(mut self, request: Request) -> Result<(FrameReader, FrameWriter)> {
        match self.call(request).await? {
            Reply::Ok => Ok((
                FrameReader::from_buffered(self.reader),
                FrameWriter::new(self.writer),
            )),
            other => Err(BoxError::Unavailable(format!(
                "unexpected reply {other:?} from the supervisor of {}",
                self.what
            ))),
        }
    }

    /// `events`: the sandbox's events as they happen.
    pub async fn events(mut self) -> Result<Events> {
        match self.call(Request::Events).await? {
            Reply::Ok => Ok(Events {
                reader: self.reader,
            }),
            other => Err(BoxError::Unavailable(format!(
                "unexpected reply {other:?} from the supervisor of {}",
                self.what
            ))),
        }
    }
}

/// A sandbox's event stream.
#[derive(Debug)]
pub struct Events {
    reader: BufReader<OwnedReadHalf>,
}

impl Events {
    /// The next event; `None` once the supervisor is gone.
    pub async fn next(&mut self) -> Option<SandboxEvent> {
        loop {
            let mut line = Vec::new();
            match (&mut self.reader)
                .take(MAX_LINE_BYTES)
                .read_until(b'\n', &mut line)
                .await
            {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            match serde_json::from_slice(&line) {
                Ok(event) => return Some(event),
                Err(e) => tracing::debug!("skipping an event line: {e}"),
            }
        }
    }
}
