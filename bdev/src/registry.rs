//! The global bdev registry (SPDK `g_bdev_mgr`): modules, bdevs by name/alias/UUID, options,
//! and the unregister/destruct protocol. Config path only: everything here takes a lock; the
//! I/O path never does.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::bdev::BdevShared;
use crate::desc::{BdevEvent, ClaimState};
use crate::local::LocalCallback;
use crate::module::{BdevModule, BdevProps, ErasedOps};
use crate::{Bdev, BdevError};

/// Locks a mutex, ignoring poisoning (a panicking holder leaves consistent data here).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bdev layer options (`bdev_set_options`, SPDK `struct spdk_bdev_opts`), with SPDK's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevOpts {
    /// Bdev I/Os available; here the most I/Os one channel may have outstanding at once.
    pub bdev_io_pool_size: u32,
    /// Per-thread bdev I/O cache size (kept for configuration compatibility).
    pub bdev_io_cache_size: u32,
    /// Offer new bdevs to modules' examine automatically.
    pub bdev_auto_examine: bool,
    /// Per-thread small iobuf cache size of the bdev layer.
    pub iobuf_small_cache_size: u32,
    /// Per-thread large iobuf cache size of the bdev layer.
    pub iobuf_large_cache_size: u32,
}

impl Default for BdevOpts {
    fn default() -> Self {
        BdevOpts {
            bdev_io_pool_size: 65535,
            bdev_io_cache_size: 256,
            bdev_auto_examine: true,
            iobuf_small_cache_size: 128,
            iobuf_large_cache_size: 16,
        }
    }
}

struct Registry {
    modules: Vec<Arc<dyn BdevModule>>,
    /// Bdevs in registration order.
    bdevs: Vec<Arc<BdevShared>>,
    /// Name, aliases and UUID string of every bdev.
    names: HashMap<String, Arc<BdevShared>>,
    opts: BdevOpts,
    initialized: bool,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| {
    Mutex::new(Registry {
        modules: Vec::new(),
        bdevs: Vec::new(),
        names: HashMap::new(),
        opts: BdevOpts::default(),
        initialized: false,
    })
});

fn reg() -> MutexGuard<'static, Registry> {
    lock(&REGISTRY)
}

pub(crate) fn register_module(module: Arc<dyn BdevModule>) -> Result<(), BdevError> {
    let mut r = reg();
    if r.modules.iter().any(|m| m.name() == module.name()) {
        return Err(BdevError::Exists(module.name().to_owned()));
    }
    r.modules.push(module);
    Ok(())
}

pub(crate) fn modules() -> Vec<Arc<dyn BdevModule>> {
    reg().modules.clone()
}

pub(crate) fn set_initialized(v: bool) {
    reg().initialized = v;
}

pub(crate) fn opts() -> BdevOpts {
    reg().opts
}

pub(crate) fn set_opts(o: BdevOpts) -> Result<(), BdevError> {
    if o.bdev_io_pool_size == 0 || o.bdev_io_pool_size < o.bdev_io_cache_size {
        return Err(BdevError::InvalidArgument(format!(
            "bdev_io_pool_size {} must be >= bdev_io_cache_size {} and > 0",
            o.bdev_io_pool_size, o.bdev_io_cache_size
        )));
    }
    let mut r = reg();
    if r.initialized {
        return Err(BdevError::NotPermitted(
            "bdev options can only be set before the bdev layer is initialized".into(),
        ));
    }
    r.opts = o;
    Ok(())
}

