//! Controller, namespaces and I/O queue pairs (SPDK `nvme_ctrlr.c`, `nvme_ns.c`,
//! `nvme_ns_cmd.c`, `nvme_fabric.c`, `nvme_discovery.c`).
//!
//! Bring-up, in SPDK's order: admin qpair (transport connect + fabrics Connect with KATO) ->
//! Property Get CAP/VS -> Property Set CC.EN=1 -> wait CSTS.RDY (CAP.TO) -> Identify
//! Controller -> (I/O controllers) Set Features Number of Queues -> Identify Active NS List ->
//! Identify Namespace for each. All setup commands are synchronous (polled); I/O is not.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zerocopy::FromBytes;

use super::qpair::{Completion, ConnectArgs, Qpair, Rejected};
use super::tcp::TcpTransport;
use super::transport::{Payload, QpairParams, Transport};
use super::{HostError, TrType, TransportId};
use crate::spec::discovery::{DISCOVERY_RECORD_SIZE, DiscoveryLogEntry, DiscoveryLogHeader};
use crate::spec::fabrics::{CNTLID_DYNAMIC, PropertyGetCmd, PropertySetCmd};
use crate::spec::features::{
    AEC_ANA_CHANGE_NOTICE, AEC_CRIT_WARN_NVME13, AEC_FW_ACTIVATION_NOTICE, AEC_NS_ATTR_NOTICE, Fid,
    NumberOfQueues, SetFeaturesArgs,
};
use crate::spec::identify::{
    CNTRLTYPE_DISCOVERY, Cns, IDENTIFY_DATA_SIZE, IdentifyArgs, IdentifyController,
    IdentifyNamespace, NsList,
};
use crate::spec::io::{DatasetManagement, DsmRange, ReadWrite};
use crate::spec::log::{AsyncEvent, AsyncEventType, GetLogPageArgs, Lid, NoticeInfo};
use crate::spec::opcode::{AdminOpcode, NvmOpcode};
use crate::spec::props::{Cap, Cc, Csts, PropertyOffset, PropertySize, Vs};
use crate::spec::sqe::Sqe;
use zerocopy::IntoBytes;

/// Controller options (SPDK `struct spdk_nvme_ctrlr_opts`, with its defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerOpts {
    /// Host NQN (default: `nqn.2014-08.org.nvmexpress:uuid:<hostid>`).
    pub hostnqn: String,
    /// Host identifier.
    pub hostid: [u8; 16],
    /// Keep-alive timeout in ms (SPDK default 10000; 0 disables keep-alive).
    pub keep_alive_timeout_ms: u32,
    /// Admin queue entries (SPDK default 32).
    pub admin_queue_size: u16,
    /// I/O queues to ask for with Set Features Number of Queues (SPDK default 1024).
    pub num_io_queues: u16,
    /// Default I/O queue entries (SPDK default 128 for fabrics).
    pub io_queue_size: u16,
    /// Ask for NVMe/TCP header digests.
    pub header_digest: bool,
    /// Ask for NVMe/TCP data digests.
    pub data_digest: bool,
    /// Time to open a transport connection.
    pub transport_connect_timeout: Duration,
    /// Time allowed for each admin command.
    pub admin_timeout: Duration,
    /// I/O command timeout (None: no timeout); an expired command fails its qpair.
    pub io_timeout: Option<Duration>,
}

impl Default for ControllerOpts {
    fn default() -> Self {
        let hostid = random_hostid();
        ControllerOpts {
            hostnqn: format!("nqn.2014-08.org.nvmexpress:uuid:{}", uuid_string(&hostid)),
            hostid,
            keep_alive_timeout_ms: 10_000,
            admin_queue_size: 32,
            num_io_queues: 1024,
            io_queue_size: 128,
            header_digest: false,
            data_digest: false,
            transport_connect_timeout: Duration::from_secs(5),
            admin_timeout: Duration::from_secs(10),
            io_timeout: None,
        }
    }
}

/// A version-4 style UUID string of 16 bytes.
pub fn uuid_string(b: &[u8; 16]) -> String {
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

fn random_hostid() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for half in out.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.write_u32(std::process::id());
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    out[6] = (out[6] & 0x0f) | 0x40;
    out[8] = (out[8] & 0x3f) | 0x80;
    out
}

/// A namespace with validated geometry (SPDK `struct spdk_nvme_ns`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    id: u32,
    block_size: u32,
    md_size: u16,
    num_blocks: u64,
    data: Box<IdentifyNamespace>,
}

