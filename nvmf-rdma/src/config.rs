//! RDMA transport options (SPDK `struct spdk_nvmf_rdma_transport_opts`, `nvmf_rdma_opts_init`).
//!
//! The common options (`max_queue_depth`, `max_io_qpairs_per_ctrlr`, `in_capsule_data_size`,
//! `max_io_size`, `io_unit_size`, `num_shared_buffers`, `buf_cache_size`) come from
//! [`nvmf::TransportOpts`]; the RDMA-only ones (`max_srq_depth`, `no_srq`, `num_cqe`,
//! `acceptor_backlog`, `no_wr_batching`) arrive in [`nvmf::TransportOpts::specific`] and are
//! validated here.

use crate::error::RdmaError;
use nvmf::TransportOpts;
use serde_json::{Map, Value};

/// Default `num_cqe` (SPDK `DEFAULT_NVMF_RDMA_CQ_SIZE`).
pub const DEFAULT_NUM_CQE: u32 = 4096;
/// Default `max_srq_depth` (SPDK `SPDK_NVMF_RDMA_DEFAULT_SRQ_DEPTH`).
pub const DEFAULT_MAX_SRQ_DEPTH: u32 = 4096;
/// Default `acceptor_backlog` (SPDK `SPDK_NVMF_RDMA_ACCEPTOR_BACKLOG`).
pub const DEFAULT_ACCEPTOR_BACKLOG: u32 = 100;
/// Default `io_unit_size` and `num_shared_buffers` of the RDMA transport (SPDK's), defined
/// where `nvmf_create_transport` fills defaults per trtype.
pub use nvmf::transport::{
    RDMA_DEFAULT_IO_UNIT_SIZE as DEFAULT_IO_UNIT_SIZE,
    RDMA_DEFAULT_NUM_SHARED_BUFFERS as DEFAULT_NUM_SHARED_BUFFERS,
};
/// Most scatter-gather entries one data work request uses (SPDK `NVMF_DEFAULT_RX_SGE`-like
/// bound `SPDK_NVMF_MAX_SGL_ENTRIES`).
pub const MAX_SGE: u32 = 16;

/// RDMA-specific options SPDK accepts in `nvmf_create_transport`.
const KNOWN: &[&str] = &[
    "max_srq_depth",
    "no_srq",
    "num_cqe",
    "acceptor_backlog",
    "no_wr_batching",
];

/// Validated RDMA transport options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RdmaOpts {
    /// Maximum commands in flight per queue pair.
    pub max_queue_depth: u16,
    /// In-capsule data bytes a command may carry.
    pub in_capsule_data_size: u32,
    /// Largest transfer in bytes.
    pub max_io_size: u32,
    /// Size of one data buffer unit (a transfer uses `ceil(len / io_unit_size)` units).
    pub io_unit_size: u32,
    /// Data buffer units per poll group.
    pub num_shared_buffers: u32,
    /// Shared receive queue depth (per device and poll group).
    pub max_srq_depth: u32,
    /// Use a receive queue per queue pair instead of a shared one.
    pub no_srq: bool,
    /// Completion queue entries per poll group (used with `no_srq`).
    pub num_cqe: u32,
    /// Listen backlog of the RDMA CM listener.
    pub acceptor_backlog: u32,
    /// Post each work request at once instead of batching them per poll. Accepted and
    /// printed for SPDK compatibility; this transport always posts at once.
    pub no_wr_batching: bool,
}

fn u32_opt(m: &Map<String, Value>, k: &str, default: u32) -> Result<u32, RdmaError> {
    match m.get(k) {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| RdmaError::InvalidOption(format!("{k} must be a u32, got {v}"))),
    }
}

fn bool_opt(m: &Map<String, Value>, k: &str) -> Result<bool, RdmaError> {
    match m.get(k) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(RdmaError::InvalidOption(format!(
            "{k} must be a boolean, got {v}"
        ))),
    }
}

