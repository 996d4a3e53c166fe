//! Attached NVMe controllers: attach, detach, the admin-queue poller, global options and
//! the module's configuration (SPDK `bdev_nvme.c` controller part).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bdev::module::{BdevProps, register_bdev};
use nvme::host::{Controller, ControllerOpts, Transport, TransportId, transport_for};
use nvme::spec::identify::{Cns, NsIdDescriptor, VWC_PRESENT};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::bdev_impl::NvmeBdev;
use crate::{BdevNvmeError, MODULE_NAME, PRODUCT_NAME};

/// Global options (SPDK `struct spdk_bdev_nvme_opts`, set by `bdev_nvme_set_options`), with
/// SPDK's defaults. Applied by this module: `keep_alive_timeout_ms`, `timeout_us` (I/O command
/// timeout: an expired command fails its queue pair), `timeout_admin_us`,
/// `nvme_adminq_poll_period_us`, `io_queue_requests` (I/O queue size, 0 = driver default),
/// `ctrlr_loss_timeout_sec` / `reconnect_delay_sec` (reconnect policy),
/// `tcp_connect_timeout_ms`. The others are kept and written back by `save_config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NvmeOpts {
    /// Action on command timeout ("none", "reset", "abort").
    pub action_on_timeout: String,
    /// I/O command timeout in µs (0: none).
    pub timeout_us: u64,
    /// Admin command timeout in µs (0: as `timeout_us`).
    pub timeout_admin_us: u64,
    /// Keep-alive timeout in ms.
    pub keep_alive_timeout_ms: u32,
    /// Transport retries per I/O.
    pub transport_retry_count: u32,
    /// Arbitration burst.
    pub arbitration_burst: u32,
    /// Low priority weight.
    pub low_priority_weight: u32,
    /// Medium priority weight.
    pub medium_priority_weight: u32,
    /// High priority weight.
    pub high_priority_weight: u32,
    /// Admin queue poll period in µs.
    pub nvme_adminq_poll_period_us: u64,
    /// I/O queue poll period in µs (0: every Thread poll).
    pub nvme_ioq_poll_period_us: u64,
    /// Requests per I/O queue (0: default).
    pub io_queue_requests: u32,
    /// Delay command submission for batching.
    pub delay_cmd_submit: bool,
    /// Bdev-level retries (-1 infinite).
    pub bdev_retry_count: i32,
    /// Transport ACK timeout (RDMA/TCP).
    pub transport_ack_timeout: u8,
    /// Seconds to keep reconnecting before deleting the controller (-1: forever, 0: never).
    pub ctrlr_loss_timeout_sec: i32,
    /// Seconds between reconnect attempts (0: no reconnect).
    pub reconnect_delay_sec: u32,
    /// Seconds after which I/O fails while reconnecting.
    pub fast_io_fail_timeout_sec: u32,
    /// Disable automatic failback.
    pub disable_auto_failback: bool,
    /// Generate UUIDs for namespaces without one.
    pub generate_uuids: bool,
    /// IPv4 TOS (RDMA).
    pub transport_tos: u8,
    /// Collect NVMe error counts.
    pub nvme_error_stat: bool,
    /// RDMA SRQ size.
    pub rdma_srq_size: u32,
    /// Collect per-path I/O statistics.
    pub io_path_stat: bool,
    /// Allow accel sequences.
    pub allow_accel_sequence: bool,
    /// RDMA max CQ size.
    pub rdma_max_cq_size: u32,
    /// RDMA CM event timeout.
    pub rdma_cm_event_timeout_ms: u16,
    /// DH-HMAC-CHAP digests.
    pub dhchap_digests: Vec<String>,
    /// DH-HMAC-CHAP DH groups.
    pub dhchap_dhgroups: Vec<String>,
    /// RDMA UMR per I/O.
    pub rdma_umr_per_io: bool,
    /// TCP connect timeout in ms (0: the driver's default of 5 s).
    pub tcp_connect_timeout_ms: u32,
    /// Pass flush to controllers with a volatile write cache.
    pub enable_flush: bool,
}

impl Default for NvmeOpts {
    fn default() -> Self {
        NvmeOpts {
            action_on_timeout: "none".into(),
            timeout_us: 0,
            timeout_admin_us: 0,
            keep_alive_timeout_ms: 10_000,
            transport_retry_count: 4,
            arbitration_burst: 0,
            low_priority_weight: 0,
            medium_priority_weight: 0,
            high_priority_weight: 0,
            nvme_adminq_poll_period_us: 10_000,
            nvme_ioq_poll_period_us: 0,
            io_queue_requests: 0,
            delay_cmd_submit: true,
            bdev_retry_count: 3,
            transport_ack_timeout: 0,
            ctrlr_loss_timeout_sec: 0,
            reconnect_delay_sec: 0,
            fast_io_fail_timeout_sec: 0,
            disable_auto_failback: false,
            generate_uuids: false,
            transport_tos: 0,
            nvme_error_stat: false,
            rdma_srq_size: 0,
            io_path_stat: false,
            allow_accel_sequence: false,
            rdma_max_cq_size: 0,
            rdma_cm_event_timeout_ms: 0,
            dhchap_digests: vec!["sha256".into(), "sha384".into(), "sha512".into()],
            dhchap_dhgroups: vec![
                "null".into(),
                "ffdhe2048".into(),
                "ffdhe3072".into(),
                "ffdhe4096".into(),
                "ffdhe6144".into(),
                "ffdhe8192".into(),
            ],
            rdma_umr_per_io: false,
            tcp_connect_timeout_ms: 0,
            enable_flush: false,
        }
    }
}

