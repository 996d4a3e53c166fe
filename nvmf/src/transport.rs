//! Transport provider API (SPDK `include/spdk/nvmf_transport.h`).
//!
//! A transport crate (nvmf-tcp, nvmf-rdma, [`crate::testing`]) implements [`Transport`] and
//! [`TransportPollGroup`]; the target core owns everything above the wire.
//!
//! ```text
//!  app thread                               poll group Thread (one per reactor Thread)
//!  ──────────                               ─────────────────────────────────────────
//!  Target ── Transport::listen(addr)
//!         ── acceptor poller: Transport::accept() -> Connection (Send)
//!                 │ round robin, by message
//!                 ▼
//!                                           nvmf PollGroup: Qpair::new(..)
//!                                           TransportPollGroup::add_qpair(conn, qpair)
//!                                           TransportPollGroup::poll():
//!                                             decode capsule -> Request
//!                                             qpair.handle_request(req)      ──▶ controller
//!                                             while let Some(rsp) = qpair.poll_response()
//!                                                 write rsp.cqe (+ rsp.data)  ◀── completion
//!                                             peer gone: qpair.disconnect(); free the
//!                                                 connection once qpair.is_drained()
//! ```
//!
//! # Called in this order
//!
//! 1. `nvmf_create_transport` builds the transport through the factory the app registered
//!    ([`crate::Target::register_transport_factory`]) from [`TransportOpts`]; the transport
//!    validates its specific options ([`TransportOpts::specific`]) and rejects unknown ones.
//! 2. For every poll group the target calls [`Transport::poll_group_builder`] on the app
//!    thread and runs the returned closure **on the poll group's Thread**; the
//!    [`TransportPollGroup`] it builds lives and dies there.
//! 3. `nvmf_subsystem_add_listener` calls [`Transport::listen`]; removing the last use of an
//!    address calls [`Transport::stop_listen`].
//! 4. An acceptor poller on the app thread calls [`Transport::accept`] until it yields `None`;
//!    each connection goes by message to one poll group, which creates a [`crate::Qpair`]
//!    and calls [`TransportPollGroup::add_qpair`]. The transport records the listener the
//!    connection came in on with [`crate::Qpair::set_listen_addr`] (Connect checks that the
//!    subsystem listens there; discovery and RPC output use it) and the host's address with
//!    [`crate::Qpair::set_peer_addr`].
//! 5. [`TransportPollGroup::poll`] runs on every iteration of its Thread. It hands each
//!    decoded command to [`crate::Qpair::handle_request`] with its data already received
//!    (in-capsule, after R2T/H2C, after RDMA READ) and writes what
//!    [`crate::Qpair::poll_response`] yields. A command never completes inside
//!    `handle_request`'s call when it needs bdev I/O; admin/fabrics answers may be queued
//!    before it returns.
//! 6. When the peer goes away or violates the protocol the transport calls
//!    [`crate::Qpair::disconnect`]; outstanding bdev I/O still completes (their responses are
//!    dropped) and the transport frees its connection when [`crate::Qpair::is_drained`] is true
//!    ([`TransportPollGroup::remove_qpair`] is the place to do that).
//! 7. At shutdown the target stops listening, disconnects every qpair, then drops the poll
//!    groups (on their Threads) and finally the transport (on the app thread).

use crate::{NvmfError, Qpair};
use env::PollStatus;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Transport type numbers of the discovery log page (NVMe-oF 1.1, 5.3 "TRTYPE").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrType(pub u8);

impl TrType {
    /// RDMA.
    pub const RDMA: TrType = TrType(0x01);
    /// Fibre Channel.
    pub const FC: TrType = TrType(0x02);
    /// TCP.
    pub const TCP: TrType = TrType(0x03);
    /// Intra-host loop (used by [`crate::testing`]).
    pub const LOOP: TrType = TrType(0xfe);

    /// The SPDK name of a transport type ("TCP", "RDMA", ...), None for unknown values.
    pub fn name(self) -> Option<&'static str> {
        match self {
            TrType::RDMA => Some("RDMA"),
            TrType::FC => Some("FC"),
            TrType::TCP => Some("TCP"),
            TrType::LOOP => Some("LOOP"),
            _ => None,
        }
    }

    /// Parses a transport name case-insensitively, as SPDK `spdk_nvme_transport_id_parse_trtype`.
    pub fn from_name(name: &str) -> Option<TrType> {
        match name.to_ascii_uppercase().as_str() {
            "RDMA" => Some(TrType::RDMA),
            "FC" => Some(TrType::FC),
            "TCP" => Some(TrType::TCP),
            "LOOP" => Some(TrType::LOOP),
            _ => None,
        }
    }
}

/// Address family of a listener (SPDK `spdk_nvmf_adrfam`, JSON names as SPDK prints them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AdrFam {
    /// IPv4 (wire value 1).
    #[serde(rename = "IPv4", alias = "ipv4", alias = "IPV4")]
    Ipv4,
    /// IPv6 (wire value 2).
    #[serde(rename = "IPv6", alias = "ipv6", alias = "IPV6")]
    Ipv6,
    /// InfiniBand (wire value 3).
    #[serde(rename = "IB", alias = "ib")]
    Ib,
    /// Fibre Channel (wire value 4).
    #[serde(rename = "FC", alias = "fc")]
    Fc,
    /// Intra-host (wire value 0xfe).
    #[serde(rename = "INTRA_HOST", alias = "intra_host")]
    IntraHost,
}