pub(crate) fn register_bdev(
    module: &str,
    props: BdevProps,
    ops: Arc<dyn ErasedOps>,
) -> Result<Bdev, BdevError> {
    if props.name.is_empty() {
        return Err(BdevError::InvalidArgument("bdev name is empty".into()));
    }
    if props.block_size == 0 {
        return Err(BdevError::InvalidArgument(format!(
            "bdev {}: block size is 0",
            props.name
        )));
    }
    if props.num_blocks == 0 {
        return Err(BdevError::InvalidArgument(format!(
            "bdev {}: block count is 0",
            props.name
        )));
    }
    if props.required_alignment != 0 && !props.required_alignment.is_power_of_two() {
        return Err(BdevError::InvalidArgument(format!(
            "bdev {}: required alignment {} is not a power of two",
            props.name, props.required_alignment
        )));
    }
    let uuid = props.uuid.unwrap_or_else(uuid::Uuid::new_v4);
    let uuid_str = uuid.hyphenated().to_string();
    let mut r = reg();
    let mut all_names = vec![props.name.clone(), uuid_str.clone()];
    all_names.extend(props.aliases.iter().cloned());
    for (i, n) in all_names.iter().enumerate() {
        if r.names.contains_key(n) || all_names[..i].contains(n) {
            tracing::error!(name = %n, bdev = %props.name, "bdev name or alias already exists");
            return Err(BdevError::Exists(n.clone()));
        }
    }
    let shared = Arc::new(BdevShared::new(module, props, uuid, ops));
    for n in all_names {
        r.names.insert(n, Arc::clone(&shared));
    }
    r.bdevs.push(Arc::clone(&shared));
    let examine = r.opts.bdev_auto_examine;
    let modules = r.modules.clone();
    drop(r);
    let bdev = Bdev(shared);
    tracing::info!(bdev = %bdev.name(), module, "bdev registered");
    if examine {
        for m in modules {
            m.examine(&bdev);
        }
    }
    Ok(bdev)
}

/// Finds a bdev by name, alias or UUID string.
pub(crate) fn lookup(name: &str) -> Option<Arc<BdevShared>> {
    reg().names.get(name).cloned()
}

pub(crate) fn all() -> Vec<Arc<BdevShared>> {
    reg().bdevs.clone()
}

fn remove_names(b: &Arc<BdevShared>) {
    let mut r = reg();
    r.names.retain(|_, v| !Arc::ptr_eq(v, b));
    r.bdevs.retain(|v| !Arc::ptr_eq(v, b));
}

/// Starts unregistration; see [`crate::unregister`].
pub(crate) fn unregister(
    name: &str,
    module: Option<&str>,
    done: Option<LocalCallback<Result<(), BdevError>>>,
) -> Result<(), BdevError> {
    let b = lookup(name).ok_or_else(|| BdevError::NotFound(name.to_owned()))?;
    if module.is_some_and(|m| m != b.module) {
        return Err(BdevError::NotFound(name.to_owned()));
    }
    let events = {
        let mut st = lock(&b.state);
        if st.removing {
            return Err(BdevError::Busy(b.props.name.clone()));
        }
        st.removing = true;
        if let Some(d) = done {
            st.unregister_waiters.push(d);
        }
        st.descs
            .iter()
            .map(|d| (d.event_cb.clone(), d.thread.clone()))
            .collect::<Vec<_>>()
    };
    crate::qd::stop(&b);
    tracing::info!(bdev = %b.props.name, open_descs = events.len(), "bdev unregistering");
    for (cb, thread) in events {
        crate::desc::deliver_event(cb, thread, BdevEvent::Remove);
    }
    maybe_destruct(&b);
    Ok(())
}

/// Destructs `b` if it is being removed and no descriptor remains open.
pub(crate) fn maybe_destruct(b: &Arc<BdevShared>) {
    let waiters = {
        let mut st = lock(&b.state);
        if !st.removing || !st.descs.is_empty() || st.destructed {
            return;
        }
        st.destructed = true;
        std::mem::take(&mut st.unregister_waiters)
    };
    remove_names(b);
    b.ops.destruct();
    tracing::info!(bdev = %b.props.name, "bdev destructed");
    for w in waiters {
        w.call(Ok(()));
    }
}

pub(crate) fn notify_blockcnt_change(bdev: &Bdev, num_blocks: u64) -> Result<(), BdevError> {
    let b = &bdev.0;
    let events = {
        let st = lock(&b.state);
        if num_blocks == 0 {
            return Err(BdevError::InvalidArgument("block count 0".into()));
        }
        if num_blocks < b.num_blocks() && !matches!(st.claim, ClaimState::None) {
            return Err(BdevError::NotPermitted(format!(
                "cannot shrink claimed bdev {}",
                b.props.name
            )));
        }
        b.num_blocks.store(num_blocks, Ordering::Release);
        st.descs
            .iter()
            .map(|d| (d.event_cb.clone(), d.thread.clone()))
            .collect::<Vec<_>>()
    };
    for (cb, thread) in events {
        crate::desc::deliver_event(cb, thread, BdevEvent::Resize);
    }
    Ok(())
}
