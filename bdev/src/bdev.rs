//! The [`Bdev`] handle (SPDK `struct spdk_bdev` as consumers see it) and its JSON views.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use crate::BdevError;
use crate::desc::{ClaimState, DescEntry};
use crate::io::IoType;
use crate::local::LocalCallback;
use crate::module::{BdevProps, ErasedOps};
use crate::qos::{QosLimits, QosShared};
use crate::registry::lock;
use crate::stats::{IoStat, QueueDepthStat, ResetStatMode};

pub(crate) struct BdevState {
    pub(crate) removing: bool,
    pub(crate) destructed: bool,
    pub(crate) descs: Vec<DescEntry>,
    pub(crate) claim: ClaimState,
    pub(crate) unregister_waiters: Vec<LocalCallback<Result<(), BdevError>>>,
}

pub(crate) struct BdevShared {
    pub(crate) module: String,
    pub(crate) props: BdevProps,
    pub(crate) uuid: uuid::Uuid,
    pub(crate) num_blocks: AtomicU64,
    pub(crate) supported: [bool; IoType::ALL.len()],
    pub(crate) ops: Arc<dyn ErasedOps>,
    pub(crate) state: Mutex<BdevState>,
    pub(crate) qos: QosShared,
    /// Counters of channels already destroyed.
    pub(crate) retired: Mutex<IoStat>,
    /// The reset in progress and the resets queued behind it.
    pub(crate) reset: Mutex<crate::reset::ResetCtl>,
    /// LBA ranges locked by emulated compare-and-writes.
    pub(crate) locks: crate::compare::RangeLocks,
    /// Queue-depth sampling.
    pub(crate) qd: Mutex<crate::qd::QdState>,
}

impl BdevShared {
    pub(crate) fn new(
        module: &str,
        mut props: BdevProps,
        uuid: uuid::Uuid,
        ops: Arc<dyn ErasedOps>,
    ) -> BdevShared {
        let mut supported = [false; IoType::ALL.len()];
        for (i, t) in IoType::ALL.iter().enumerate() {
            supported[i] = ops.io_type_supported(*t);
        }
        props.uuid = Some(uuid);
        if props.physical_block_size == 0 {
            props.physical_block_size = props.block_size;
        }
        BdevShared {
            module: module.to_owned(),
            num_blocks: AtomicU64::new(props.num_blocks),
            props,
            uuid,
            supported,
            ops,
            state: Mutex::new(BdevState {
                removing: false,
                destructed: false,
                descs: Vec::new(),
                claim: ClaimState::None,
                unregister_waiters: Vec::new(),
            }),
            qos: QosShared::default(),
            retired: Mutex::new(IoStat::default()),
            reset: Mutex::new(crate::reset::ResetCtl::default()),
            locks: crate::compare::RangeLocks::default(),
            qd: Mutex::new(crate::qd::QdState::default()),
        }
    }

    pub(crate) fn num_blocks(&self) -> u64 {
        self.num_blocks.load(Ordering::Acquire)
    }

    /// True for the types the layer runs itself when the module lacks them (compare by a
    /// read, compare-and-write by a compare and a write under a range lock).
    pub(crate) fn emulated(&self, t: IoType) -> bool {
        let has = |t: IoType| self.supported[t.index()];
        if has(t) {
            return false;
        }
        match t {
            IoType::Compare => has(IoType::Read),
            IoType::CompareAndWrite => {
                has(IoType::Write) && (has(IoType::Compare) || has(IoType::Read))
            }
            _ => false,
        }
    }
}

/// A registered block device: a cheap `Send + Sync` handle (an `Arc`). Holding it does not
/// keep the bdev registered; open a [`Desc`](crate::Desc) for that.
#[derive(Clone)]
pub struct Bdev(pub(crate) Arc<BdevShared>);

impl std::fmt::Debug for Bdev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bdev")
            .field("name", &self.0.props.name)
            .field("block_size", &self.0.props.block_size)
            .field("num_blocks", &self.num_blocks())
            .finish()
    }
}

impl PartialEq for Bdev {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Bdev {}

impl Bdev {
    /// Unique name.
    pub fn name(&self) -> &str {
        &self.0.props.name
    }

    /// Aliases as `bdev_get_bdevs` lists them: the UUID first, then the module's aliases.
    pub fn aliases(&self) -> Vec<String> {
        let mut v = vec![self.0.uuid.hyphenated().to_string()];
        v.extend(self.0.props.aliases.iter().cloned());
        v
    }

    /// UUID.
    pub fn uuid(&self) -> uuid::Uuid {
        self.0.uuid
    }

    /// Name of the module that registered the bdev.
    pub fn module_name(&self) -> &str {
        &self.0.module
    }