/// `bdev_nvme_attach_controller` parameters (SPDK's schema). Parameters this module cannot
/// honour (TLS `psk`, DH-HMAC-CHAP keys, `hostaddr`/`hostsvcid`, PI checks, `priority`,
/// multipath with a second path, `disable_sq_flow_control`) are refused with EINVAL rather
/// than ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachParams {
    /// Controller name; bdevs are `<name>n<nsid>`.
    pub name: String,
    /// Transport type ("TCP").
    pub trtype: String,
    /// Target address.
    pub traddr: String,
    /// Address family ("ipv4"/"ipv6", any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adrfam: Option<String>,
    /// Target port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trsvcid: Option<String>,
    /// Connection priority (refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Subsystem NQN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnqn: Option<String>,
    /// Host NQN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostnqn: Option<String>,
    /// Host address (refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostaddr: Option<String>,
    /// Host port (refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostsvcid: Option<String>,
    /// PI reference tag check (refused when true).
    #[serde(default)]
    pub prchk_reftag: bool,
    /// PI guard check (refused when true).
    #[serde(default)]
    pub prchk_guard: bool,
    /// TCP header digest.
    #[serde(default)]
    pub hdgst: bool,
    /// TCP data digest.
    #[serde(default)]
    pub ddgst: bool,
    /// Fabrics connect timeout in µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fabrics_connect_timeout_us: Option<u64>,
    /// Multipath mode ("disable", "failover", "multipath").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipath: Option<String>,
    /// I/O queues to request (1..=65536).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_io_queues: Option<u32>,
    /// Reconnect policy override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctrlr_loss_timeout_sec: Option<i32>,
    /// Reconnect delay override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_delay_sec: Option<u32>,
    /// Fast I/O fail override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_io_fail_timeout_sec: Option<u32>,
    /// TLS PSK key name (refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psk: Option<String>,
    /// Most bdevs to create (default 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bdevs: Option<u32>,
    /// DH-HMAC-CHAP key (refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhchap_key: Option<String>,
    /// DH-HMAC-CHAP controller key (refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhchap_ctrlr_key: Option<String>,
    /// Attach namespaces with unknown CSIs (refused when true).
    #[serde(default)]
    pub allow_unrecognized_csi: bool,
    /// Multipath options (refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipath_opts: Option<Value>,
    /// Disable SQ flow control (refused when true).
    #[serde(default)]
    pub disable_sq_flow_control: bool,
}

/// Default `max_bdevs` (SPDK `NVME_MAX_BDEVS_PER_RPC`).
const DEFAULT_MAX_BDEVS: u32 = 128;

/// An attached controller. Shared by its bdevs; the driver controller sits behind a mutex
/// because channels on any Thread allocate I/O queue pairs from it.
pub struct NvmeCtrlr {
    name: String,
    params: AttachParams,
    trid: TransportId,
    hostnqn: String,
    ctrlr: Mutex<Controller>,
    bdevs: Mutex<Vec<String>>,
    io_queue_size: u16,
    reconnect_delay: Option<Duration>,
}

impl std::fmt::Debug for NvmeCtrlr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmeCtrlr")
            .field("name", &self.name)
            .finish()
    }
}

impl NvmeCtrlr {
    /// Controller name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Transport ID.
    pub fn trid(&self) -> &TransportId {
        &self.trid
    }

    /// Names of its bdevs.
    pub fn bdev_names(&self) -> Vec<String> {
        lock(&self.bdevs).clone()
    }