impl AdrFam {
    /// The discovery log page value (NVMe-oF 1.1, 5.3 "ADRFAM").
    pub fn wire(self) -> u8 {
        match self {
            AdrFam::Ipv4 => 1,
            AdrFam::Ipv6 => 2,
            AdrFam::Ib => 3,
            AdrFam::Fc => 4,
            AdrFam::IntraHost => 0xfe,
        }
    }
}

/// A listen address (SPDK `spdk_nvme_transport_id` as `nvmf_subsystem_add_listener` takes it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenAddr {
    /// Transport name, e.g. "TCP".
    pub trtype: String,
    /// Address family; SPDK defaults to IPv4 when omitted.
    #[serde(default = "default_adrfam")]
    pub adrfam: AdrFam,
    /// Transport address (IP address for TCP/RDMA).
    pub traddr: String,
    /// Transport service id (port for TCP/RDMA).
    #[serde(default)]
    pub trsvcid: String,
}

fn default_adrfam() -> AdrFam {
    AdrFam::Ipv4
}

impl ListenAddr {
    /// The IP socket address of an IPv4/IPv6 listener (TCP and RDMA CM both listen on one):
    /// `traddr` must parse as an address of family `adrfam` and `trsvcid` as a port.
    pub fn socket_addr(&self) -> Result<std::net::SocketAddr, NvmfError> {
        use std::net::IpAddr;
        let ip: IpAddr = self
            .traddr
            .parse()
            .map_err(|_| NvmfError::InvalidParam(format!("invalid traddr {}", self.traddr)))?;
        match (self.adrfam, ip) {
            (AdrFam::Ipv4, IpAddr::V4(_)) | (AdrFam::Ipv6, IpAddr::V6(_)) => {}
            _ => {
                return Err(NvmfError::InvalidParam(format!(
                    "traddr {} does not match adrfam {:?}",
                    self.traddr, self.adrfam
                )));
            }
        }
        let port: u16 = self
            .trsvcid
            .parse()
            .map_err(|_| NvmfError::InvalidParam(format!("invalid trsvcid {}", self.trsvcid)))?;
        Ok(std::net::SocketAddr::new(ip, port))
    }

    /// A TCP/IPv4 address, the common case in tests.
    pub fn tcp(traddr: &str, trsvcid: &str) -> ListenAddr {
        ListenAddr {
            trtype: "TCP".into(),
            adrfam: AdrFam::Ipv4,
            traddr: traddr.into(),
            trsvcid: trsvcid.into(),
        }
    }

    /// True when both name the same transport (case-insensitive), family, address and port.
    pub fn same_as(&self, other: &ListenAddr) -> bool {
        self.trtype.eq_ignore_ascii_case(&other.trtype)
            && self.adrfam == other.adrfam
            && self.traddr == other.traddr
            && self.trsvcid == other.trsvcid
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trtype:{} adrfam:{:?} traddr:{} trsvcid:{}",
            self.trtype, self.adrfam, self.traddr, self.trsvcid
        )
    }
}

/// What a transport reports about a listener for the discovery log page
/// (SPDK `listener_discover`). A domain type: the discovery code writes the wire entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoverInfo {
    /// TRTYPE.
    pub trtype: TrType,
    /// ADRFAM wire value.
    pub adrfam: u8,
    /// TREQ (transport requirements) bits.
    pub treq: u8,
    /// TRADDR (at most 256 bytes, written space padded).
    pub traddr: String,
    /// TRSVCID (at most 32 bytes, written space padded).
    pub trsvcid: String,
    /// TSAS, transport specific address subtype (256 bytes).
    pub tsas: [u8; 256],
}

/// RDMA's default `io_unit_size`: `max_io_size` / 16 SGL entries (SPDK 25.09 `lib/nvmf/rdma.c`
/// `SPDK_NVMF_RDMA_MIN_IO_BUFFER_SIZE`).
pub const RDMA_DEFAULT_IO_UNIT_SIZE: u32 = DEFAULT_MAX_IO_SIZE / 16;
/// RDMA's default `num_shared_buffers` (SPDK `SPDK_NVMF_RDMA_DEFAULT_NUM_SHARED_BUFFERS`).
pub const RDMA_DEFAULT_NUM_SHARED_BUFFERS: u32 = 4095;
/// RDMA's default `data_wr_pool_size` (SPDK `SPDK_NVMF_RDMA_DEFAULT_DATA_WR_POOL_SIZE`).
pub const RDMA_DEFAULT_DATA_WR_POOL_SIZE: u32 = 4095;

/// Smallest `max_io_size` SPDK accepts (8 KiB; it must also be a power of 2).
pub const MIN_MAX_IO_SIZE: u32 = 8192;