    /// Product name, e.g. `"Malloc disk"`.
    pub fn product_name(&self) -> &str {
        &self.0.props.product_name
    }

    /// Logical block size in bytes (data plus interleaved metadata).
    pub fn block_size(&self) -> u32 {
        self.0.props.block_size
    }

    /// Physical block size in bytes.
    pub fn physical_block_size(&self) -> u32 {
        self.0.props.physical_block_size
    }

    /// Current number of blocks.
    pub fn num_blocks(&self) -> u64 {
        self.0.num_blocks()
    }

    /// Whether the module executes this I/O type (SPDK `spdk_bdev_io_type_supported`; what
    /// `bdev_get_bdevs` lists in `supported_io_types`).
    pub fn io_type_supported(&self, t: IoType) -> bool {
        self.0.supported[t.index()]
    }

    /// Whether the layer accepts this I/O type on this bdev: the module executes it, or the
    /// layer emulates it (compare and compare-and-write, see [`crate::compare`]). SPDK's nvmf
    /// advertises compare and fused compare-and-write for every bdev on this basis.
    pub fn accepts_io_type(&self, t: IoType) -> bool {
        self.0.supported[t.index()] || self.0.emulated(t)
    }

    /// Volatile write cache present.
    pub fn write_cache(&self) -> bool {
        self.0.props.write_cache
    }

    /// Optimal I/O boundary in blocks (0 = none).
    pub fn optimal_io_boundary(&self) -> u32 {
        self.0.props.optimal_io_boundary
    }

    /// Required buffer alignment in bytes (0 = none).
    pub fn required_alignment(&self) -> u32 {
        self.0.props.required_alignment
    }

    /// Metadata bytes per block.
    pub fn md_size(&self) -> u32 {
        self.0.props.md_size
    }

    /// Metadata interleaved with data.
    pub fn md_interleave(&self) -> bool {
        self.0.props.md_interleave
    }

    /// DIF type (0 = disabled).
    pub fn dif_type(&self) -> u32 {
        self.0.props.dif_type
    }

    /// DIF at the head of metadata.
    pub fn dif_is_head_of_md(&self) -> bool {
        self.0.props.dif_is_head_of_md
    }

    /// DIF PI format.
    pub fn dif_pi_format(&self) -> u32 {
        self.0.props.dif_pi_format
    }

    /// Data bytes per block (block size minus interleaved metadata).
    pub fn data_block_size(&self) -> u32 {
        if self.0.props.md_interleave {
            self.0.props.block_size - self.0.props.md_size
        } else {
            self.0.props.block_size
        }
    }

    /// True once unregistration started.
    pub fn is_removing(&self) -> bool {
        lock(&self.0.state).removing
    }

    /// The claim type's SPDK name, if claimed (`"exclusive_write"`, ...).
    pub fn claim_type(&self) -> Option<&'static str> {
        lock(&self.0.state).claim.type_name()
    }

    /// Current QoS limits.
    pub fn qos_limits(&self) -> QosLimits {
        self.0.qos.limits()
    }

    /// Sets QoS limits (0 = unlimited), validated as SPDK (`rw_ios_per_sec` a multiple of
    /// 1000). Channels pick the change up on their next I/O.
    pub fn set_qos_limits(&self, l: QosLimits) -> Result<(), BdevError> {
        l.validate()?;
        self.0.qos.set(l);
        tracing::info!(bdev = %self.name(), limits = ?l, "QoS limits set");
        Ok(())
    }

    /// Aggregates the I/O statistics of every channel (by message to each channel's Thread)
    /// plus those of destroyed channels, then calls `done` on the calling Thread.
    /// Errors off a Thread.
    pub fn iostat(&self, done: impl FnOnce(IoStat) + 'static) -> Result<(), BdevError> {
        self.iostat_and_reset(ResetStatMode::None, done)
    }

    /// [`Bdev::iostat`], then clears what `mode` says in every counter read (SPDK
    /// `spdk_bdev_get_device_stat` with a reset mode; `bdev_get_iostat`'s `reset_mode`).
    pub fn iostat_and_reset(
        &self,
        mode: ResetStatMode,
        done: impl FnOnce(IoStat) + 'static,
    ) -> Result<(), BdevError> {
        let cb = LocalCallback::new(done)?;
        let base = {
            let mut r = lock(&self.0.retired);
            let s = *r;
            r.reset(mode);
            s
        };
        let acc = Arc::new(Mutex::new(base));
        let acc2 = Arc::clone(&acc);
        env::for_each_channel(
            &self.0,
            move |ch| {
                if let Some(s) = ch.take_stats(mode) {
                    lock(&acc2).add(&s);
                }
            },
            move || {
                let s = *lock(&acc);
                cb.call(s);
            },
        );
        Ok(())
    }