impl RdmaOpts {
    /// Checks the RDMA-specific options and the limits SPDK `nvmf_rdma_create` enforces:
    /// unknown options are refused, `io_unit_size` must cover `max_io_size` within
    /// [`MAX_SGE`] units, `max_srq_depth` and `num_cqe` must be positive, and there must be
    /// at least one full I/O's worth of buffer units.
    pub fn from_transport_opts(opts: &TransportOpts) -> Result<RdmaOpts, RdmaError> {
        for k in opts.specific.keys() {
            match nvmf::transport::classify_specific_option(k, KNOWN) {
                Ok(true) => {}
                Ok(false) => tracing::debug!(option = %k, "ignoring another transport's option"),
                Err(k) => {
                    return Err(RdmaError::InvalidOption(format!(
                        "unknown RDMA transport option {k}"
                    )));
                }
            }
        }
        let m = &opts.specific;
        let o = RdmaOpts {
            max_queue_depth: opts.max_queue_depth,
            in_capsule_data_size: opts.in_capsule_data_size,
            max_io_size: opts.max_io_size,
            io_unit_size: opts.io_unit_size,
            num_shared_buffers: opts.num_shared_buffers,
            max_srq_depth: u32_opt(m, "max_srq_depth", DEFAULT_MAX_SRQ_DEPTH)?,
            no_srq: bool_opt(m, "no_srq")?,
            num_cqe: u32_opt(m, "num_cqe", DEFAULT_NUM_CQE)?,
            acceptor_backlog: u32_opt(m, "acceptor_backlog", DEFAULT_ACCEPTOR_BACKLOG)?,
            no_wr_batching: bool_opt(m, "no_wr_batching")?,
        };
        if o.io_unit_size == 0 || o.max_io_size.div_ceil(o.io_unit_size) > MAX_SGE {
            return Err(RdmaError::InvalidOption(format!(
                "io_unit_size {} is too small for max_io_size {} (at most {MAX_SGE} units)",
                o.io_unit_size, o.max_io_size
            )));
        }
        if o.max_srq_depth == 0 || o.num_cqe == 0 || o.acceptor_backlog == 0 {
            return Err(RdmaError::InvalidOption(
                "max_srq_depth, num_cqe and acceptor_backlog must be positive".into(),
            ));
        }
        if o.num_shared_buffers < o.units_per_io() {
            return Err(RdmaError::InvalidOption(format!(
                "num_shared_buffers {} is fewer than one I/O needs ({})",
                o.num_shared_buffers,
                o.units_per_io()
            )));
        }
        Ok(o)
    }

    /// Buffer units the largest I/O takes.
    pub fn units_per_io(&self) -> u32 {
        self.max_io_size.div_ceil(self.io_unit_size.max(1))
    }

    /// The options `nvmf_get_transports` prints for RDMA (SPDK `nvmf_rdma_dump_opts`).
    pub fn dump_json(&self, out: &mut Map<String, Value>) {
        out.insert("max_srq_depth".into(), Value::from(self.max_srq_depth));
        out.insert("no_srq".into(), Value::Bool(self.no_srq));
        if self.no_srq {
            out.insert("num_cqe".into(), Value::from(self.num_cqe));
        }
        out.insert(
            "acceptor_backlog".into(),
            Value::from(self.acceptor_backlog),
        );
        out.insert("no_wr_batching".into(), Value::Bool(self.no_wr_batching));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: Value) -> TransportOpts {
        let mut o: TransportOpts = serde_json::from_value(v).unwrap();
        o.validate().unwrap();
        o
    }

    #[test]
    fn rdma_specific_defaults_match_spdk() {
        let o = RdmaOpts::from_transport_opts(&opts(json!({"io_unit_size": 8192}))).unwrap();
        assert_eq!(o.max_srq_depth, 4096);
        assert!(!o.no_srq);
        assert_eq!(o.num_cqe, 4096);
        assert_eq!(o.acceptor_backlog, 100);
        assert!(!o.no_wr_batching);
        assert_eq!(o.units_per_io(), 16);
    }

    #[test]
    fn options_are_parsed_and_dumped_like_spdk() {
        let o = RdmaOpts::from_transport_opts(&opts(json!({
            "io_unit_size": 8192, "max_srq_depth": 256, "no_srq": true, "num_cqe": 1024,
            "acceptor_backlog": 8, "no_wr_batching": true
        })))
        .unwrap();
        let mut m = Map::new();
        o.dump_json(&mut m);
        assert_eq!(
            Value::Object(m),
            json!({"max_srq_depth": 256, "no_srq": true, "num_cqe": 1024,
                   "acceptor_backlog": 8, "no_wr_batching": true})
        );
    }

    #[test]
    fn unknown_or_mistyped_options_are_refused() {
        let e = RdmaOpts::from_transport_opts(&opts(json!({"srq_depth": 4}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid RDMA transport option: unknown RDMA transport option srq_depth"
        );
        // What `spdk-rpc nvmf_create_transport -t RDMA` sends besides RDMA's own options.
        let o = RdmaOpts::from_transport_opts(&opts(json!({
            "c2h_success": true, "disable_mappable_bar0": false, "disable_adaptive_irq": false,
            "disable_shadow_doorbells": false, "no_srq": false
        })))
        .unwrap();
        assert!(!o.no_srq);
        let e = RdmaOpts::from_transport_opts(&opts(json!({"no_srq": 1}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid RDMA transport option: no_srq must be a boolean, got 1"
        );
        let e = RdmaOpts::from_transport_opts(&opts(json!({"max_srq_depth": -1}))).unwrap_err();
        assert!(e.to_string().contains("max_srq_depth must be a u32"));
    }

    #[test]
    fn io_unit_too_small_for_max_io_is_refused() {
        let e = RdmaOpts::from_transport_opts(&opts(json!({"io_unit_size": 4096}))).unwrap_err();
        assert!(e.to_string().contains("io_unit_size 4096 is too small"));
    }

    #[test]
    fn too_few_shared_buffers_is_refused() {
        let e = RdmaOpts::from_transport_opts(&opts(
            json!({"io_unit_size": 8192, "num_shared_buffers": 15}),
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("num_shared_buffers 15 is fewer than one I/O needs (16)")
        );
    }
}