/// SPDK's common size checks of a transport (`nvmf_transport_create`), shared by every
/// transport: `max_io_size` a power of 2 of at least [`MIN_MAX_IO_SIZE`], `io_unit_size`
/// non-zero and at most the iobuf pool's large buffer size. The error is SPDK's message.
pub fn check_io_sizes(
    max_io_size: u32,
    io_unit_size: u32,
    large_bufsize: u32,
) -> Result<(), String> {
    if !max_io_size.is_power_of_two() || max_io_size < MIN_MAX_IO_SIZE {
        return Err(format!(
            "max_io_size {max_io_size} must be a power of 2 and be greater than or equal 8KB"
        ));
    }
    if io_unit_size == 0 {
        return Err("io_unit_size cannot be 0".into());
    }
    if io_unit_size > large_bufsize {
        return Err(format!(
            "io_unit_size {io_unit_size} is larger than iobuf pool large buffer size {large_bufsize}"
        ));
    }
    Ok(())
}
/// Smallest `max_aq_depth`: smaller values are raised to it (SPDK
/// `SPDK_NVMF_MIN_ADMIN_MAX_SQ_SIZE`).
pub const MIN_ADMIN_MAX_SQ_SIZE: u32 = 32;
/// Largest `max_aq_depth`: the admin queue holds at most 4096 entries (NVMe base spec,
/// AQA.ASQS/ACQS are 12 bits).
pub const MAX_ADMIN_QUEUE_ENTRIES: u32 = 4096;
/// Keep Alive Support granularity: `kas` counts units of this many milliseconds.
const KAS_UNIT_MS: u64 = 100;

/// Default `max_queue_depth` (SPDK `SPDK_NVMF_TCP_DEFAULT_MAX_IO_QUEUE_DEPTH`).
pub const DEFAULT_MAX_QUEUE_DEPTH: u16 = 128;
/// Default `max_io_qpairs_per_ctrlr` (internal `max_qpairs_per_ctrlr` 128 minus the admin queue).
pub const DEFAULT_MAX_IO_QPAIRS_PER_CTRLR: u16 = 127;
/// Default `in_capsule_data_size`.
pub const DEFAULT_IN_CAPSULE_DATA_SIZE: u32 = 4096;
/// Default `max_io_size`.
pub const DEFAULT_MAX_IO_SIZE: u32 = 131_072;
/// Default `io_unit_size`.
pub const DEFAULT_IO_UNIT_SIZE: u32 = 131_072;
/// Default `max_aq_depth`.
pub const DEFAULT_MAX_AQ_DEPTH: u32 = 128;
/// Default `num_shared_buffers`.
pub const DEFAULT_NUM_SHARED_BUFFERS: u32 = 511;
/// Default `kas`, in units of 100 ms (SPDK `SPDK_NVMF_DEFAULT_KAS`... `kas` 100 = 10 s).
pub const DEFAULT_KAS: u16 = 100;
/// Default `min_kato` in milliseconds.
pub const DEFAULT_MIN_KATO: u32 = 10_000;
/// Default `association_timeout` in milliseconds.
pub const DEFAULT_ASSOCIATION_TIMEOUT: u32 = 120_000;
/// Default `acceptor_poll_rate` in microseconds.
pub const DEFAULT_ACCEPTOR_POLL_RATE: u32 = 10_000;

/// Options shared by all transports (SPDK `spdk_nvmf_transport_opts`), with SPDK's JSON names
/// and defaults. Transport-specific options stay in [`TransportOpts::specific`] for the
/// transport to validate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransportOpts {
    /// Maximum I/O queue depth (CAP.MQES + 1).
    pub max_queue_depth: u16,
    /// Maximum I/O queues per controller (the admin queue not counted).
    pub max_io_qpairs_per_ctrlr: u16,
    /// In-capsule data size in bytes (IOCCSZ = 4 + ICD/16).
    pub in_capsule_data_size: u32,
    /// Largest I/O in bytes (MDTS and TCP MAXH2CDATA derive from it).
    pub max_io_size: u32,
    /// Buffer unit size (deprecated in SPDK 26.x, kept for configuration compatibility).
    pub io_unit_size: u32,
    /// Maximum admin queue depth.
    pub max_aq_depth: u32,
    /// Shared data buffers per transport (deprecated in SPDK 26.x).
    pub num_shared_buffers: u32,
    /// Per-poll-group buffer cache (`u32::MAX` = automatic).
    pub buf_cache_size: u32,
    /// Insert/strip DIF on the host's behalf.
    pub dif_insert_or_strip: bool,
    /// Seconds an Abort waits for the aborted command.
    pub abort_timeout_sec: u32,
    /// Milliseconds a disconnected association is kept (not printed by SPDK).
    #[serde(skip_serializing)]
    pub association_timeout: u32,
    /// Use the bdev zero-copy API.
    pub zcopy: bool,
    /// Acceptor poller period in microseconds (not printed by SPDK).
    #[serde(skip_serializing)]
    pub acceptor_poll_rate: u32,
    /// Transport ACK timeout (RDMA).
    pub ack_timeout: u32,
    /// Data work request pool size (RDMA).
    pub data_wr_pool_size: u32,
    /// Refuse unknown I/O opcodes instead of passing them to the bdev (not printed by SPDK).
    #[serde(skip_serializing)]
    pub disable_command_passthru: bool,
    /// Keep Alive Support granularity in 100 ms units (Identify KAS) (not printed by SPDK).
    #[serde(skip_serializing)]
    pub kas: u16,
    /// Smallest KATO accepted, in milliseconds (not printed by SPDK).
    #[serde(skip_serializing)]
    pub min_kato: u32,
    /// Transport-specific options (e.g. TCP `c2h_success`, `sock_priority`, `control_msg_num`),
    /// validated by the transport.
    #[serde(flatten)]
    pub specific: Map<String, Value>,
}