    /// Each live channel's statistics with its Thread's id (`bdev_get_iostat` with
    /// `per_channel`), in channel order, each channel then cleared per `mode`; `done` runs on
    /// the calling Thread. Errors off a Thread.
    pub fn iostat_per_channel(
        &self,
        mode: ResetStatMode,
        done: impl FnOnce(Vec<(u64, IoStat)>) + 'static,
    ) -> Result<(), BdevError> {
        let cb = LocalCallback::new(done)?;
        let acc = Arc::new(Mutex::new(Vec::new()));
        let acc2 = Arc::clone(&acc);
        env::for_each_channel(
            &self.0,
            move |ch| {
                if let Some(s) = ch.take_stats(mode) {
                    lock(&acc2).push((ch.thread().id().0, s));
                }
            },
            move || {
                let v = std::mem::take(&mut *lock(&acc));
                cb.call(v);
            },
        );
        Ok(())
    }

    /// Clears the statistics per `mode` in every channel and in the destroyed channels'
    /// totals (SPDK `bdev_reset_device_stat`), then calls `done` on the calling Thread.
    /// Errors off a Thread.
    pub fn reset_iostat(
        &self,
        mode: ResetStatMode,
        done: impl FnOnce() + 'static,
    ) -> Result<(), BdevError> {
        let cb = LocalCallback::new(move |()| done())?;
        lock(&self.0.retired).reset(mode);
        env::for_each_channel(
            &self.0,
            move |ch| {
                ch.take_stats(mode);
            },
            move || cb.call(()),
        );
        Ok(())
    }

    /// Starts (period > 0, in microseconds), changes or stops (0) sampling the bdev's queue
    /// depth (SPDK `spdk_bdev_set_qd_sampling_period`). The sampler runs on the calling
    /// Thread: every period it sums the I/Os outstanding at the module over all channels.
    /// Errors off a Thread.
    pub fn set_qd_sampling_period(&self, period_us: u64) -> Result<(), BdevError> {
        crate::qd::set_period(&self.0, period_us)
    }

    /// Queue-depth sampling figures, `None` while no sampling period is set.
    pub fn queue_depth_stat(&self) -> Option<QueueDepthStat> {
        crate::qd::stat(&self.0)
    }

    /// The bdev's `bdev_get_bdevs` entry, with SPDK's keys in SPDK's order.
    pub fn dump_info_json(&self) -> Value {
        let p = &self.0.props;
        let mut m = Map::new();
        m.insert("name".into(), json!(p.name));
        m.insert("aliases".into(), json!(self.aliases()));
        m.insert("product_name".into(), json!(p.product_name));
        m.insert("block_size".into(), json!(p.block_size));
        m.insert("num_blocks".into(), json!(self.num_blocks()));
        for k in [
            "preferred_write_alignment",
            "preferred_write_granularity",
            "optimal_write_size",
            "preferred_unmap_alignment",
            "preferred_unmap_granularity",
        ] {
            m.insert(k.into(), json!(0));
        }
        m.insert("uuid".into(), json!(self.0.uuid.hyphenated().to_string()));
        if p.md_size != 0 {
            m.insert("md_size".into(), json!(p.md_size));
            m.insert("md_interleave".into(), json!(p.md_interleave));
            m.insert("dif_type".into(), json!(p.dif_type));
            if p.dif_type != 0 {
                m.insert(
                    "dif_location".into(),
                    json!(if p.dif_is_head_of_md { "head" } else { "tail" }),
                );
                m.insert("dif_pi_format".into(), json!(p.dif_pi_format));
            }
        }
        if p.optimal_io_boundary != 0 {
            m.insert("optimal_io_boundary".into(), json!(p.optimal_io_boundary));
        }
        if p.required_alignment != 0 {
            m.insert("required_alignment".into(), json!(p.required_alignment));
        }
        m.insert(
            "assigned_rate_limits".into(),
            serde_json::to_value(self.qos_limits()).unwrap_or(Value::Null),
        );
        let claim = self.claim_type();
        m.insert("claimed".into(), json!(claim.is_some()));
        if let Some(c) = claim {
            m.insert("claim_type".into(), json!(c));
        }
        m.insert("zoned".into(), json!(false));
        let mut io = Map::new();
        for t in IoType::ALL {
            io.insert(t.json_name().into(), json!(self.io_type_supported(t)));
        }
        m.insert("supported_io_types".into(), Value::Object(io));
        if let Some(d) = self.0.ops.memory_domains() {
            m.insert("memory_domains".into(), d);
        }
        m.insert("driver_specific".into(), self.0.ops.dump_info_json());
        Value::Object(m)
    }

    /// The RPC call that recreates this bdev, as its module writes it (None if it cannot).
    pub fn write_config_json(&self) -> Option<Value> {
        self.0.ops.write_config_json(self)
    }
}
