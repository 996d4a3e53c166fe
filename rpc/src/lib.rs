//! JSON-RPC 2.0 server with SPDK's framing and method registry (SPDK `lib/jsonrpc` + `lib/rpc`).
//!
//! ```text
//!  spdk-rpc / UnixClient ──unix socket──▶ UnixServer::poll ─┐
//!                                                           ├─▶ RpcRegistry::call ─▶ handler(Request)
//!  jsonrpsee client ──HTTP/WS──▶ HttpServer (own thread) ──▶ HttpBridge::poll ─┘         │
//!                         ◀──────────── answer (now or later, same thread) ◀─────────────┘
//! ```
//!
//! * [`RpcRegistry`] holds the methods with SPDK's STARTUP/RUNTIME state masks and dispatches
//!   calls; it registers `rpc_get_methods` itself. Module crates register their methods on it.
//! * [`Request`] is one call; a handler answers it once, immediately or later from the same
//!   OS thread. Dropping it unanswered answers an internal error.
//! * [`UnixServer`] speaks SPDK's Unix-socket framing (JSON texts back to back, each answer one
//!   JSON text followed by `"\n"`), non-blocking, driven by [`UnixServer::poll`] from the app
//!   thread's poller.
//! * [`HttpServer`] serves HTTP and WebSocket with jsonrpsee on its own thread; calls reach the
//!   registry through [`HttpBridge::poll`] on the app thread.
//! * [`client`] has typed jsonrpsee client traits and a blocking [`client::UnixClient`].
//!
//! Everything except [`HttpServer`] and the client traits is `!Send`: it belongs to the app
//! thread.
#![forbid(unsafe_code)]

pub mod client;
mod error;
mod http;
mod registry;
mod request;
mod server;
pub mod state;

pub use error::{Error, RpcError};
pub use http::{HttpBridge, HttpOpts, HttpServer};
pub use registry::RpcRegistry;
pub use request::Request;
pub use server::{ServerOpts, UnixServer};
pub use state::{RpcState, StateMask};