impl Default for TransportOpts {
    fn default() -> Self {
        TransportOpts {
            max_queue_depth: DEFAULT_MAX_QUEUE_DEPTH,
            max_io_qpairs_per_ctrlr: DEFAULT_MAX_IO_QPAIRS_PER_CTRLR,
            in_capsule_data_size: DEFAULT_IN_CAPSULE_DATA_SIZE,
            max_io_size: DEFAULT_MAX_IO_SIZE,
            io_unit_size: DEFAULT_IO_UNIT_SIZE,
            max_aq_depth: DEFAULT_MAX_AQ_DEPTH,
            num_shared_buffers: DEFAULT_NUM_SHARED_BUFFERS,
            buf_cache_size: u32::MAX,
            dif_insert_or_strip: false,
            abort_timeout_sec: 1,
            association_timeout: DEFAULT_ASSOCIATION_TIMEOUT,
            zcopy: false,
            acceptor_poll_rate: DEFAULT_ACCEPTOR_POLL_RATE,
            ack_timeout: 0,
            data_wr_pool_size: 0,
            disable_command_passthru: false,
            kas: DEFAULT_KAS,
            min_kato: DEFAULT_MIN_KATO,
            specific: Map::new(),
        }
    }
}

impl TransportOpts {
    /// SPDK's defaults for transport `trtype` (each transport's `opts_init`, which
    /// `nvmf_create_transport` starts from). RDMA differs from TCP in `io_unit_size` (8192),
    /// `num_shared_buffers` (4095) and `data_wr_pool_size` (4095); every other name gets
    /// TCP's defaults, which are also [`TransportOpts::default`].
    pub fn defaults_for(trtype: &str) -> TransportOpts {
        let mut o = TransportOpts::default();
        if TrType::from_name(trtype) == Some(TrType::RDMA) {
            o.io_unit_size = RDMA_DEFAULT_IO_UNIT_SIZE;
            o.num_shared_buffers = RDMA_DEFAULT_NUM_SHARED_BUFFERS;
            o.data_wr_pool_size = RDMA_DEFAULT_DATA_WR_POOL_SIZE;
        }
        o
    }