impl Namespace {
    /// Validate Identify Namespace data: NLBAF <= 63, the formatted LBA format within
    /// NLBAF, LBADS in 9..=31, NSZE >= NCAP >= NUSE.
    pub fn from_identify(id: u32, data: IdentifyNamespace) -> Result<Self, HostError> {
        let bad = |m: String| HostError::BadIdentify(format!("namespace {id}: {m}"));
        if data.nlbaf > 63 {
            return Err(bad(format!("NLBAF {} > 63", data.nlbaf)));
        }
        let idx = data.lba_format_index();
        if idx > usize::from(data.nlbaf) {
            return Err(bad(format!(
                "formatted LBA format {idx} beyond NLBAF {}",
                data.nlbaf
            )));
        }
        let lbaf = data.lba_format();
        let block_size = data
            .block_size()
            .ok_or_else(|| bad(format!("LBADS {} outside 9..=31", lbaf.lbads)))?;
        let (nsze, ncap) = (data.nsze.get(), data.ncap.get());
        if ncap > nsze {
            return Err(bad(format!("NCAP {ncap} > NSZE {nsze}")));
        }
        Ok(Namespace {
            id,
            block_size,
            md_size: lbaf.ms.get(),
            num_blocks: nsze,
            data: Box::new(data),
        })
    }

    /// Namespace ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Logical block size in bytes (data only).
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Metadata bytes per block.
    pub fn md_size(&self) -> u16 {
        self.md_size
    }

    /// Size in blocks (NSZE).
    pub fn num_blocks(&self) -> u64 {
        self.num_blocks
    }

    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.num_blocks.saturating_mul(u64::from(self.block_size))
    }

    /// The raw Identify Namespace data.
    pub fn data(&self) -> &IdentifyNamespace {
        &self.data
    }
}

/// A discovery log page (header and entries, SPDK `spdk_nvmf_discovery_log_page`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryLog {
    /// Generation counter.
    pub genctr: u64,
    /// Record format.
    pub recfmt: u16,
    /// The entries (as many as NUMREC said, up to [`MAX_DISCOVERY_RECORDS`]).
    pub entries: Vec<DiscoveryLogEntry>,
}

/// Most discovery records this host reads (a lying NUMREC cannot make it allocate more).
pub const MAX_DISCOVERY_RECORDS: u64 = 1024;
/// Largest Get Log Page transfer per command.
const LOG_CHUNK: u32 = 4096;

/// A connected, enabled NVMe-oF controller. Owns the admin queue; I/O queue pairs are
/// handed out by [`Controller::alloc_io_qpair`] and may move to other threads.
pub struct Controller {
    trid: TransportId,
    opts: ControllerOpts,
    transport: Arc<dyn Transport>,
    admin: Qpair,
    cntlid: u16,
    cap: Cap,
    vs: Vs,
    cdata: Box<IdentifyController>,
    namespaces: BTreeMap<u32, Namespace>,
    io_queues_granted: u16,
    next_qid: u16,
    free_qids: Vec<u16>,
    kato: Option<Duration>,
    last_keep_alive: Instant,
    keep_alive_pending: bool,
    admin_done: Vec<Completion>,
    aers_outstanding: u32,
    events: Vec<AsyncEvent>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("trid", &self.trid)
            .field("cntlid", &self.cntlid)
            .finish()
    }
}

const KEEP_ALIVE_TAG: u64 = 0x4b41;
const AER_TAG: u64 = 0x4145;
/// Most Asynchronous Event Requests kept outstanding.
const MAX_AERS: u32 = 4;

/// A transport for `trtype`.
pub fn transport_for(trtype: TrType) -> Result<Arc<dyn Transport>, HostError> {
    match trtype {
        TrType::Tcp => Ok(Arc::new(TcpTransport)),
        TrType::Rdma => Err(HostError::Unsupported("RDMA transport in the host driver")),
        TrType::Pcie => Err(HostError::Unsupported("PCIe transport in the host driver")),
    }
}

impl Controller {
    /// Connect to the controller at `trid` and bring it up (SPDK `spdk_nvme_connect`).
    pub fn connect(trid: &TransportId, opts: ControllerOpts) -> Result<Self, HostError> {
        Self::connect_with(transport_for(trid.trtype)?, trid, opts)
    }

    /// Connect over a given transport.
    pub fn connect_with(
        transport: Arc<dyn Transport>,
        trid: &TransportId,
        mut opts: ControllerOpts,
    ) -> Result<Self, HostError> {
        trid.validate()?;
        if let Some(h) = &trid.hostnqn {
            opts.hostnqn.clone_from(h);
        }
        if trid.is_discovery() {
            opts.keep_alive_timeout_ms = 0;
        }
        let (admin, cntlid) = Self::connect_admin(transport.as_ref(), trid, &opts)?;
        let mut c = Controller {
            trid: trid.clone(),
            transport,
            admin,
            cntlid,
            cap: Cap::default(),
            vs: Vs::default(),
            cdata: Box::default(),
            namespaces: BTreeMap::new(),
            io_queues_granted: 0,
            next_qid: 1,
            free_qids: Vec::new(),
            kato: (opts.keep_alive_timeout_ms > 0)
                .then(|| Duration::from_millis(u64::from(opts.keep_alive_timeout_ms))),
            last_keep_alive: Instant::now(),
            keep_alive_pending: false,
            admin_done: Vec::new(),
            aers_outstanding: 0,
            events: Vec::new(),
            opts,
        };
        c.init()?;
        Ok(c)
    }

