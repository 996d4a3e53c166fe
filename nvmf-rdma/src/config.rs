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

/// Smallest `max_io_size` (8 KiB, checked by SPDK `nvmf_transport_create`).
pub const MIN_MAX_IO_SIZE: u32 = nvmf::transport::MIN_MAX_IO_SIZE;
/// Smallest in-capsule data size: room for 16 SGL descriptors (SPDK `nvmf_rdma_create`,
/// needed for MSDBD 16).
pub const MIN_IN_CAPSULE_DATA_SIZE: u32 = 16 * 16;
/// Fewest shared data buffers that guarantee forward progress (SPDK
/// `SPDK_NVMF_MAX_SGL_ENTRIES * 2`).
pub const MIN_SHARED_BUFFERS: u32 = MAX_SGE * 2;
/// Size of a command capsule's SQE (the receive buffer holds it before the in-capsule data).
const SQE_BYTES: u32 = crate::proto::SQE_LEN as u32;

/// Bounds the size options as SPDK does before an RDMA transport exists
/// (`nvmf_transport_create` then `nvmf_rdma_create`), so that neither a poll group's buffer
/// pool nor a queue's receive buffers can be sized from unbounded values: `max_io_size` a power
/// of 2 of at least 8 KiB; `io_unit_size` non-zero, at most `large_bufsize` (the env iobuf
/// pool's large buffer size) and clamped to `max_io_size`; `in_capsule_data_size` clamped to
/// `max_io_size` and raised to [`MIN_IN_CAPSULE_DATA_SIZE`]. Refusals are logged with
/// SPDK's message and returned as [`RdmaError::InvalidOption`] with the same text; changes
/// are logged as warnings. [`RdmaOpts::from_transport_opts`] then checks the I/O unit count
/// and the shared buffers.
pub fn check_size_limits(opts: &mut TransportOpts, large_bufsize: u32) -> Result<(), RdmaError> {
    let refuse = |msg: String| {
        tracing::error!("{msg}");
        Err(RdmaError::InvalidOption(msg))
    };
    if let Err(msg) =
        nvmf::transport::check_io_sizes(opts.max_io_size, opts.io_unit_size, large_bufsize)
    {
        return refuse(msg);
    }
    if opts.io_unit_size > opts.max_io_size {
        tracing::warn!(
            io_unit_size = opts.io_unit_size,
            max_io_size = opts.max_io_size,
            "RDMA io_unit_size larger than max_io_size: using max_io_size"
        );
        opts.io_unit_size = opts.max_io_size;
    }
    if opts.in_capsule_data_size > opts.max_io_size {
        tracing::warn!(
            icd = opts.in_capsule_data_size,
            max_io_size = opts.max_io_size,
            "RDMA in_capsule_data_size larger than max_io_size: using max_io_size"
        );
        opts.in_capsule_data_size = opts.max_io_size;
    }
    if opts.in_capsule_data_size < MIN_IN_CAPSULE_DATA_SIZE {
        tracing::warn!(
            "In capsule data size is set to {MIN_IN_CAPSULE_DATA_SIZE}, this is minimum size required to support msdbd=16"
        );
        opts.in_capsule_data_size = MIN_IN_CAPSULE_DATA_SIZE;
    }
    Ok(())
}

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
    /// [`MAX_SGE`] units, `max_srq_depth` and `num_cqe` must be positive, there must be at
    /// least [`MIN_SHARED_BUFFERS`] buffer units, and a receive buffer (SQE plus in-capsule
    /// data) must fit a work request's 32-bit length. Refusals are logged.
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
        let refuse = |msg: String| {
            tracing::error!("{msg}");
            Err(RdmaError::InvalidOption(msg))
        };
        // SPDK divides (max_io_size / io_unit_size > 16); a transfer here uses one SGE per
        // started unit, so the rounded-up count must fit as well.
        if o.io_unit_size == 0 || o.max_io_size.div_ceil(o.io_unit_size) > MAX_SGE {
            return refuse(format!(
                "Unsupported IO Unit size specified, {} bytes",
                o.io_unit_size
            ));
        }
        if o.max_srq_depth == 0 || o.num_cqe == 0 || o.acceptor_backlog == 0 {
            return refuse("max_srq_depth, num_cqe and acceptor_backlog must be positive".into());
        }
        if o.num_shared_buffers < MIN_SHARED_BUFFERS.max(o.units_per_io()) {
            return refuse(format!(
                "The number of shared data buffers ({}) is less than the minimum number required to guarantee that forward progress can be made ({})",
                o.num_shared_buffers,
                MIN_SHARED_BUFFERS.max(o.units_per_io())
            ));
        }
        if o.in_capsule_data_size.checked_add(SQE_BYTES).is_none() {
            return refuse(format!(
                "in_capsule_data_size {} leaves no room for the command",
                o.in_capsule_data_size
            ));
        }
        Ok(o)
    }

    /// Bytes of one receive buffer: the SQE plus the in-capsule data (checked to fit a u32
    /// by [`RdmaOpts::from_transport_opts`]).
    pub fn recv_size(&self) -> u32 {
        self.in_capsule_data_size.saturating_add(SQE_BYTES)
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
        assert_eq!(
            e.to_string(),
            "invalid RDMA transport option: Unsupported IO Unit size specified, 4096 bytes"
        );
        // 2^31 / 131072 = 16384 units: the audit's "power of 2 but huge" case.
        let e = RdmaOpts::from_transport_opts(&opts(
            json!({"io_unit_size": 131072, "max_io_size": 2147483648u32}),
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid RDMA transport option: Unsupported IO Unit size specified, 131072 bytes"
        );
    }

    #[test]
    fn too_few_shared_buffers_is_refused() {
        let e = RdmaOpts::from_transport_opts(&opts(
            json!({"io_unit_size": 8192, "num_shared_buffers": 31}),
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid RDMA transport option: The number of shared data buffers (31) is less than the minimum number required to guarantee that forward progress can be made (32)"
        );
        assert!(
            RdmaOpts::from_transport_opts(&opts(
                json!({"io_unit_size": 8192, "num_shared_buffers": 32})
            ))
            .is_ok()
        );
    }

    /// The audit's request: io_unit_size = max_io_size = u32::MAX (a 4 GiB buffer unit per
    /// poll group, receive buffers of ICD x depth).
    #[test]
    fn unbounded_sizes_are_refused_with_spdk_messages() {
        let mut o = TransportOpts::defaults_for("RDMA");
        o.max_io_size = u32::MAX;
        o.io_unit_size = u32::MAX;
        o.in_capsule_data_size = u32::MAX;
        assert_eq!(
            check_size_limits(&mut o, 135_168).unwrap_err().to_string(),
            "invalid RDMA transport option: max_io_size 4294967295 must be a power of 2 and be greater than or equal 8KB"
        );
        o.max_io_size = 4096;
        assert_eq!(
            check_size_limits(&mut o, 135_168).unwrap_err().to_string(),
            "invalid RDMA transport option: max_io_size 4096 must be a power of 2 and be greater than or equal 8KB"
        );
        o.max_io_size = 1 << 31;
        assert_eq!(
            check_size_limits(&mut o, 135_168).unwrap_err().to_string(),
            "invalid RDMA transport option: io_unit_size 4294967295 is larger than iobuf pool large buffer size 135168"
        );
        o.io_unit_size = 0;
        assert_eq!(
            check_size_limits(&mut o, 135_168).unwrap_err().to_string(),
            "invalid RDMA transport option: io_unit_size cannot be 0"
        );
    }

    #[test]
    fn io_unit_and_icd_are_clamped_like_spdk() {
        let mut o = TransportOpts::defaults_for("RDMA");
        o.max_io_size = 65536;
        o.io_unit_size = 131_072;
        o.in_capsule_data_size = 1 << 20;
        check_size_limits(&mut o, 135_168).unwrap();
        assert_eq!((o.io_unit_size, o.in_capsule_data_size), (65536, 65536));
        o.in_capsule_data_size = 16;
        check_size_limits(&mut o, 135_168).unwrap();
        assert_eq!(o.in_capsule_data_size, 256);
        let r = RdmaOpts::from_transport_opts(&o).unwrap();
        assert_eq!(r.recv_size(), 256 + 64);
    }

    #[test]
    fn spdk_rdma_defaults_pass_unchanged() {
        let d = TransportOpts::defaults_for("RDMA");
        let mut o = d.clone();
        check_size_limits(&mut o, 135_168).unwrap();
        assert_eq!(o, d);
        let r = RdmaOpts::from_transport_opts(&o).unwrap();
        assert_eq!(
            (
                r.max_io_size,
                r.io_unit_size,
                r.in_capsule_data_size,
                r.num_shared_buffers
            ),
            (131_072, 8192, 4096, 4095)
        );
    }

    #[test]
    fn receive_buffer_size_must_fit_a_work_request_length() {
        let mut o = opts(json!({"io_unit_size": 8192}));
        o.in_capsule_data_size = u32::MAX - 63;
        let e = RdmaOpts::from_transport_opts(&o).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid RDMA transport option: in_capsule_data_size 4294967232 leaves no room for the command"
        );
    }
}