    /// The options of `nvmf_create_transport` for `trtype`: the given `params` (SPDK's JSON
    /// names; unknown names land in [`TransportOpts::specific`]) over
    /// [`TransportOpts::defaults_for`] `trtype`. Fails when a value has the wrong type.
    pub fn from_json(
        trtype: &str,
        params: Map<String, Value>,
    ) -> Result<TransportOpts, serde_json::Error> {
        let defaults = TransportOpts::defaults_for(trtype);
        let mut merged = match serde_json::to_value(&defaults)? {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let given = |k: &str| params.contains_key(k);
        // Options SPDK does not print are not serialized: take them from `defaults` unless
        // given.
        let (at, apr, dcp, kas, mk) = (
            given("association_timeout"),
            given("acceptor_poll_rate"),
            given("disable_command_passthru"),
            given("kas"),
            given("min_kato"),
        );
        merged.extend(params);
        let mut o: TransportOpts = serde_json::from_value(Value::Object(merged))?;
        if !at {
            o.association_timeout = defaults.association_timeout;
        }
        if !apr {
            o.acceptor_poll_rate = defaults.acceptor_poll_rate;
        }
        if !dcp {
            o.disable_command_passthru = defaults.disable_command_passthru;
        }
        if !kas {
            o.kas = defaults.kas;
        }
        if !mk {
            o.min_kato = defaults.min_kato;
        }
        Ok(o)
    }

    /// Queues per controller including the admin queue (SPDK's internal `max_qpairs_per_ctrlr`).
    pub fn max_qpairs_per_ctrlr(&self) -> u32 {
        u32::from(self.max_io_qpairs_per_ctrlr) + 1
    }

    /// Checks the common options as SPDK `nvmf_transport_create` does, with SPDK's messages
    /// (the error text is SPDK's log line; the caller logs it): `max_aq_depth` below 32
    /// raised to 32 (above 4096 refused), `max_io_size` a power of 2 and
    /// at least 8 KiB, `kas` and `min_kato` non-zero (`min_kato` then rounded up to a multiple
    /// of the KAS granularity), `io_unit_size` non-zero and at most the iobuf pool's large
    /// buffer size ([`env::iobuf_get_options`]); plus queue depths within the spec's limits
    /// and `in_capsule_data_size` clamped to `max_io_size`. A `num_shared_buffers` above the
    /// iobuf pool's count is only warned about, as SPDK does.
    pub fn validate(&mut self) -> Result<(), NvmfError> {
        self.validate_with_iobuf(&env::iobuf_get_options())
    }

    /// [`TransportOpts::validate`] against the given iobuf pool options.
    pub fn validate_with_iobuf(&mut self, iobuf: &env::IobufOpts) -> Result<(), NvmfError> {
        if self.max_queue_depth < 2 {
            return Err(NvmfError::InvalidParam(format!(
                "max_queue_depth {} is below 2",
                self.max_queue_depth
            )));
        }
        if self.max_aq_depth < MIN_ADMIN_MAX_SQ_SIZE {
            tracing::error!(
                "max_aq_depth {} is less than minimum defined by NVMf spec, use min value",
                self.max_aq_depth
            );
            self.max_aq_depth = MIN_ADMIN_MAX_SQ_SIZE;
        }
        if self.max_aq_depth > MAX_ADMIN_QUEUE_ENTRIES {
            return Err(NvmfError::InvalidParam(format!(
                "max_aq_depth {} is above {MAX_ADMIN_QUEUE_ENTRIES}",
                self.max_aq_depth
            )));
        }
        if self.max_io_qpairs_per_ctrlr == 0 {
            return Err(NvmfError::InvalidParam(
                "max_io_qpairs_per_ctrlr must be at least 1".into(),
            ));
        }
        check_io_sizes(self.max_io_size, self.io_unit_size, iobuf.large_bufsize)
            .map_err(NvmfError::InvalidParam)?;
        if self.kas == 0 {
            return Err(NvmfError::InvalidParam("kas cannot be 0".into()));
        }
        if self.min_kato == 0 {
            return Err(NvmfError::InvalidParam("min_kato cannot be 0".into()));
        }
        let kas_ms = u64::from(self.kas) * KAS_UNIT_MS;
        let min_kato = u64::from(self.min_kato).div_ceil(kas_ms) * kas_ms;
        self.min_kato = u32::try_from(min_kato).map_err(|_| {
            NvmfError::InvalidParam(format!(
                "min_kato {} rounded up to kas {} x 100 ms does not fit in 32 bits",
                self.min_kato, self.kas
            ))
        })?;
        let count = if self.io_unit_size <= iobuf.small_bufsize {
            iobuf.small_pool_count
        } else {
            iobuf.small_pool_count.min(iobuf.large_pool_count)
        };
        if u64::from(self.num_shared_buffers) > count {
            tracing::warn!(
                "The num_shared_buffers value ({}) is larger than the available iobuf pool \
                 size ({count}). Please increase the iobuf pool sizes.",
                self.num_shared_buffers
            );
        }
        if self.in_capsule_data_size > self.max_io_size {
            tracing::warn!(
                icd = self.in_capsule_data_size,
                max_io_size = self.max_io_size,
                "in_capsule_data_size clamped to max_io_size"
            );
            self.in_capsule_data_size = self.max_io_size;
        }
        Ok(())
    }

    /// The options as `nvmf_get_transports` prints them (SPDK `nvmf_transport_dump_opts`):
    /// `trtype`, the common options, then what the transport adds through
    /// [`Transport::dump_opts_json`].
    pub fn dump_json(&self, trtype: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("trtype".into(), Value::from(trtype));
        if let Ok(Value::Object(common)) = serde_json::to_value(self) {
            for (k, v) in common {
                if !self.specific.contains_key(&k) {
                    m.insert(k, v);
                }
            }
        }
        m
    }
}

/// One transport type (SPDK `spdk_nvmf_transport_ops`), owned by the target on the app thread.
pub trait Transport: 'static {
    /// The transport's per-poll-group state, built and used on one poll group Thread.
    type PollGroup: TransportPollGroup<Connection = Self::Connection>;
    /// An accepted connection on its way (by message) to a poll group Thread.
    type Connection: Send + 'static;

    /// SPDK's name of the transport type ("TCP").
    fn name(&self) -> &str;
    /// The transport type number for discovery.
    fn trtype(&self) -> TrType;
    /// The options it was created with (after validation).
    fn opts(&self) -> &TransportOpts;
    /// Starts listening on `addr`; a second listen on the same address is a no-op success.
    fn listen(&mut self, addr: &ListenAddr) -> Result<(), NvmfError>;
    /// Stops listening on `addr`; connections already accepted stay up.
    fn stop_listen(&mut self, addr: &ListenAddr) -> Result<(), NvmfError>;
    /// Yields the next connection accepted on any listener, or None when there is none now.
    /// Called by the target's acceptor poller; must not block.
    fn accept(&mut self) -> Option<Self::Connection>;
    /// A closure the target runs on a poll group Thread to build that Thread's poll group.
    fn poll_group_builder(&self) -> PollGroupBuilder<Self::PollGroup>;
    /// Adds the transport-specific options to `nvmf_get_transports` output (e.g. TCP
    /// `c2h_success`, `sock_priority`).
    fn dump_opts_json(&self, out: &mut Map<String, Value>);
    /// Describes a listener for a discovery log page entry.
    fn listener_discover(&self, addr: &ListenAddr) -> DiscoverInfo;
}

