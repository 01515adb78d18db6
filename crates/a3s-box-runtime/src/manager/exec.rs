//! Sessions with a running box's processes: how `exec`, `attach`, `cp`,
//! `top` and the storage helpers reach them. A session is an `exec` or
//! `attach` request of the sandbox RPC (to the box's own supervisor, or
//! its pod's); once accepted, the connection carries guest frames, with
//! ids the supervisor rewrites so a client only reaches its own process.

use a3s_box_core::guest::message::ProcessSpec;
use a3s_box_core::{BoxError, Result};
use serde::{Deserialize, Serialize};

use crate::guest::{FrameReader, FrameWriter};
use crate::sandbox::rpc::Request;
use crate::state::BoxRecord;

/// What a session asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientRequest {
    /// Start a process in the box.
    Exec {
        /// What to run (its `process` field is ignored).
        spec: ProcessSpec,
        /// Leave the process running when this client goes (`exec -d`).
        #[serde(default)]
        detach: bool,
    },
    /// Follow the main process's output and optionally write its stdin.
    Attach {
        /// Write the main process's stdin.
        stdin: bool,
        /// Receive its recent output first.
        replay: bool,
    },
}

impl ClientRequest {
    /// The sandbox request for container `container`.
    pub(crate) fn into_request(self, container: Option<String>, hold: bool) -> Request {
        match self {
            ClientRequest::Exec { spec, detach } => Request::Exec {
                container,
                spec,
                detach,
            },
            ClientRequest::Attach { stdin, replay } => Request::Attach {
                container,
                stdin,
                replay,
                hold,
            },
        }
    }
}

impl super::BoxManager {
    /// Open a session on a running box: `exec`, `attach` and the helpers
    /// start here. A box that is not running (or paused) is a clear error.
    pub async fn open_session(
        &self,
        record: &BoxRecord,
        request: &ClientRequest,
    ) -> Result<(FrameReader, FrameWriter)> {
        let client = self.client(record).await.map_err(|e| match e.kind() {
            a3s_box_core::ErrorKind::NotRunning => BoxError::NotRunning(format!(
                "box {} is not running ({}): start it first",
                record.config.name, record.state.status
            )),
            _ => e,
        })?;
        let request = request
            .clone()
            .into_request(self.container_key(record), false);
        client.session(request).await
    }
}