    /// The driver controller (locked).
    pub fn lock(&self) -> MutexGuard<'_, Controller> {
        lock(&self.ctrlr)
    }

    pub(crate) fn io_queue_size(&self) -> u16 {
        self.io_queue_size
    }

    pub(crate) fn reconnect_delay(&self) -> Option<Duration> {
        self.reconnect_delay
    }

    /// SPDK `nvme_ctrlr_info_json` shape.
    pub fn info_json(&self) -> Value {
        let c = self.lock();
        let state = if c.failure().is_some() {
            "failed"
        } else {
            "enabled"
        };
        json!({
            "state": state,
            "trid": {
                "trtype": self.trid.trtype.as_str(),
                "adrfam": self.trid.adrfam.as_str(),
                "traddr": self.trid.traddr,
                "trsvcid": self.trid.trsvcid,
                "subnqn": self.trid.subnqn,
            },
            "cntlid": c.data().cntlid.get(),
            "host": {
                "nqn": self.hostnqn,
                "addr": "",
                "svcid": "",
                "no_shn_notification": false,
            },
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

static CTRLRS: Mutex<BTreeMap<String, Arc<NvmeCtrlr>>> = Mutex::new(BTreeMap::new());
static OPTS: Mutex<Option<NvmeOpts>> = Mutex::new(None);

thread_local! {
    /// Admin pollers by controller name, on the Thread that attached the controller.
    static ADMIN_POLLERS: RefCell<HashMap<String, env::Poller>> = RefCell::new(HashMap::new());
}

/// Current global options.
pub fn options() -> NvmeOpts {
    lock(&OPTS).clone().unwrap_or_default()
}

/// Set the global options (SPDK `bdev_nvme_set_opts`): refused with EPERM once a controller
/// is attached; inconsistent reconnect settings are EINVAL, and so are `timeout_us` /
/// `timeout_admin_us` above [`MAX_TIMEOUT_US`] and `tcp_connect_timeout_ms` above
/// [`MAX_TCP_CONNECT_TIMEOUT_MS`].
pub fn set_options(opts: NvmeOpts) -> Result<(), BdevNvmeError> {
    if !lock(&CTRLRS).is_empty() {
        return Err(BdevNvmeError::NotPermitted(
            "RPC not permitted with nvme controllers already attached".into(),
        ));
    }
    if !["none", "reset", "abort"].contains(&opts.action_on_timeout.as_str()) {
        return Err(BdevNvmeError::InvalidArgument(format!(
            "invalid action_on_timeout {:?}",
            opts.action_on_timeout
        )));
    }
    check_reconnect(
        opts.ctrlr_loss_timeout_sec,
        opts.reconnect_delay_sec,
        opts.fast_io_fail_timeout_sec,
    )?;
    check_timeout_us("timeout_us", opts.timeout_us)?;
    check_timeout_us("timeout_admin_us", opts.timeout_admin_us)?;
    if opts.tcp_connect_timeout_ms > MAX_TCP_CONNECT_TIMEOUT_MS {
        return Err(BdevNvmeError::InvalidArgument(format!(
            "tcp_connect_timeout_ms {} is larger than the maximum {MAX_TCP_CONNECT_TIMEOUT_MS} (10 minutes)",
            opts.tcp_connect_timeout_ms
        )));
    }
    *lock(&OPTS) = Some(opts);
    Ok(())
}

/// SPDK `bdev_nvme_check_io_error_resiliency_params`.
fn check_reconnect(loss: i32, delay: u32, fast: u32) -> Result<(), BdevNvmeError> {
    let bad = |m: &str| Err(BdevNvmeError::InvalidArgument(m.into()));
    if loss < -1 {
        return bad("ctrlr_loss_timeout_sec can't be less than -1.");
    }
    if loss == -1 {
        if delay == 0 {
            return bad("reconnect_delay_sec can't be 0 if ctrlr_loss_timeout_sec is not 0.");
        }
        if fast != 0 && fast < delay {
            return bad("reconnect_delay_sec can't be more than fast_io-fail_timeout_sec.");
        }
    } else if loss != 0 {
        let loss = loss as u32;
        if delay == 0 {
            return bad("reconnect_delay_sec can't be 0 if ctrlr_loss_timeout_sec is not 0.");
        }
        if delay > loss {
            return bad("reconnect_delay_sec can't be more than ctrlr_loss_timeout_sec.");
        }
        if fast != 0 && (fast > loss || fast < delay) {
            return bad(
                "fast_io_fail_timeout_sec must be in [reconnect_delay_sec, ctrlr_loss_timeout_sec].",
            );
        }
    } else if delay != 0 || fast != 0 {
        return bad(
            "Both reconnect_delay_sec and fast_io_fail_timeout_sec must be 0 if ctrlr_loss_timeout_sec is 0.",
        );
    }
    Ok(())
}

/// A controller by name.
pub fn controller(name: &str) -> Option<Arc<NvmeCtrlr>> {
    lock(&CTRLRS).get(name).cloned()
}

/// All controllers, by name.
pub fn controllers() -> Vec<Arc<NvmeCtrlr>> {
    lock(&CTRLRS).values().cloned().collect()
}

/// Attach a controller over its transport type's built-in transport; returns the names of
/// the bdevs created. Blocks the calling thread for the whole connect (tests, tools); the
/// RPC uses [`attach_async`].
pub fn attach(params: &AttachParams) -> Result<Vec<String>, BdevNvmeError> {
    let trtype = nvme::host::TrType::parse(&params.trtype)?;
    attach_with_transport(params, transport_for(trtype)?)
}

/// Attach a controller without blocking the current env Thread (SPDK's probe poller): the
/// parameters are checked at once, then the TCP connect, IC exchange, fabrics Connect,
/// enable and Identify commands run on a separate OS thread while a poller on the current
/// Thread waits for them; `done` runs on the current Thread with the names of the bdevs
/// created, or the error. Refused parameters and an attach already in progress under the
/// same name answer before this returns. Without a current Thread the attach runs inline.
pub fn attach_async(
    params: &AttachParams,
    done: impl FnOnce(Result<Vec<String>, BdevNvmeError>) + 'static,
) {
    let transport = nvme::host::TrType::parse(&params.trtype)
        .and_then(transport_for)
        .map_err(BdevNvmeError::from);
    match transport {
        Ok(t) => attach_with_transport_async(params, t, done),
        Err(e) => done(Err(e)),
    }
}

fn refuse(what: &str) -> BdevNvmeError {
    BdevNvmeError::InvalidArgument(format!("{what} is not supported by this nvme bdev module"))
}

fn check_params(p: &AttachParams) -> Result<(), BdevNvmeError> {
    if p.name.is_empty() {
        return Err(BdevNvmeError::InvalidArgument(
            "name must not be empty".into(),
        ));
    }
    let unsupported = [
        (p.priority.is_some(), "priority"),
        (p.hostaddr.is_some(), "hostaddr"),
        (p.hostsvcid.is_some(), "hostsvcid"),
        (p.prchk_reftag, "prchk_reftag"),
        (p.prchk_guard, "prchk_guard"),
        (p.psk.is_some(), "psk (TLS)"),
        (p.dhchap_key.is_some(), "dhchap_key"),
        (p.dhchap_ctrlr_key.is_some(), "dhchap_ctrlr_key"),
        (p.allow_unrecognized_csi, "allow_unrecognized_csi"),
        (p.multipath_opts.is_some(), "multipath_opts"),
        (p.disable_sq_flow_control, "disable_sq_flow_control"),
    ];
    if let Some((_, what)) = unsupported.iter().find(|(given, _)| *given) {
        return Err(refuse(what));
    }
    if let Some(m) = &p.multipath
        && !["disable", "failover", "multipath"].contains(&m.as_str())
    {
        return Err(BdevNvmeError::InvalidArgument(format!(
            "invalid multipath parameter {m:?}"
        )));
    }
    if let Some(n) = p.num_io_queues
        && (n == 0 || n > 65536)
    {
        return Err(BdevNvmeError::InvalidArgument(format!(
            "num_io_queues {n} out of range (0, 65536]"
        )));
    }
    Ok(())
}

fn trid_of(p: &AttachParams) -> Result<TransportId, BdevNvmeError> {
    let mut s = format!("trtype:{} traddr:{}", p.trtype, p.traddr);
    if let Some(a) = &p.adrfam {
        s.push_str(&format!(" adrfam:{a}"));
    }
    if let Some(v) = &p.trsvcid {
        s.push_str(&format!(" trsvcid:{v}"));
    }
    if let Some(n) = &p.subnqn {
        s.push_str(&format!(" subnqn:{n}"));
    }
    if p.traddr.is_empty() || p.traddr.contains(char::is_whitespace) {
        return Err(BdevNvmeError::InvalidArgument(format!(
            "invalid traddr {:?}",
            p.traddr
        )));
    }
    Ok(TransportId::parse(&s)?)
}

/// Longest user-given command or connect timeout accepted, in µs (10 minutes):
/// `fabrics_connect_timeout_us`, `timeout_us` and `timeout_admin_us`. SPDK takes any
/// `uint64` and converts it to ticks with a multiplication that silently wraps; here a larger
/// value is refused with EINVAL so no deadline arithmetic can overflow and an attach to a
/// silent peer ends in bounded time.
pub const MAX_TIMEOUT_US: u64 = 600_000_000;

/// Longest `tcp_connect_timeout_ms` accepted (10 minutes, as [`MAX_TIMEOUT_US`]).
pub const MAX_TCP_CONNECT_TIMEOUT_MS: u32 = 600_000;

fn check_timeout_us(what: &str, us: u64) -> Result<(), BdevNvmeError> {
    if us > MAX_TIMEOUT_US {
        return Err(BdevNvmeError::InvalidArgument(format!(
            "{what} {us} is larger than the maximum {MAX_TIMEOUT_US} (10 minutes)"
        )));
    }
    Ok(())
}

/// Most attaches in progress at once: each holds an OS thread and a connection until its
/// connect finishes or times out, so a client cannot pile up threads with distinct names.
pub const MAX_ATTACHES_IN_PROGRESS: usize = 64;

/// Names of attaches in progress (checked, not yet in `CTRLRS`).
static PENDING: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Bumped when the bdev layer finalizes the module: an attach that started before and
/// finishes after must not add its controller and bdevs to a finalized layer.
static FINI_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The module's finalization (bdev layer fini): attaches still connecting are dropped when
/// they finish, answered with EPERM.
pub(crate) fn module_fini() {
    let pending = lock(&PENDING).len();
    if pending > 0 {
        tracing::warn!(
            pending,
            "bdev_nvme finalized with attaches in progress: they will be dropped"
        );
    }
    FINI_GENERATION.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
}

/// Holds a name in `PENDING` until dropped (attach finished, failed, or its Thread exited).
struct PendingName(String);

impl Drop for PendingName {
    fn drop(&mut self) {
        lock(&PENDING).remove(&self.0);
    }
}

fn attach_in_progress(name: &str) -> bool {
    lock(&PENDING).contains(name)
}

/// What the off-Thread part of an attach needs (all `Send`).
struct ConnectJob {
    transport: Arc<dyn Transport>,
    trid: TransportId,
    opts: ControllerOpts,
    max_bdevs: u32,
}

/// An attach whose parameters were checked; its name is reserved.
struct Prepared {
    params: AttachParams,
    trid: TransportId,
    hostnqn: String,
    io_queue_size: u16,
    reconnect_delay: Option<Duration>,
    _pending: PendingName,
}

/// The controller brought up off-Thread, with what the bdevs need from it.
struct Connected {
    ctrlr: Controller,
    /// Per active namespace: its UUID (NS ID descriptor list, else NGUID).
    uuids: BTreeMap<u32, Option<uuid::Uuid>>,
}

/// Checks the parameters and reserves the name (no I/O).
fn prepare(
    params: &AttachParams,
    transport: Arc<dyn Transport>,
) -> Result<(Prepared, ConnectJob), BdevNvmeError> {
    check_params(params)?;
    let trid = trid_of(params)?;
    let g = options();
    let loss = params
        .ctrlr_loss_timeout_sec
        .unwrap_or(g.ctrlr_loss_timeout_sec);
    let delay = params.reconnect_delay_sec.unwrap_or(g.reconnect_delay_sec);
    let fast = params
        .fast_io_fail_timeout_sec
        .unwrap_or(g.fast_io_fail_timeout_sec);
    check_reconnect(loss, delay, fast)?;
    let mut opts = ControllerOpts {
        keep_alive_timeout_ms: g.keep_alive_timeout_ms,
        header_digest: params.hdgst,
        data_digest: params.ddgst,
        ..Default::default()
    };
    if let Some(h) = &params.hostnqn {
        nvme::spec::nqn::validate_nqn(h)
            .map_err(|e| BdevNvmeError::InvalidArgument(e.to_string()))?;
        opts.hostnqn.clone_from(h);
    }
    if let Some(n) = params.num_io_queues {
        opts.num_io_queues = u16::try_from(n).unwrap_or(u16::MAX);
    }
    if g.io_queue_requests > 0 {
        opts.io_queue_size = u16::try_from(g.io_queue_requests).unwrap_or(u16::MAX);
    }
    if g.timeout_us > 0 {
        opts.io_timeout = Some(Duration::from_micros(g.timeout_us.min(MAX_TIMEOUT_US)));
    }
    let admin_us = if g.timeout_admin_us > 0 {
        g.timeout_admin_us
    } else {
        g.timeout_us
    };
    if admin_us > 0 {
        opts.admin_timeout = Duration::from_micros(admin_us.min(MAX_TIMEOUT_US));
    }
    if let Some(us) = params.fabrics_connect_timeout_us.filter(|&u| u > 0) {
        check_timeout_us("fabrics_connect_timeout_us", us)?;
        opts.transport_connect_timeout = Duration::from_micros(us);
    } else if g.tcp_connect_timeout_ms > 0 {
        let ms = g.tcp_connect_timeout_ms.min(MAX_TCP_CONNECT_TIMEOUT_MS);
        opts.transport_connect_timeout = Duration::from_millis(u64::from(ms));
    }
    if controller(&params.name).is_some() {
        return Err(BdevNvmeError::Exists(params.name.clone()));
    }
    let pending = {
        let mut p = lock(&PENDING);
        if p.contains(&params.name) {
            return Err(BdevNvmeError::AttachInProgress(params.name.clone()));
        }
        if p.len() >= MAX_ATTACHES_IN_PROGRESS {
            return Err(BdevNvmeError::TooManyAttaches(MAX_ATTACHES_IN_PROGRESS));
        }
        p.insert(params.name.clone());
        PendingName(params.name.clone())
    };
    let prep = Prepared {
        params: params.clone(),
        trid: trid.clone(),
        hostnqn: opts.hostnqn.clone(),
        io_queue_size: opts.io_queue_size,
        reconnect_delay: (delay > 0).then(|| Duration::from_secs(u64::from(delay))),
        _pending: pending,
    };
    let job = ConnectJob {
        transport,
        trid,
        opts,
        max_bdevs: params.max_bdevs.unwrap_or(DEFAULT_MAX_BDEVS),
    };
    Ok((prep, job))
}

/// The blocking part: connect, bring up, identify (any OS thread).
fn connect(job: ConnectJob) -> Result<Connected, BdevNvmeError> {
    let mut c = Controller::connect_with(job.transport, &job.trid, job.opts)?;
    if c.is_discovery() {
        return Err(BdevNvmeError::InvalidArgument(format!(
            "{} is a discovery subsystem; attach an NVM subsystem",
            job.trid.subnqn
        )));
    }
    let nss: Vec<(u32, [u8; 16])> = c.namespaces().map(|n| (n.id(), n.data().nguid)).collect();
    if nss.len() > job.max_bdevs as usize {
        return Err(BdevNvmeError::InvalidArgument(format!(
            "max_bdevs ({}) is smaller than the {} namespaces",
            job.max_bdevs,
            nss.len()
        )));
    }
    let uuids = nss
        .into_iter()
        .map(|(id, nguid)| (id, namespace_uuid(&mut c, id, nguid)))
        .collect();
    Ok(Connected { ctrlr: c, uuids })
}

/// The Thread part: the controller joins the module and its bdevs are registered.
fn finish(prep: Prepared, conn: Connected) -> Result<Vec<String>, BdevNvmeError> {
    let Prepared {
        params,
        trid,
        hostnqn,
        io_queue_size,
        reconnect_delay,
        _pending,
    } = prep;
    let c = conn.ctrlr;
    let write_cache = c.data().vwc & VWC_PRESENT != 0;
    let max_xfer = c.max_xfer_size();
    let nss: Vec<_> = c.namespaces().cloned().collect();
    let nc = Arc::new(NvmeCtrlr {
        name: params.name.clone(),
        params: params.clone(),
        trid,
        hostnqn,
        ctrlr: Mutex::new(c),
        bdevs: Mutex::new(Vec::new()),
        io_queue_size,
        reconnect_delay,
    });
    {
        let mut map = lock(&CTRLRS);
        if map.contains_key(&params.name) {
            return Err(BdevNvmeError::Exists(params.name.clone()));
        }
        map.insert(params.name.clone(), Arc::clone(&nc));
    }
    drop(_pending);
    let mut names = Vec::new();
    for ns in &nss {
        let name = format!("{}n{}", params.name, ns.id());
        let mut props = BdevProps::new(&name, ns.block_size(), ns.num_blocks());
        props.product_name = PRODUCT_NAME.into();
        props.write_cache = write_cache;
        props.optimal_io_boundary = u32::from(ns.data().noiob.get());
        props.uuid = conn.uuids.get(&ns.id()).copied().flatten();
        let max_blocks = max_xfer
            .map(|m| u64::from(m / ns.block_size().max(1)))
            .unwrap_or(u64::MAX)
            .clamp(1, 0x1_0000);
        let ops = Arc::new(NvmeBdev::new(
            Arc::clone(&nc),
            ns.id(),
            ns.block_size(),
            max_blocks,
        ));
        match register_bdev(MODULE_NAME, props, ops) {
            Ok(b) => names.push(b.name().to_string()),
            Err(e) => {
                tracing::error!(bdev = %name, error = %e, "cannot register NVMe bdev");
                *lock(&nc.bdevs) = names.clone();
                let _ = detach(&params.name, |_| {});
                return Err(e.into());
            }
        }
    }
    *lock(&nc.bdevs) = names.clone();
    start_admin_poller(&nc);
    tracing::info!(ctrlr = %params.name, bdevs = ?names, "NVMe controller attached");
    Ok(names)
}

/// Attach over a given transport (other transports, tests), blocking. See [`attach`].
pub fn attach_with_transport(
    params: &AttachParams,
    transport: Arc<dyn Transport>,
) -> Result<Vec<String>, BdevNvmeError> {
    let (prep, job) = prepare(params, transport)?;
    let conn = connect(job)?;
    finish(prep, conn)
}

/// How often the poller of an attach in progress looks for its result (SPDK's probe poller
/// runs every 1 ms).
const ATTACH_POLL_PERIOD: Duration = Duration::from_millis(1);

/// [`attach_async`] over a given transport.
pub fn attach_with_transport_async(
    params: &AttachParams,
    transport: Arc<dyn Transport>,
    done: impl FnOnce(Result<Vec<String>, BdevNvmeError>) + 'static,
) {
    let (prep, job) = match prepare(params, transport) {
        Ok(x) => x,
        Err(e) => return done(Err(e)),
    };
    if env::Thread::current().is_none() {
        return done(connect(job).and_then(|c| finish(prep, c)));
    }
    let name = params.name.clone();
    let slot: Arc<Mutex<Option<Result<Connected, BdevNvmeError>>>> = Arc::default();
    let worker_slot = Arc::clone(&slot);
    let spawned = std::thread::Builder::new()
        .name(format!("nvme-attach-{name}"))
        .spawn(move || {
            let r = connect(job);
            *lock(&worker_slot) = Some(r);
        });
    if let Err(e) = spawned {
        return done(Err(BdevNvmeError::Host(nvme::host::HostError::Io {
            op: "spawn attach thread",
            msg: e.to_string(),
        })));
    }
    tracing::info!(ctrlr = %name, "NVMe controller attach started");
    let me: Rc<RefCell<Option<env::Poller>>> = Rc::default();
    let me2 = Rc::clone(&me);
    let mut state = Some((prep, done));
    let generation = FINI_GENERATION.load(std::sync::atomic::Ordering::Acquire);
    let f = move || {
        let Some(r) = lock(&slot).take() else {
            return env::PollStatus::Idle;
        };
        me2.borrow_mut().take();
        if let Some((prep, done)) = state.take() {
            if FINI_GENERATION.load(std::sync::atomic::Ordering::Acquire) == generation {
                done(r.and_then(|c| finish(prep, c)));
            } else {
                // Dropping the connected controller disconnects it; dropping `prep` frees
                // the name.
                drop(r);
                let name = prep.params.name.clone();
                drop(prep);
                tracing::error!(ctrlr = %name, "attach finished after bdev_nvme was finalized; dropped");
                done(Err(BdevNvmeError::NotPermitted(format!(
                    "bdev_nvme was finalized while controller {name} was being attached"
                ))));
            }
        }
        env::PollStatus::Busy
    };
    // If the Thread exits before the connect finishes, the poller (which owns the reserved
    // name and the `done` callback) is never run again: the name stays reserved until the
    // process ends, which is what follows a Thread exit in the app.
    match env::poller_register_periodic(f, ATTACH_POLL_PERIOD) {
        Ok(p) => *me.borrow_mut() = Some(p),
        Err(e) => {
            // Only without a current Thread, which was checked above; the worker's result
            // is dropped with the poller (the controller disconnects).
            tracing::error!(ctrlr = %name, error = %e, "cannot poll the attach in progress");
        }
    }
}

fn namespace_uuid(c: &mut Controller, nsid: u32, nguid: [u8; 16]) -> Option<uuid::Uuid> {
    let descs = c
        .identify(Cns::NS_ID_DESCRIPTOR_LIST, nsid)
        .ok()
        .and_then(|b| NsIdDescriptor::parse_list(&b).ok())
        .unwrap_or_default();
    descs
        .iter()
        .find_map(|d| match d {
            NsIdDescriptor::Uuid(u) => Some(uuid::Uuid::from_bytes(*u)),
            _ => None,
        })
        .or_else(|| (nguid != [0; 16]).then(|| uuid::Uuid::from_bytes(nguid)))
}

fn start_admin_poller(nc: &Arc<NvmeCtrlr>) {
    let period = Duration::from_micros(options().nvme_adminq_poll_period_us.max(1000));
    let weak = Arc::downgrade(nc);
    let mut next_reconnect: Option<Instant> = None;
    let f = move || {
        let Some(nc) = weak.upgrade() else {
            return env::PollStatus::Idle;
        };
        let mut c = nc.lock();
        match c.process_admin_completions() {
            Ok(n) => env::PollStatus::from_busy(n > 0),
            Err(e) => {
                let Some(delay) = nc.reconnect_delay() else {
                    return env::PollStatus::Idle;
                };
                let now = Instant::now();
                if next_reconnect.is_none_or(|t| now >= t) {
                    tracing::warn!(ctrlr = %nc.name, error = %e, "admin queue failed; resetting controller");
                    if let Err(e) = c.reset() {
                        tracing::error!(ctrlr = %nc.name, error = %e, "controller reset failed");
                    }
                    next_reconnect = Some(now + delay);
                    return env::PollStatus::Busy;
                }
                env::PollStatus::Idle
            }
        }
    };
    match env::poller_register_periodic(f, period) {
        Ok(p) => ADMIN_POLLERS.with(|m| {
            m.borrow_mut().insert(nc.name.clone(), p);
        }),
        Err(e) => tracing::warn!(
            ctrlr = %nc.name,
            error = %e,
            "no env Thread: the admin queue (keep-alive) is not polled"
        ),
    }
}

/// Detach a controller (SPDK `bdev_nvme_delete`): unregister its bdevs, then shut the
/// controller down and drop it. `done` runs on the calling Thread when every bdev is gone.
pub fn detach(
    name: &str,
    done: impl FnOnce(Result<(), BdevNvmeError>) + 'static,
) -> Result<(), BdevNvmeError> {
    let Some(nc) = lock(&CTRLRS).remove(name) else {
        if attach_in_progress(name) {
            return Err(BdevNvmeError::AttachInProgress(name.to_string()));
        }
        return Err(BdevNvmeError::NotFound(name.to_string()));
    };
    ADMIN_POLLERS.with(|m| m.borrow_mut().remove(name));
    let names = nc.bdev_names();
    let finish = move |nc: Arc<NvmeCtrlr>| {
        if let Err(e) = nc.lock().shutdown() {
            tracing::warn!(ctrlr = %nc.name, error = %e, "controller shutdown failed");
        }
        tracing::info!(ctrlr = %nc.name, "NVMe controller detached");
    };
    if names.is_empty() {
        finish(nc);
        done(Ok(()));
        return Ok(());
    }
    let left = Rc::new(RefCell::new((names.len(), Some(done), Some(nc))));
    for b in names {
        let l = Rc::clone(&left);
        let bname = b.clone();
        let r = bdev::unregister(&b, Some(MODULE_NAME), move |res| {
            if let Err(e) = res {
                tracing::warn!(bdev = %bname, error = %e, "bdev unregister reported an error");
            }
            let mut st = l.borrow_mut();
            st.0 -= 1;
            if st.0 == 0 {
                if let Some(nc) = st.2.take() {
                    finish(nc);
                }
                if let Some(d) = st.1.take() {
                    d(Ok(()));
                }
            }
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "bdev of a detached controller was already gone");
            let mut st = left.borrow_mut();
            st.0 -= 1;
            if st.0 == 0 {
                if let Some(nc) = st.2.take() {
                    finish(nc);
                }
                if let Some(d) = st.1.take() {
                    d(Ok(()));
                }
            }
        }
    }
    Ok(())
}

/// SPDK's default hotplug poll period (100 ms).
const DEFAULT_HOTPLUG_PERIOD_US: u64 = 100_000;
static HOTPLUG_PERIOD_US: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_HOTPLUG_PERIOD_US);

/// Records the hotplug poll period given to `bdev_nvme_set_hotplug`.
pub(crate) fn set_hotplug_period_us(us: u64) {
    HOTPLUG_PERIOD_US.store(us, std::sync::atomic::Ordering::Relaxed);
}

/// The module's configuration: `bdev_nvme_set_options`, `bdev_nvme_set_hotplug` (always
/// disabled: no PCIe driver), then one `bdev_nvme_attach_controller` per controller.
pub(crate) fn config_json() -> Vec<Value> {
    let mut v = vec![
        json!({"method": "bdev_nvme_set_options", "params": options()}),
        json!({"method": "bdev_nvme_set_hotplug", "params": {
            "period_us": HOTPLUG_PERIOD_US.load(std::sync::atomic::Ordering::Relaxed),
            "enable": false,
        }}),
    ];
    for c in controllers() {
        let mut p = c.params.clone();
        p.hostnqn = Some(c.hostnqn.clone());
        v.push(json!({"method": "bdev_nvme_attach_controller", "params": p}));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_parameters_follow_spdk_rules() {
        assert!(check_reconnect(0, 0, 0).is_ok());
        assert!(check_reconnect(-1, 1, 0).is_ok());
        assert!(check_reconnect(10, 2, 5).is_ok());
        let e = |l, d, f| check_reconnect(l, d, f).unwrap_err().to_string();
        assert_eq!(e(-2, 0, 0), "ctrlr_loss_timeout_sec can't be less than -1.");
        assert_eq!(
            e(-1, 0, 0),
            "reconnect_delay_sec can't be 0 if ctrlr_loss_timeout_sec is not 0."
        );
        assert_eq!(
            e(5, 10, 0),
            "reconnect_delay_sec can't be more than ctrlr_loss_timeout_sec."
        );
        assert_eq!(
            e(0, 1, 0),
            "Both reconnect_delay_sec and fast_io_fail_timeout_sec must be 0 if ctrlr_loss_timeout_sec is 0."
        );
    }

    #[test]
    fn unsupported_attach_parameters_are_refused_not_ignored() {
        let base = AttachParams {
            name: "Nvme9".into(),
            trtype: "TCP".into(),
            traddr: "127.0.0.1".into(),
            ..Default::default()
        };
        let p = AttachParams {
            psk: Some("key0".into()),
            ..base.clone()
        };
        assert_eq!(
            check_params(&p).unwrap_err().to_string(),
            "psk (TLS) is not supported by this nvme bdev module"
        );
        let p = AttachParams {
            num_io_queues: Some(0),
            ..base.clone()
        };
        assert_eq!(
            check_params(&p).unwrap_err().to_string(),
            "num_io_queues 0 out of range (0, 65536]"
        );
        assert!(check_params(&base).is_ok());
        let bad = AttachParams {
            traddr: "not an ip".into(),
            ..base
        };
        assert!(matches!(
            trid_of(&bad).unwrap_err(),
            BdevNvmeError::InvalidArgument(_)
        ));
    }
}