/// Builds a transport poll group on the Thread that runs it.
pub type PollGroupBuilder<P> = Box<dyn FnOnce() -> Result<P, NvmfError> + Send>;

/// A transport's per-Thread poll group (SPDK `spdk_nvmf_transport_poll_group`).
pub trait TransportPollGroup: 'static {
    /// The connection type its transport accepts.
    type Connection: Send + 'static;

    /// Takes over an accepted connection; `qpair` is the target-side queue pair it feeds.
    fn add_qpair(&mut self, conn: Self::Connection, qpair: Qpair) -> Result<(), NvmfError>;
    /// Moves data: receive, hand requests to their qpairs, write responses, reap closed
    /// connections. Busy when it did any work.
    fn poll(&mut self) -> PollStatus;
    /// Closes and drops every connection whose qpair is disconnected and drained (called by
    /// the target after each poll); returns how many connections remain.
    fn remove_qpair(&mut self) -> usize;
    /// Disconnects every qpair (shutdown). The poll group keeps polling until
    /// [`TransportPollGroup::remove_qpair`] returns 0.
    fn disconnect_all(&mut self);
}

/// Something to run on a poll group's Thread (install a connection or a transport poll group).
pub(crate) type Installer = Box<dyn FnOnce(&crate::poll_group::PollGroupRef) + Send>;

/// Object-safe view of a [`Transport`] the target stores (type erasure over the connection
/// and poll group types).
pub(crate) trait AnyTransport {
    fn name(&self) -> String;
    fn opts(&self) -> &TransportOpts;
    fn listen(&mut self, addr: &ListenAddr) -> Result<(), NvmfError>;
    fn stop_listen(&mut self, addr: &ListenAddr) -> Result<(), NvmfError>;
    fn dump_json(&self) -> Value;
    fn listener_discover(&self, addr: &ListenAddr) -> DiscoverInfo;
    /// Accepts one connection and returns the function that installs it in a poll group.
    fn accept(&mut self) -> Option<Installer>;
    /// A closure that builds the transport's poll group on its Thread and installs it.
    fn poll_group_installer(&self) -> Installer;
}

impl<T: Transport> AnyTransport for T {
    fn name(&self) -> String {
        Transport::name(self).to_string()
    }
    fn opts(&self) -> &TransportOpts {
        Transport::opts(self)
    }
    fn listen(&mut self, addr: &ListenAddr) -> Result<(), NvmfError> {
        Transport::listen(self, addr)
    }
    fn stop_listen(&mut self, addr: &ListenAddr) -> Result<(), NvmfError> {
        Transport::stop_listen(self, addr)
    }
    fn dump_json(&self) -> Value {
        let name = Transport::name(self).to_string();
        let opts = Transport::opts(self);
        let mut m = opts.dump_json(&name);
        // SPDK prints the transport's own options before these three.
        let tail: Vec<(String, Value)> = ["abort_timeout_sec", "ack_timeout", "data_wr_pool_size"]
            .iter()
            .filter_map(|k| m.remove(*k).map(|v| (k.to_string(), v)))
            .collect();
        self.dump_opts_json(&mut m);
        m.extend(tail);
        Value::Object(m)
    }
    fn listener_discover(&self, addr: &ListenAddr) -> DiscoverInfo {
        Transport::listener_discover(self, addr)
    }
    fn accept(&mut self) -> Option<Installer> {
        let conn = Transport::accept(self)?;
        let name = Transport::name(self).to_string();
        Some(Box::new(move |pg: &crate::poll_group::PollGroupRef| {
            pg.add_connection::<T::PollGroup>(&name, conn)
        }))
    }
    fn poll_group_installer(&self) -> Installer {
        let builder = self.poll_group_builder();
        let name = Transport::name(self).to_string();
        Box::new(
            move |pg: &crate::poll_group::PollGroupRef| match builder() {
                Ok(tpg) => pg.install_transport(&name, tpg),
                Err(e) => {
                    tracing::error!(transport = %name, error = %e, "poll group creation failed")
                }
            },
        )
    }
}

/// Every transport-specific option of SPDK's transports (`nvmf_create_transport`): TCP
/// (`c2h_success`, `sock_priority`, `control_msg_num`), RDMA (`max_srq_depth`, `no_srq`,
/// `num_cqe`, `acceptor_backlog`, `no_wr_batching`) and vfio-user (`disable_mappable_bar0`,
/// `disable_adaptive_irq`, `disable_shadow_doorbells`). SPDK's client sends its boolean flags for
/// every transport type (e.g. `no_srq: false` with `-t TCP`) and SPDK decodes them relaxed, so a
/// transport ignores the other transports' options and refuses only names that no SPDK
/// transport has.
pub const SPDK_TRANSPORT_SPECIFIC_OPTIONS: &[&str] = &[
    "c2h_success",
    "sock_priority",
    "control_msg_num",
    "max_srq_depth",
    "no_srq",
    "num_cqe",
    "acceptor_backlog",
    "no_wr_batching",
    "disable_mappable_bar0",
    "disable_adaptive_irq",
    "disable_shadow_doorbells",
];

