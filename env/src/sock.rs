//! Socket-implementation options (SPDK `lib/sock`: `sock_impl_set_options`, `sock_set_default_impl`).
//!
//! Process-wide, set at start-up (STARTUP-state RPCs) and read by transports when they create
//! sockets. Implementations known: `posix` (plain kernel sockets, the default) and `ssl` (SPDK's
//! TLS implementation; its options are kept so SPDK-saved configs load, but it cannot be made the
//! default because this build has no TLS).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::EnvError;

/// Options of one socket implementation, with SPDK's names (`struct spdk_sock_impl_opts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SockImplOpts {
    /// SO_RCVBUF of new sockets.
    pub recv_buf_size: u32,
    /// SO_SNDBUF of new sockets.
    pub send_buf_size: u32,
    /// Read through a user-space pipe buffer.
    pub enable_recv_pipe: bool,
    /// TCP_QUICKACK on new sockets.
    pub enable_quickack: bool,
    /// Placement id mode (0 none, 1 NAPI, 2 CPU).
    pub enable_placement_id: u32,
    /// MSG_ZEROCOPY on target-side sockets.
    pub enable_zerocopy_send_server: bool,
    /// MSG_ZEROCOPY on host-side sockets.
    pub enable_zerocopy_send_client: bool,
    /// Smallest send that uses zero-copy.
    pub zerocopy_threshold: u32,
    /// TLS version (0 = any), `ssl` only.
    pub tls_version: u32,
    /// Kernel TLS, `ssl` only.
    pub enable_ktls: bool,
}

impl SockImplOpts {
    /// SPDK's defaults for `posix`.
    pub const POSIX: SockImplOpts = SockImplOpts {
        recv_buf_size: 2 * 1024 * 1024,
        send_buf_size: 2 * 1024 * 1024,
        enable_recv_pipe: true,
        enable_quickack: false,
        enable_placement_id: 0,
        enable_zerocopy_send_server: true,
        enable_zerocopy_send_client: false,
        zerocopy_threshold: 0,
        tls_version: 0,
        enable_ktls: false,
    };
    /// SPDK's defaults for `ssl`.
    pub const SSL: SockImplOpts = SockImplOpts {
        recv_buf_size: 4096,
        send_buf_size: 4096,
        ..SockImplOpts::POSIX
    };
}

struct SockState {
    default_impl: String,
    impls: BTreeMap<&'static str, SockImplOpts>,
}

static STATE: Mutex<Option<SockState>> = Mutex::new(None);

fn with_state<T>(f: impl FnOnce(&mut SockState) -> T) -> T {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let st = g.get_or_insert_with(|| SockState {
        default_impl: "posix".to_owned(),
        impls: [("posix", SockImplOpts::POSIX), ("ssl", SockImplOpts::SSL)]
            .into_iter()
            .collect(),
    });
    f(st)
}

/// Names of the known implementations, in SPDK's `save_config` order (`ssl`, then `posix`).
pub fn sock_impl_names() -> Vec<&'static str> {
    vec!["ssl", "posix"]
}

/// The options of `impl_name` ([`EnvError::InvalidArgument`] if unknown).
pub fn sock_impl_get_opts(impl_name: &str) -> Result<SockImplOpts, EnvError> {
    with_state(|st| st.impls.get(impl_name).copied()).ok_or_else(|| {
        EnvError::InvalidArgument(format!("unknown sock implementation {impl_name}"))
    })
}

/// Replaces the options of `impl_name`.
pub fn sock_impl_set_opts(impl_name: &str, opts: SockImplOpts) -> Result<(), EnvError> {
    with_state(|st| match st.impls.get_mut(impl_name) {
        Some(o) => {
            *o = opts;
            Ok(())
        }
        None => Err(EnvError::InvalidArgument(format!(
            "unknown sock implementation {impl_name}"
        ))),
    })
}

/// The implementation new sockets use.
pub fn sock_get_default_impl() -> String {
    with_state(|st| st.default_impl.clone())
}

/// Makes `impl_name` the default; only `posix` can carry traffic in this build.
pub fn sock_set_default_impl(impl_name: &str) -> Result<(), EnvError> {
    if impl_name != "posix" {
        return Err(EnvError::InvalidArgument(format!(
            "sock implementation {impl_name} is not available in this build"
        )));
    }
    with_state(|st| st.default_impl = impl_name.to_owned());
    Ok(())
}

/// The options transports apply to new sockets (those of the default implementation).
pub fn default_sock_opts() -> SockImplOpts {
    let name = sock_get_default_impl();
    sock_impl_get_opts(&name).unwrap_or(SockImplOpts::POSIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_spdk_ones_and_unknown_impls_are_refused() {
        assert_eq!(sock_impl_get_opts("posix").unwrap().recv_buf_size, 2097152);
        assert_eq!(sock_impl_get_opts("ssl").unwrap().send_buf_size, 4096);
        assert!(sock_impl_get_opts("uring").is_err());
        assert!(sock_impl_set_opts("uring", SockImplOpts::POSIX).is_err());
        assert!(sock_set_default_impl("ssl").is_err());
        assert_eq!(sock_get_default_impl(), "posix");
    }

    #[test]
    fn spdk_json_round_trips() {
        let j = serde_json::to_value(SockImplOpts::SSL).unwrap();
        assert_eq!(j["recv_buf_size"], 4096);
        let back: SockImplOpts = serde_json::from_value(j).unwrap();
        assert_eq!(back, SockImplOpts::SSL);
    }
}