    fn connect_admin(
        transport: &dyn Transport,
        trid: &TransportId,
        opts: &ControllerOpts,
    ) -> Result<(Qpair, u16), HostError> {
        let params = QpairParams {
            qid: 0,
            queue_size: opts.admin_queue_size.max(2),
            hdgst: opts.header_digest,
            ddgst: opts.data_digest,
            connect_timeout: opts.transport_connect_timeout,
        };
        let conn = ConnectArgs {
            hostnqn: &opts.hostnqn,
            hostid: opts.hostid,
            cntlid: CNTLID_DYNAMIC,
            kato_ms: opts.keep_alive_timeout_ms,
        };
        Qpair::connect(transport, trid, &params, &conn)
    }

    fn init(&mut self) -> Result<(), HostError> {
        self.cap = Cap(self.property_get(PropertyOffset::CAP, PropertySize::Eight)?);
        self.vs = Vs(self.property_get(PropertyOffset::VS, PropertySize::Four)? as u32);
        self.enable()?;
        let buf = self.identify(Cns::CONTROLLER, 0)?;
        let cdata = IdentifyController::read_from_bytes(&buf)
            .map_err(|_| HostError::BadIdentify("short Identify Controller data".into()))?;
        *self.cdata = cdata;
        if self.is_discovery() {
            return Ok(());
        }
        let ioccsz = self.cdata.ioccsz.get();
        if ioccsz < 4 {
            return Err(HostError::BadIdentify(format!("IOCCSZ {ioccsz} < 4")));
        }
        self.set_num_queues()?;
        self.refresh_namespaces()?;
        self.configure_aer();
        Ok(())
    }

    /// Enable the notices the controller supports (Set Features Asynchronous Event
    /// Configuration) and arm Asynchronous Event Requests (SPDK `nvme_ctrlr_configure_aer`).
    fn configure_aer(&mut self) {
        let oaes = self.cdata.oaes.get();
        let aec = AEC_CRIT_WARN_NVME13
            | (oaes & (AEC_NS_ATTR_NOTICE | AEC_FW_ACTIVATION_NOTICE | AEC_ANA_CHANGE_NOTICE));
        if let Err(e) = self.set_features(Fid::ASYNC_EVENT_CONFIGURATION, aec) {
            tracing::warn!(error = %e, "Set Features Asynchronous Event Configuration failed");
        }
        self.aers_outstanding = 0;
        let n = (u32::from(self.cdata.aerl) + 1).min(MAX_AERS);
        for _ in 0..n {
            let sqe = Sqe::new(AdminOpcode::ASYNC_EVENT_REQUEST.0, 0);
            match self.admin.submit(sqe, Payload::None, AER_TAG) {
                Ok(_) => self.aers_outstanding += 1,
                Err(r) => {
                    tracing::warn!(error = %r.error, "cannot submit Asynchronous Event Request");
                    break;
                }
            }
        }
    }

    /// Asynchronous events received since the last call (namespace changes have already
    /// been applied to [`Controller::namespaces`]).
    pub fn take_async_events(&mut self) -> Vec<AsyncEvent> {
        std::mem::take(&mut self.events)
    }

    fn on_aer(&mut self, c: &Completion) -> bool {
        self.aers_outstanding = self.aers_outstanding.saturating_sub(1);
        if !c.is_success() {
            // Aborted (qpair failure/reset) or refused: do not re-arm.
            tracing::debug!(status = %c.status, "Asynchronous Event Request completed with error");
            return false;
        }
        let ev = AsyncEvent::from_dw0(c.dw0);
        tracing::info!(?ev, "asynchronous event");
        self.events.push(ev);
        let sqe = Sqe::new(AdminOpcode::ASYNC_EVENT_REQUEST.0, 0);
        if self.admin.submit(sqe, Payload::None, AER_TAG).is_ok() {
            self.aers_outstanding += 1;
        }
        ev.event_type == AsyncEventType::NOTICE && ev.info == NoticeInfo::NS_ATTR_CHANGED.0
    }