/// Splits a transport's specific options: `Ok(true)` for one of `own`, `Ok(false)` for another
/// SPDK transport's option (to be ignored), `Err(name)` for a name no SPDK transport has.
pub fn classify_specific_option<'a>(name: &'a str, own: &[&str]) -> Result<bool, &'a str> {
    if own.contains(&name) {
        Ok(true)
    } else if SPDK_TRANSPORT_SPECIFIC_OPTIONS.contains(&name) {
        Ok(false)
    } else {
        Err(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addr_socket_addr_checks_family_address_and_port() {
        let a = ListenAddr::tcp("127.0.0.1", "4420").socket_addr().unwrap();
        assert_eq!(a, "127.0.0.1:4420".parse().unwrap());
        let mut v6 = ListenAddr::tcp("::1", "4420");
        assert!(v6.socket_addr().is_err(), "IPv6 address with adrfam IPv4");
        v6.adrfam = AdrFam::Ipv6;
        assert_eq!(v6.socket_addr().unwrap(), "[::1]:4420".parse().unwrap());
        assert!(ListenAddr::tcp("localhost", "4420").socket_addr().is_err());
        assert!(ListenAddr::tcp("127.0.0.1", "70000").socket_addr().is_err());
    }

    #[test]
    fn other_transports_options_are_ignored_and_unknown_names_refused() {
        let tcp = &["c2h_success", "sock_priority", "control_msg_num"];
        assert_eq!(classify_specific_option("c2h_success", tcp), Ok(true));
        assert_eq!(classify_specific_option("no_srq", tcp), Ok(false));
        assert_eq!(
            classify_specific_option("disable_adaptive_irq", tcp),
            Ok(false)
        );
        assert_eq!(
            classify_specific_option("c2h_sucess", tcp),
            Err("c2h_sucess")
        );
    }

    #[test]
    fn default_opts_match_spdk_tcp_defaults() {
        let o = TransportOpts::default();
        assert_eq!(o.max_queue_depth, 128);
        assert_eq!(o.max_io_qpairs_per_ctrlr, 127);
        assert_eq!(o.max_qpairs_per_ctrlr(), 128);
        assert_eq!(o.in_capsule_data_size, 4096);
        assert_eq!(o.max_io_size, 131_072);
        assert_eq!(o.io_unit_size, 131_072);
        assert_eq!(o.max_aq_depth, 128);
        assert_eq!(o.num_shared_buffers, 511);
        assert_eq!(o.buf_cache_size, u32::MAX);
        assert_eq!(o.kas, 100);
        assert_eq!(o.min_kato, 10_000);
        assert_eq!(o.association_timeout, 120_000);
        assert_eq!(o.acceptor_poll_rate, 10_000);
    }

    #[test]
    fn rdma_defaults_are_spdk_rdma_defaults() {
        let o = TransportOpts::defaults_for("rdma");
        assert_eq!(o.max_queue_depth, 128);
        assert_eq!(o.max_io_qpairs_per_ctrlr, 127);
        assert_eq!(o.max_qpairs_per_ctrlr(), 128);
        assert_eq!(o.in_capsule_data_size, 4096);
        assert_eq!(o.max_io_size, 131_072);
        assert_eq!(o.io_unit_size, 8192);
        assert_eq!(o.max_aq_depth, 128);
        assert_eq!(o.num_shared_buffers, 4095);
        assert_eq!(o.buf_cache_size, u32::MAX);
        assert_eq!(o.data_wr_pool_size, 4095);
        assert_eq!(o.abort_timeout_sec, 1);
        assert_eq!(TransportOpts::defaults_for("TCP"), TransportOpts::default());
        assert_eq!(TransportOpts::defaults_for("FOO"), TransportOpts::default());
    }

    #[test]
    fn from_json_fills_what_is_not_given_from_the_transports_defaults() {
        let p = |v: Value| match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let o = TransportOpts::from_json(
            "RDMA",
            p(serde_json::json!({"io_unit_size": 16384, "kas": 50, "no_srq": true})),
        )
        .unwrap();
        assert_eq!(o.io_unit_size, 16384);
        assert_eq!(o.num_shared_buffers, 4095);
        assert_eq!(o.data_wr_pool_size, 4095);
        assert_eq!(o.kas, 50);
        assert_eq!(o.min_kato, DEFAULT_MIN_KATO);
        assert_eq!(o.specific.get("no_srq"), Some(&Value::Bool(true)));
        assert_eq!(o.specific.len(), 1);
        let t = TransportOpts::from_json("TCP", Map::new()).unwrap();
        assert_eq!(t, TransportOpts::default());
        let e = TransportOpts::from_json("TCP", p(serde_json::json!({"max_queue_depth": "x"})));
        assert!(e.is_err());
    }

    #[test]
    fn opts_parse_keeps_specific_options_apart() {
        let o: TransportOpts = serde_json::from_value(serde_json::json!({
            "max_queue_depth": 64, "c2h_success": false, "sock_priority": 3
        }))
        .unwrap();
        assert_eq!(o.max_queue_depth, 64);
        assert_eq!(o.specific.get("c2h_success"), Some(&Value::Bool(false)));
        assert_eq!(o.specific.get("sock_priority"), Some(&Value::from(3)));
        assert_eq!(o.specific.len(), 2);
    }

    #[test]
    fn validate_clamps_icd_and_rejects_tiny_queue() {
        let mut o = TransportOpts {
            in_capsule_data_size: 1 << 20,
            ..TransportOpts::default()
        };
        o.validate().unwrap();
        assert_eq!(o.in_capsule_data_size, 131_072);
        let mut bad = TransportOpts {
            max_queue_depth: 1,
            ..TransportOpts::default()
        };
        assert_eq!(bad.validate().unwrap_err().errno(), -22);
    }

    fn refusal(o: TransportOpts) -> String {
        let mut o = o;
        match o.validate_with_iobuf(&env::IobufOpts::default()) {
            Err(NvmfError::InvalidParam(m)) => m,
            other => panic!("expected InvalidParam, got {other:?}"),
        }
    }

    #[test]
    fn validate_refuses_bad_max_io_size_with_spdks_message() {
        for v in [0, 4096, 12_288, 131_071, u32::MAX] {
            let o = TransportOpts {
                max_io_size: v,
                ..TransportOpts::default()
            };
            assert_eq!(
                refusal(o),
                format!("max_io_size {v} must be a power of 2 and be greater than or equal 8KB")
            );
        }
        let mut o = TransportOpts {
            max_io_size: 8192,
            io_unit_size: 8192,
            ..TransportOpts::default()
        };
        o.validate_with_iobuf(&env::IobufOpts::default()).unwrap();
        assert_eq!(o.in_capsule_data_size, 4096);
    }

    #[test]
    fn validate_raises_a_small_max_aq_depth_to_32_and_refuses_above_4096() {
        let mut o = TransportOpts {
            max_aq_depth: 1,
            ..TransportOpts::default()
        };
        o.validate_with_iobuf(&env::IobufOpts::default()).unwrap();
        assert_eq!(o.max_aq_depth, 32);
        let o = TransportOpts {
            max_aq_depth: 4097,
            ..TransportOpts::default()
        };
        assert_eq!(refusal(o), "max_aq_depth 4097 is above 4096");
        let mut o = TransportOpts {
            max_aq_depth: 4096,
            ..TransportOpts::default()
        };
        o.validate_with_iobuf(&env::IobufOpts::default()).unwrap();
        assert_eq!(o.max_aq_depth, 4096);
    }

    #[test]
    fn validate_refuses_io_unit_size_above_the_iobuf_large_buffer() {
        let o = TransportOpts {
            io_unit_size: u32::MAX,
            ..TransportOpts::default()
        };
        assert_eq!(
            refusal(o),
            "io_unit_size 4294967295 is larger than iobuf pool large buffer size 135168"
        );
        let o = TransportOpts {
            io_unit_size: 0,
            ..TransportOpts::default()
        };
        assert_eq!(refusal(o), "io_unit_size cannot be 0");
        let mut o = TransportOpts {
            io_unit_size: 135_168,
            ..TransportOpts::default()
        };
        o.validate_with_iobuf(&env::IobufOpts::default()).unwrap();
        assert_eq!(o.io_unit_size, 135_168);
    }

    #[test]
    fn validate_refuses_kas_and_min_kato_zero_and_rounds_min_kato_up() {
        let o = TransportOpts {
            kas: 0,
            ..TransportOpts::default()
        };
        assert_eq!(refusal(o), "kas cannot be 0");
        let o = TransportOpts {
            min_kato: 0,
            ..TransportOpts::default()
        };
        assert_eq!(refusal(o), "min_kato cannot be 0");
        let o = TransportOpts {
            min_kato: u32::MAX,
            ..TransportOpts::default()
        };
        assert_eq!(
            refusal(o),
            "min_kato 4294967295 rounded up to kas 100 x 100 ms does not fit in 32 bits"
        );
        let mut o = TransportOpts {
            kas: 30,
            min_kato: 10_000,
            ..TransportOpts::default()
        };
        o.validate_with_iobuf(&env::IobufOpts::default()).unwrap();
        assert_eq!(o.min_kato, 12_000, "rounded up to 4 x 3000 ms");
        let mut o = TransportOpts::default();
        o.validate_with_iobuf(&env::IobufOpts::default()).unwrap();
        assert_eq!(o, TransportOpts::default(), "defaults pass unchanged");
        let mut o = TransportOpts::defaults_for("RDMA");
        o.validate_with_iobuf(&env::IobufOpts::default()).unwrap();
        assert_eq!(o, TransportOpts::defaults_for("RDMA"));
    }

    #[test]
    fn listen_addr_parses_spdk_json() {
        let a: ListenAddr = serde_json::from_value(serde_json::json!({
            "trtype": "tcp", "adrfam": "ipv4", "traddr": "127.0.0.1", "trsvcid": "4420"
        }))
        .unwrap();
        assert!(a.same_as(&ListenAddr::tcp("127.0.0.1", "4420")));
        assert_eq!(
            serde_json::to_value(ListenAddr::tcp("127.0.0.1", "4420")).unwrap(),
            serde_json::json!({"trtype":"TCP","adrfam":"IPv4","traddr":"127.0.0.1","trsvcid":"4420"})
        );
    }
}
