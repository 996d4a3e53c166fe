//! Clients: typed jsonrpsee client traits for the core methods (HTTP or WebSocket), and a
//! small blocking client for the Unix socket with SPDK's framing ([`UnixClient`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use jsonrpsee::http_client::HttpClientBuilder;
//! use rpc::client::SpdkCoreApiClient;
//! let client = HttpClientBuilder::default().build("http://127.0.0.1:5260")?;
//! let methods = client.rpc_get_methods(false, false).await?;
//! # let _ = methods; Ok(()) }
//! ```

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use jsonrpsee::proc_macros::rpc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Error, RpcError};

/// `spdk_get_version` result (SPDK `lib/rpc/rpc.c`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Full version string, e.g. `"SPDK v25.09"`.
    pub version: String,
    /// Its parts.
    pub fields: VersionFields,
}

/// The parts of [`VersionInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionFields {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch level.
    pub patch: u32,
    /// Suffix such as `"-pre"`; may be empty.
    pub suffix: String,
    /// Git commit, when built from git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// One entry of `framework_get_subsystems`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsystemInfo {
    /// Subsystem name (`"bdev"`, `"nvmf"`, ...).
    pub subsystem: String,
    /// Names of the subsystems it depends on.
    pub depends_on: Vec<String>,
}

/// Typed client of the core (framework) methods; parameters go by name, as SPDK expects.
/// jsonrpsee generates `SpdkCoreApiClient`, implemented for its HTTP and WebSocket clients.
#[rpc(client)]
pub trait SpdkCoreApi {
    /// `spdk_get_version`.
    #[method(name = "spdk_get_version")]
    async fn spdk_get_version(&self) -> Result<VersionInfo, jsonrpsee::core::ClientError>;

    /// `rpc_get_methods`: method names; `current` keeps those callable in the current state.
    #[method(name = "rpc_get_methods", param_kind = map)]
    async fn rpc_get_methods(
        &self,
        current: bool,
        include_aliases: bool,
    ) -> Result<Vec<String>, jsonrpsee::core::ClientError>;

    /// `framework_get_subsystems`.
    #[method(name = "framework_get_subsystems")]
    async fn framework_get_subsystems(
        &self,
    ) -> Result<Vec<SubsystemInfo>, jsonrpsee::core::ClientError>;

    /// `framework_get_config`: the replayable config of one subsystem.
    #[method(name = "framework_get_config", param_kind = map)]
    async fn framework_get_config(
        &self,
        name: String,
    ) -> Result<Value, jsonrpsee::core::ClientError>;

    /// `framework_get_reactors`: reactors and their threads (SPDK's shape, untyped).
    #[method(name = "framework_get_reactors")]
    async fn framework_get_reactors(&self) -> Result<Value, jsonrpsee::core::ClientError>;

    /// `framework_start_init`: leave the STARTUP state (`--wait-for-rpc`).
    #[method(name = "framework_start_init")]
    async fn framework_start_init(&self) -> Result<bool, jsonrpsee::core::ClientError>;

    /// `framework_wait_init`: returns once subsystems are initialised.
    #[method(name = "framework_wait_init")]
    async fn framework_wait_init(&self) -> Result<bool, jsonrpsee::core::ClientError>;
}

/// Default time a [`UnixClient`] waits for an answer (`spdk-rpc`'s default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A blocking JSON-RPC client on SPDK's Unix socket (what `spdk-rpc -s PATH` does).
#[derive(Debug)]
pub struct UnixClient {
    stream: UnixStream,
    buf: Vec<u8>,
    next_id: u64,
}

impl UnixClient {
    /// Connects to the server at `path`, with [`DEFAULT_TIMEOUT`].
    pub fn connect(path: &Path) -> Result<UnixClient, Error> {
        let stream = UnixStream::connect(path)
            .map_err(|e| Error::io(format!("cannot connect to {}", path.display()), e))?;
        let mut client = UnixClient {
            stream,
            buf: Vec::new(),
            next_id: 1,
        };
        client.set_timeout(DEFAULT_TIMEOUT)?;
        Ok(client)
    }

    /// Sets how long a read or write may block.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        self.stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| self.stream.set_write_timeout(Some(timeout)))
            .map_err(|e| Error::io("cannot set socket timeout", e))
    }

    /// Calls `method` and waits for its answer. The server's error object comes back as is;
    /// a transport failure as SPDK's errno form (e.g. `-104 "Connection reset by peer"`), a
    /// closed connection as `-32603`, a malformed answer as `-32700`.
    pub fn call(&mut self, method: &str, params: Option<Value>) -> Result<Value, RpcError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = json!({"jsonrpc": "2.0", "method": method, "id": id});
        if let (Some(p), Some(obj)) = (params, req.as_object_mut()) {
            obj.insert("params".into(), p);
        }
        let bytes = serde_json::to_vec(&req).map_err(|e| RpcError::internal(e.to_string()))?;
        self.send_raw(&bytes).map_err(to_rpc_error)?;
        let resp = self.read_response().map_err(to_rpc_error)?;
        if resp.get("id") != Some(&json!(id)) {
            return Err(RpcError::internal(format!(
                "response id does not match request id {id}: {resp}"
            )));
        }
        response_result(resp)
    }

    /// Writes raw bytes (for tests of framing and hostile input).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.stream
            .write_all(bytes)
            .map_err(|e| Error::io("cannot send request", e))
    }

    /// Reads the next JSON text the server writes (one response object or batch array).
    pub fn read_response(&mut self) -> Result<Value, Error> {
        loop {
            let start = self
                .buf
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.buf.len());
            let mut values =
                serde_json::Deserializer::from_slice(&self.buf[start..]).into_iter::<Value>();
            match values.next() {
                Some(Ok(v)) => {
                    let used = start + values.byte_offset();
                    self.buf.drain(..used);
                    return Ok(v);
                }
                Some(Err(e)) if !e.is_eof() => return Err(Error::BadResponse(e.to_string())),
                _ => {}
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(Error::Closed {
                        partial: self.buf.len() - start,
                    });
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(Error::Timeout);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("cannot read response", e)),
            }
        }
    }
}

/// Splits a response object into its result or error.
pub fn response_result(mut resp: Value) -> Result<Value, RpcError> {
    let Some(obj) = resp.as_object_mut() else {
        return Err(RpcError::new(
            RpcError::PARSE_ERROR,
            "response is not an object",
        ));
    };
    if let Some(err) = obj.remove("error") {
        return Err(serde_json::from_value::<RpcError>(err).unwrap_or_else(|e| {
            RpcError::new(
                RpcError::PARSE_ERROR,
                format!("malformed error object: {e}"),
            )
        }));
    }
    obj.remove("result")
        .ok_or_else(|| RpcError::new(RpcError::PARSE_ERROR, "response has no result"))
}

fn to_rpc_error(e: Error) -> RpcError {
    match e {
        Error::Io { source, .. } => RpcError::from(source),
        Error::BadResponse(m) => RpcError::new(RpcError::PARSE_ERROR, m),
        Error::Timeout => RpcError::errno(libc::ETIMEDOUT),
        other => RpcError::internal(other.to_string()),
    }
}