    fn enable(&mut self) -> Result<(), HostError> {
        let csts = Csts(self.property_get(PropertyOffset::CSTS, PropertySize::Four)? as u32);
        if csts.cfs() == 1 {
            return Err(HostError::Failed(
                "controller fatal status (CSTS.CFS) set".into(),
            ));
        }
        let cc = Cc(0).with_en(1).with_iosqes(6).with_iocqes(4).with_css(0);
        self.property_set(PropertyOffset::CC, PropertySize::Four, u64::from(cc.0))?;
        // CAP.TO is in 500 ms units; SPDK waits that long for CSTS.RDY.
        let to = Duration::from_millis(500 * u64::from(self.cap.to().max(1)));
        let deadline = Instant::now() + to.min(Duration::from_secs(60));
        loop {
            let csts = Csts(self.property_get(PropertyOffset::CSTS, PropertySize::Four)? as u32);
            if csts.cfs() == 1 {
                return Err(HostError::Failed("CSTS.CFS set while enabling".into()));
            }
            if csts.rdy() == 1 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HostError::Timeout("CSTS.RDY after CC.EN=1"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn set_num_queues(&mut self) -> Result<(), HostError> {
        let want = self.opts.num_io_queues.max(1) - 1;
        let mut sqe = Sqe::new(AdminOpcode::SET_FEATURES.0, 0);
        SetFeaturesArgs {
            fid: Fid::NUMBER_OF_QUEUES,
            cdw11: NumberOfQueues {
                nsqr: want,
                ncqr: want,
            }
            .to_dw(),
            ..Default::default()
        }
        .apply(&mut sqe);
        let (cqe, _) = self.admin_cmd(sqe, Payload::None, "Set Features Number of Queues")?;
        let granted = NumberOfQueues::from_dw(cqe.dw0.get());
        self.io_queues_granted = granted.nsqr.min(granted.ncqr).saturating_add(1);
        Ok(())
    }

    /// Re-read the active namespace list and every namespace's Identify data.
    pub fn refresh_namespaces(&mut self) -> Result<(), HostError> {
        let buf = self.identify(Cns::ACTIVE_NS_LIST, 0)?;
        let list = NsList::read_from_bytes(&buf)
            .map_err(|_| HostError::BadIdentify("short active namespace list".into()))?;
        let nn = self.cdata.nn.get();
        let mut nss = BTreeMap::new();
        let mut prev = 0u32;
        for nsid in list.iter() {
            if nsid <= prev || nsid == u32::MAX || (nn != 0 && nsid > nn) {
                return Err(HostError::BadIdentify(format!(
                    "active namespace list entry {nsid} out of order or beyond NN {nn}"
                )));
            }
            prev = nsid;
            let data = self.identify(Cns::NAMESPACE, nsid)?;
            let ns = IdentifyNamespace::read_from_bytes(&data)
                .map_err(|_| HostError::BadIdentify("short Identify Namespace data".into()))?;
            if ns.nsze.get() == 0 {
                continue; // inactive
            }
            nss.insert(nsid, Namespace::from_identify(nsid, ns)?);
        }
        self.namespaces = nss;
        Ok(())
    }

    /// Transport ID.
    pub fn trid(&self) -> &TransportId {
        &self.trid
    }

    /// Options in force.
    pub fn opts(&self) -> &ControllerOpts {
        &self.opts
    }

    /// Controller ID assigned by the target.
    pub fn cntlid(&self) -> u16 {
        self.cntlid
    }

    /// CAP property.
    pub fn cap(&self) -> Cap {
        self.cap
    }

    /// VS property.
    pub fn vs(&self) -> Vs {
        self.vs
    }

    /// Identify Controller data.
    pub fn data(&self) -> &IdentifyController {
        &self.cdata
    }

    /// True for a discovery controller.
    pub fn is_discovery(&self) -> bool {
        self.cdata.cntrltype == CNTRLTYPE_DISCOVERY || self.trid.is_discovery()
    }

    /// I/O queues the controller granted.
    pub fn io_queues_granted(&self) -> u16 {
        self.io_queues_granted
    }

    /// Active namespaces, by ID.
    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.namespaces.values()
    }

    /// One active namespace.
    pub fn namespace(&self, nsid: u32) -> Option<&Namespace> {
        self.namespaces.get(&nsid)
    }

    /// Largest data transfer in bytes (MDTS with 4 KiB pages; `None`: no limit).
    pub fn max_xfer_size(&self) -> Option<u32> {
        let mdts = self.cdata.mdts;
        let mps = 12 + u32::from(self.cap.mpsmin());
        (mdts != 0).then(|| 1u32.checked_shl(u32::from(mdts) + mps).unwrap_or(u32::MAX))
    }

    /// Run an admin command synchronously (setup paths). Fails on an error status.
    pub fn admin_cmd(
        &mut self,
        sqe: Sqe,
        payload: Payload,
        what: &'static str,
    ) -> Result<(crate::spec::cqe::Cqe, Vec<u8>), HostError> {
        let t = self.opts.admin_timeout;
        self.admin.execute(sqe, payload, t, what)
    }

    /// Property Get.
    pub fn property_get(
        &mut self,
        ofst: PropertyOffset,
        size: PropertySize,
    ) -> Result<u64, HostError> {
        let sqe = PropertyGetCmd::new(0, size, ofst).to_sqe();
        let (cqe, _) = self.admin_cmd(sqe, Payload::None, "Property Get")?;
        Ok(match size {
            PropertySize::Four => u64::from(cqe.dw0.get()),
            PropertySize::Eight => cqe.dw01(),
        })
    }

    /// Property Set.
    pub fn property_set(
        &mut self,
        ofst: PropertyOffset,
        size: PropertySize,
        value: u64,
    ) -> Result<(), HostError> {
        let sqe = PropertySetCmd::new(0, size, ofst, value).to_sqe();
        self.admin_cmd(sqe, Payload::None, "Property Set")?;
        Ok(())
    }

    /// Identify with `cns` for `nsid`; returns the 4096-byte data.
    pub fn identify(&mut self, cns: Cns, nsid: u32) -> Result<Vec<u8>, HostError> {
        let mut sqe = Sqe::new(AdminOpcode::IDENTIFY.0, 0);
        sqe.nsid = nsid.into();
        IdentifyArgs {
            cns,
            ..Default::default()
        }
        .apply(&mut sqe);
        let (_, buf) = self.admin_cmd(
            sqe,
            Payload::FromCtrl(vec![0; IDENTIFY_DATA_SIZE]),
            "Identify",
        )?;
        Ok(buf)
    }

    /// Get Log Page: `len` bytes (a multiple of 4) at `offset`, split into 4 KiB commands.
    pub fn get_log_page(
        &mut self,
        lid: Lid,
        nsid: u32,
        len: u32,
        offset: u64,
    ) -> Result<Vec<u8>, HostError> {
        let mut out = Vec::with_capacity(len as usize);
        let mut done = 0u32;
        while done < len {
            let n = (len - done).min(LOG_CHUNK);
            let mut sqe = Sqe::new(AdminOpcode::GET_LOG_PAGE.0, 0);
            sqe.nsid = nsid.into();
            GetLogPageArgs::new(lid, n, offset + u64::from(done)).apply(&mut sqe);
            let (_, buf) =
                self.admin_cmd(sqe, Payload::FromCtrl(vec![0; n as usize]), "Get Log Page")?;
            out.extend_from_slice(&buf);
            done += n;
        }
        Ok(out)
    }

    /// Get Features (current value); returns CQE DW0.
    pub fn get_features(&mut self, fid: Fid, cdw11: u32) -> Result<u32, HostError> {
        let mut sqe = Sqe::new(AdminOpcode::GET_FEATURES.0, 0);
        sqe.cdw10 = u32::from(fid.0).into();
        sqe.cdw11 = cdw11.into();
        let (cqe, _) = self.admin_cmd(sqe, Payload::None, "Get Features")?;
        Ok(cqe.dw0.get())
    }

    /// Set Features; returns CQE DW0.
    pub fn set_features(&mut self, fid: Fid, cdw11: u32) -> Result<u32, HostError> {
        let mut sqe = Sqe::new(AdminOpcode::SET_FEATURES.0, 0);
        SetFeaturesArgs {
            fid,
            cdw11,
            ..Default::default()
        }
        .apply(&mut sqe);
        let (cqe, _) = self.admin_cmd(sqe, Payload::None, "Set Features")?;
        Ok(cqe.dw0.get())
    }

    /// Read the whole discovery log page (discovery controllers). Reads the header, then
    /// the records; retries once if the generation counter changed meanwhile.
    pub fn discovery_log(&mut self) -> Result<DiscoveryLog, HostError> {
        for _ in 0..2 {
            let hdr = self.get_log_page(Lid::DISCOVERY, 0, DISCOVERY_RECORD_SIZE as u32, 0)?;
            let h = DiscoveryLogHeader::read_from_bytes(&hdr)
                .map_err(|_| HostError::BadIdentify("short discovery log header".into()))?;
            let numrec = h.numrec.get();
            if numrec > MAX_DISCOVERY_RECORDS {
                return Err(HostError::BadIdentify(format!(
                    "discovery log NUMREC {numrec} > {MAX_DISCOVERY_RECORDS}"
                )));
            }
            let len = (numrec as u32) * DISCOVERY_RECORD_SIZE as u32;
            let recs = self.get_log_page(Lid::DISCOVERY, 0, len, DISCOVERY_RECORD_SIZE as u64)?;
            let again = self.get_log_page(Lid::DISCOVERY, 0, DISCOVERY_RECORD_SIZE as u32, 0)?;
            let h2 = DiscoveryLogHeader::read_from_bytes(&again)
                .map_err(|_| HostError::BadIdentify("short discovery log header".into()))?;
            if h2.genctr.get() != h.genctr.get() {
                continue;
            }
            let entries = recs
                .chunks_exact(DISCOVERY_RECORD_SIZE)
                .filter_map(|c| DiscoveryLogEntry::read_from_bytes(c).ok())
                .collect();
            return Ok(DiscoveryLog {
                genctr: h.genctr.get(),
                recfmt: h.recfmt.get(),
                entries,
            });
        }
        Err(HostError::Failed("discovery log kept changing".into()))
    }

    /// Poll the admin queue: send Keep Alive every KATO/2 and reap its completion (SPDK
    /// `spdk_nvme_ctrlr_process_admin_completions`). Call it regularly (e.g. from a poller).
    pub fn process_admin_completions(&mut self) -> Result<usize, HostError> {
        let now = Instant::now();
        if let Some(kato) = self.kato
            && !self.keep_alive_pending
            && now.duration_since(self.last_keep_alive) >= kato / 2
        {
            let sqe = Sqe::new(AdminOpcode::KEEP_ALIVE.0, 0);
            self.admin
                .submit(sqe, Payload::None, KEEP_ALIVE_TAG)
                .map_err(|r| r.error)?;
            self.keep_alive_pending = true;
            self.last_keep_alive = now;
        }
        let mut n = 0;
        let mut ns_changed = false;
        let mut done = std::mem::take(&mut self.admin_done);
        let r = self.admin.process_completions(&mut done);
        for c in done.drain(..) {
            if c.tag == AER_TAG {
                ns_changed |= self.on_aer(&c);
            } else if c.tag == KEEP_ALIVE_TAG {
                self.keep_alive_pending = false;
                if !c.is_success() {
                    tracing::warn!(status = %c.status, "Keep Alive failed");
                }
            }
            n += 1;
        }
        self.admin_done = done;
        r?;
        if ns_changed {
            // Reading the Changed Namespace List clears the event (RAE = 0).
            let _ = self.get_log_page(Lid::CHANGED_NS_LIST, u32::MAX, 4096, 0);
            self.refresh_namespaces()?;
        }
        Ok(n)
    }

    /// Failure of the admin queue, if any.
    pub fn failure(&self) -> Option<&HostError> {
        self.admin.failure()
    }

    /// Allocate and connect an I/O queue pair of `queue_size` entries (0: the default).
    pub fn alloc_io_qpair(&mut self, queue_size: u16) -> Result<IoQpair, HostError> {
        if self.is_discovery() {
            return Err(HostError::Unsupported(
                "I/O queues on a discovery controller",
            ));
        }
        let qid = match self.free_qids.pop() {
            Some(q) => q,
            None if self.next_qid <= self.io_queues_granted => {
                self.next_qid += 1;
                self.next_qid - 1
            }
            None => return Err(HostError::Unsupported("more I/O queues than granted")),
        };
        let size = if queue_size == 0 {
            self.opts.io_queue_size
        } else {
            queue_size
        };
        let mqes = u32::from(self.cap.mqes()) + 1;
        let size = u16::try_from(u32::from(size.max(2)).min(mqes)).unwrap_or(u16::MAX);
        match self.connect_io(qid, size) {
            Ok(qp) => Ok(IoQpair {
                qp,
                queue_size: size,
                max_xfer: self.max_xfer_size(),
                namespaces: self
                    .namespaces
                    .values()
                    .map(|n| (n.id, (n.block_size, n.num_blocks)))
                    .collect(),
            }),
            Err(e) => {
                self.free_qids.push(qid);
                Err(e)
            }
        }
    }

    fn connect_io(&self, qid: u16, size: u16) -> Result<Qpair, HostError> {
        let params = QpairParams {
            qid,
            queue_size: size,
            hdgst: self.opts.header_digest,
            ddgst: self.opts.data_digest,
            connect_timeout: self.opts.transport_connect_timeout,
        };
        let conn = ConnectArgs {
            hostnqn: &self.opts.hostnqn,
            hostid: self.opts.hostid,
            cntlid: self.cntlid,
            kato_ms: 0,
        };
        let (mut qp, _) = Qpair::connect(self.transport.as_ref(), &self.trid, &params, &conn)?;
        let icd = (self.cdata.ioccsz.get().saturating_mul(16)).saturating_sub(64);
        qp.set_max_in_capsule(icd);
        qp.set_timeout(self.opts.io_timeout);
        Ok(qp)
    }

    /// Return an I/O queue pair's queue ID for reuse (SPDK `spdk_nvme_ctrlr_free_io_qpair`).
    pub fn free_io_qpair(&mut self, qpair: IoQpair) {
        self.free_qids.push(qpair.qp.qid());
    }

    /// Reconnect an I/O queue pair after a failure or a controller reset (SPDK
    /// `spdk_nvme_ctrlr_reconnect_io_qpair`). Outstanding commands must have been reaped.
    pub fn reconnect_io_qpair(&self, qpair: &mut IoQpair) -> Result<(), HostError> {
        let qp = self.connect_io(qpair.qp.qid(), qpair.queue_size)?;
        qpair.qp = qp;
        Ok(())
    }

    /// Reset: drop the admin connection, reconnect, re-enable and re-identify (SPDK
    /// `spdk_nvme_ctrlr_reset` for fabrics). I/O queue pairs must then be reconnected with
    /// [`Controller::reconnect_io_qpair`].
    pub fn reset(&mut self) -> Result<(), HostError> {
        tracing::info!(subnqn = %self.trid.subnqn, "resetting controller");
        let (admin, cntlid) = Self::connect_admin(self.transport.as_ref(), &self.trid, &self.opts)?;
        let mut old = std::mem::replace(&mut self.admin, admin);
        let mut sink = Vec::new();
        let _ = old.process_completions(&mut sink);
        drop(old);
        self.cntlid = cntlid;
        self.keep_alive_pending = false;
        self.last_keep_alive = Instant::now();
        self.init()
    }

    /// Normal shutdown: CC.SHN = normal, wait for CSTS.SHST complete (bounded by 5 s).
    pub fn shutdown(&mut self) -> Result<(), HostError> {
        let cc = Cc(self.property_get(PropertyOffset::CC, PropertySize::Four)? as u32).with_shn(1);
        self.property_set(PropertyOffset::CC, PropertySize::Four, u64::from(cc.0))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let csts = Csts(self.property_get(PropertyOffset::CSTS, PropertySize::Four)? as u32);
            if csts.shst() == 2 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HostError::Timeout("CSTS.SHST after CC.SHN"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// An I/O queue pair (SPDK `struct spdk_nvme_qpair` + `spdk_nvme_ns_cmd_*`). Polled by one
/// thread; `Send` so it can move to that thread.
#[derive(Debug)]
pub struct IoQpair {
    qp: Qpair,
    queue_size: u16,
    max_xfer: Option<u32>,
    namespaces: BTreeMap<u32, (u32, u64)>,
}

impl IoQpair {
    /// Queue ID.
    pub fn qid(&self) -> u16 {
        self.qp.qid()
    }

    /// Commands outstanding.
    pub fn outstanding(&self) -> usize {
        self.qp.outstanding()
    }

    /// Most commands that can be outstanding.
    pub fn depth(&self) -> usize {
        self.qp.depth()
    }

    /// The error that failed this qpair, if any.
    pub fn failure(&self) -> Option<&HostError> {
        self.qp.failure()
    }

    /// The descriptor that becomes readable when the target sent something (`None` if the
    /// transport has none); it changes when the qpair is reconnected.
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.qp.raw_fd()
    }

    /// True while submitted bytes are still queued in user space (the socket was full).
    pub fn has_unsent(&self) -> bool {
        self.qp.has_unsent()
    }

    fn check_range(
        &self,
        nsid: u32,
        lba: u64,
        nlb: u32,
        buf_len: Option<usize>,
    ) -> Result<(), HostError> {
        let &(bs, nblocks) = self
            .namespaces
            .get(&nsid)
            .ok_or_else(|| HostError::InvalidRequest(format!("namespace {nsid} not active")))?;
        if nlb == 0 || nlb > 0x1_0000 {
            return Err(HostError::InvalidRequest(format!(
                "{nlb} blocks: must be 1..=65536"
            )));
        }
        if lba.checked_add(u64::from(nlb)).is_none_or(|e| e > nblocks) {
            return Err(HostError::InvalidRequest(format!(
                "LBA {lba} + {nlb} beyond namespace size {nblocks}"
            )));
        }
        if let Some(len) = buf_len {
            let want = u64::from(nlb) * u64::from(bs);
            if len as u64 != want {
                return Err(HostError::InvalidRequest(format!(
                    "buffer of {len} bytes for {nlb} blocks of {bs}"
                )));
            }
            if let Some(m) = self.max_xfer
                && want > u64::from(m)
            {
                return Err(HostError::InvalidRequest(format!(
                    "{want} bytes exceed MDTS ({m})"
                )));
            }
        }
        Ok(())
    }

    fn rw(
        &mut self,
        opc: NvmOpcode,
        nsid: u32,
        lba: u64,
        payload: Payload,
        tag: u64,
    ) -> Result<u16, Rejected> {
        let len = payload.len();
        let nlb = self
            .namespaces
            .get(&nsid)
            .map(|&(bs, _)| (len as u64 / u64::from(bs.max(1))) as u32)
            .unwrap_or(0);
        if let Err(error) = self.check_range(nsid, lba, nlb, Some(len)) {
            return Err(Rejected {
                error,
                buf: payload.into_buf(),
            });
        }
        let mut sqe = Sqe::new(opc.0, 0);
        sqe.nsid = nsid.into();
        ReadWrite {
            slba: lba,
            nlb: (nlb - 1) as u16,
            ..Default::default()
        }
        .apply(&mut sqe);
        self.qp.submit(sqe, payload, tag)
    }

    /// Read `buf.len()` bytes (a whole number of blocks) at `lba`.
    pub fn read(&mut self, nsid: u32, lba: u64, buf: Vec<u8>, tag: u64) -> Result<u16, Rejected> {
        self.rw(NvmOpcode::READ, nsid, lba, Payload::FromCtrl(buf), tag)
    }

    /// Write `buf` (a whole number of blocks) at `lba`.
    pub fn write(&mut self, nsid: u32, lba: u64, buf: Vec<u8>, tag: u64) -> Result<u16, Rejected> {
        self.rw(NvmOpcode::WRITE, nsid, lba, Payload::ToCtrl(buf), tag)
    }

    /// Flush.
    pub fn flush(&mut self, nsid: u32, tag: u64) -> Result<u16, Rejected> {
        let mut sqe = Sqe::new(NvmOpcode::FLUSH.0, 0);
        sqe.nsid = nsid.into();
        self.qp.submit(sqe, Payload::None, tag)
    }

    /// Write Zeroes over `nlb` blocks at `lba`.
    pub fn write_zeroes(
        &mut self,
        nsid: u32,
        lba: u64,
        nlb: u32,
        tag: u64,
    ) -> Result<u16, Rejected> {
        if let Err(error) = self.check_range(nsid, lba, nlb, None) {
            return Err(Rejected {
                error,
                buf: Vec::new(),
            });
        }
        let mut sqe = Sqe::new(NvmOpcode::WRITE_ZEROES.0, 0);
        sqe.nsid = nsid.into();
        ReadWrite {
            slba: lba,
            nlb: (nlb - 1) as u16,
            ..Default::default()
        }
        .apply(&mut sqe);
        self.qp.submit(sqe, Payload::None, tag)
    }

    /// Dataset Management deallocate (unmap) of `(lba, nlb)` ranges (1..=256).
    pub fn deallocate(
        &mut self,
        nsid: u32,
        ranges: &[(u64, u32)],
        tag: u64,
    ) -> Result<u16, Rejected> {
        let reject = |m: String| Rejected {
            error: HostError::InvalidRequest(m),
            buf: Vec::new(),
        };
        if ranges.is_empty() || ranges.len() > crate::spec::io::DSM_MAX_RANGES {
            return Err(reject(format!(
                "{} DSM ranges: must be 1..=256",
                ranges.len()
            )));
        }
        let mut data = Vec::with_capacity(ranges.len() * 16);
        for &(lba, nlb) in ranges {
            if let Some(&(_, n)) = self.namespaces.get(&nsid)
                && lba.checked_add(u64::from(nlb)).is_none_or(|e| e > n)
            {
                return Err(reject(format!("range {lba}+{nlb} beyond namespace")));
            }
            let r = DsmRange {
                cattr: 0.into(),
                nlb: nlb.into(),
                slba: lba.into(),
            };
            data.extend_from_slice(r.as_bytes());
        }
        let mut sqe = Sqe::new(NvmOpcode::DATASET_MANAGEMENT.0, 0);
        sqe.nsid = nsid.into();
        DatasetManagement {
            nr: (ranges.len() - 1) as u8,
            attributes: crate::spec::io::DSM_AD,
        }
        .apply(&mut sqe);
        self.qp.submit(sqe, Payload::ToCtrl(data), tag)
    }

    /// Submit a raw I/O command (SPDK `spdk_nvme_ctrlr_cmd_io_raw`).
    pub fn submit_raw(&mut self, sqe: Sqe, payload: Payload, tag: u64) -> Result<u16, Rejected> {
        self.qp.submit(sqe, payload, tag)
    }

    /// Poll: append finished commands to `out` (SPDK `spdk_nvme_qpair_process_completions`).
    /// On a failure, outstanding commands complete as aborted and the error is returned.
    pub fn process_completions(&mut self, out: &mut Vec<Completion>) -> Result<usize, HostError> {
        self.qp.process_completions(out)
    }
}
