//! Errors: the JSON-RPC error object sent to clients ([`RpcError`]) and the crate's own error
//! enum for local failures ([`Error`]).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A JSON-RPC 2.0 error object, as written on the wire: `{"code": .., "message": ".."}`.
///
/// The constructors use SPDK's codes and words (`lib/jsonrpc/jsonrpc_server_tcp.c`,
/// `lib/rpc/rpc.c`), so SPDK's client prints the same text for the same fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcError {
    /// The error code (negative JSON-RPC codes, or a negated errno as SPDK answers).
    pub code: i32,
    /// Human-readable description.
    pub message: String,
}

impl RpcError {
    /// JSON-RPC 2.0 "Parse error": the bytes are not JSON (SPDK_JSONRPC_ERROR_PARSE_ERROR).
    pub const PARSE_ERROR: i32 = -32700;
    /// JSON-RPC 2.0 "Invalid Request": JSON that is not a request object
    /// (SPDK_JSONRPC_ERROR_INVALID_REQUEST).
    pub const INVALID_REQUEST: i32 = -32600;
    /// JSON-RPC 2.0 "Method not found" (SPDK_JSONRPC_ERROR_METHOD_NOT_FOUND).
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// JSON-RPC 2.0 "Invalid params" (SPDK_JSONRPC_ERROR_INVALID_PARAMS).
    pub const INVALID_PARAMS: i32 = -32602;
    /// JSON-RPC 2.0 "Internal error" (SPDK_JSONRPC_ERROR_INTERNAL_ERROR).
    pub const INTERNAL_ERROR: i32 = -32603;
    /// SPDK: the method is not allowed in the current RPC state
    /// (SPDK_JSONRPC_ERROR_INVALID_STATE).
    pub const INVALID_STATE: i32 = -1;

    /// SPDK's message when a RUNTIME-only method is called in the STARTUP state (`lib/rpc/rpc.c`).
    pub const MSG_ONLY_AFTER_INIT: &'static str =
        "Method may only be called after framework is initialized using framework_start_init RPC.";
    /// SPDK's message when a STARTUP-only method is called in the RUNTIME state (`lib/rpc/rpc.c`).
    pub const MSG_ONLY_BEFORE_INIT: &'static str = "Method may only be called before framework is \
         initialized. Use --wait-for-rpc command line parameter and then issue this RPC before \
         the framework_start_init RPC.";

    /// An error with any code and message.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `-32700 "Parse error"`, SPDK's exact words.
    pub fn parse_error() -> Self {
        Self::new(Self::PARSE_ERROR, "Parse error")
    }

    /// `-32600 "Invalid request"`, SPDK's exact words.
    pub fn invalid_request() -> Self {
        Self::new(Self::INVALID_REQUEST, "Invalid request")
    }

    /// `-32601 "Method not found"`, SPDK's exact words. The name is logged, not echoed.
    pub fn method_not_found(name: &str) -> Self {
        tracing::debug!(method = name, "RPC method not found");
        Self::new(Self::METHOD_NOT_FOUND, "Method not found")
    }

    /// `-32602` with the given message (SPDK answers "Invalid parameters" or a specific text).
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(Self::INVALID_PARAMS, message)
    }

    /// `-32603` with the given message.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Self::INTERNAL_ERROR, message)
    }

    /// SPDK's `-1` state error for a method not allowed in `current` state (`lib/rpc/rpc.c`).
    pub fn state(current: crate::RpcState) -> Self {
        match current {
            crate::RpcState::Startup => Self::new(Self::INVALID_STATE, Self::MSG_ONLY_AFTER_INIT),
            crate::RpcState::Runtime => Self::new(Self::INVALID_STATE, Self::MSG_ONLY_BEFORE_INIT),
        }
    }

    /// SPDK's errno form: `{"code": -errno, "message": spdk_strerror(errno)}`, for example
    /// `errno(libc::EEXIST)` is `{"code": -17, "message": "File exists"}`. The sign of `errno`
    /// does not matter.
    pub fn errno(errno: i32) -> Self {
        let errno = errno.saturating_abs();
        Self::new(-errno, strerror(errno))
    }
}

/// The C library's text for `errno`, without std's " (os error N)" suffix.
fn strerror(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JSON-RPC error {}: {}", self.code, self.message)
    }
}

impl std::error::Error for RpcError {}

impl From<std::io::Error> for RpcError {
    /// An OS error becomes SPDK's errno form; any other I/O error an internal error.
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => Self::errno(errno),
            None => Self::internal(e.to_string()),
        }
    }
}

impl From<serde_json::Error> for RpcError {
    /// A (de)serialization failure of parameters becomes `-32602` with serde's message.
    fn from(e: serde_json::Error) -> Self {
        Self::invalid_params(format!("Invalid parameters: {e}"))
    }
}

/// Local failures of this crate (setting up servers and clients).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another live process already serves the Unix socket (or holds its lock file).
    #[error("RPC Unix domain socket path {0} in use. Specify another.")]
    AddressInUse(PathBuf),
    /// Something other than a socket (a regular file, directory, symlink...) exists at the
    /// Unix socket path: it is left alone rather than removed.
    #[error(
        "RPC Unix domain socket path {0} exists and is not a socket; not removing it. \
         Specify another."
    )]
    NotASocket(PathBuf),
    /// The HTTP server was asked to listen on a non-loopback address without
    /// [`HttpOpts::allow_remote`](crate::HttpOpts::allow_remote): its RPC has no
    /// authentication.
    #[error(
        "refusing to serve RPC over HTTP on non-loopback address {0}: it has no \
         authentication; remote access must be allowed explicitly"
    )]
    RemoteHttpRefused(std::net::SocketAddr),
    /// A system call on a socket or file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP/WebSocket server could not be started.
    #[error("HTTP RPC server: {0}")]
    Http(String),
    /// The server closed the connection (with `partial` bytes of an unfinished answer).
    #[error("connection closed by the server ({partial} bytes of a partial response)")]
    Closed {
        /// Bytes of an incomplete response received before the close.
        partial: usize,
    },
    /// A client call timed out.
    #[error("timed out waiting for the response")]
    Timeout,
    /// The peer sent bytes that are not a JSON-RPC response.
    #[error("malformed JSON-RPC response: {0}")]
    BadResponse(String),
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_uses_spdk_form() {
        assert_eq!(
            RpcError::errno(libc::EEXIST),
            RpcError::new(-17, "File exists")
        );
        assert_eq!(
            RpcError::errno(-libc::ENODEV),
            RpcError::new(-19, "No such device")
        );
    }

    #[test]
    fn io_error_converts_to_errno_form() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(
            RpcError::from(e),
            RpcError::new(-2, "No such file or directory")
        );
    }

    #[test]
    fn state_errors_use_spdk_words() {
        let e = RpcError::state(crate::RpcState::Startup);
        assert_eq!(e.code, -1);
        assert_eq!(
            e.message,
            "Method may only be called after framework is initialized using framework_start_init RPC."
        );
        let e = RpcError::state(crate::RpcState::Runtime);
        assert_eq!(
            e.message,
            "Method may only be called before framework is initialized. Use --wait-for-rpc command \
             line parameter and then issue this RPC before the framework_start_init RPC."
        );
    }

    #[test]
    fn serializes_as_json_rpc_error_object() {
        let v = serde_json::to_value(RpcError::parse_error()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code": -32700, "message": "Parse error"})
        );
    }
}
