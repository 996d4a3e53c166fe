//! JSON-RPC 2.0 server with SPDK's framing and method registry (SPDK `lib/jsonrpc` + `lib/rpc`).
#![forbid(unsafe_code)]
