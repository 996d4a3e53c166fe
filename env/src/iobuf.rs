//! Shared I/O buffer pools (SPDK `lib/thread/iobuf.c`).
//!
//! Two global pools of DMA-able buffers, small (default 8192 × 8 KiB) and large (default
//! 1024 × 132 KiB), each a lock-free ring of free buffer indices ([`crate::ring::Ring`],
//! loom-checked). Every Thread keeps a cache in front of them (128 small, 16 large, SPDK's
//! defaults); a get takes from the Thread's cache, then from the global ring in a batch. When
//! both are empty a request can wait ([`IobufChannel::get_or_wait`]): waiters are served in
//! order on their Thread's next poll after a buffer is available (returned on that Thread, or
//! found in the global ring).
//!
//! Deviation from SPDK: the cache is per Thread and shared by all modules on it (SPDK keeps one
//! per module channel); statistics are still per module.
//!
//! [`IoBuf`] is returned on drop: to the current Thread's cache, or, off a Thread, to the ring.

use crate::EnvError;
use crate::dma::DmaBuf;
use crate::ring::Ring;
use crate::thread::{Thread, ThreadInner};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Minimum `small_pool_count` (SPDK `IOBUF_MIN_SMALL_POOL_SIZE`).
pub const MIN_SMALL_POOL_COUNT: u64 = 64;
/// Minimum `large_pool_count` (SPDK `IOBUF_MIN_LARGE_POOL_SIZE`).
pub const MIN_LARGE_POOL_COUNT: u64 = 8;
/// Minimum small buffer size; smaller values are raised (SPDK `IOBUF_MIN_SMALL_BUFSIZE`).
pub const MIN_SMALL_BUFSIZE: u32 = 4096;
/// Minimum large buffer size; smaller values are raised (SPDK `IOBUF_MIN_LARGE_BUFSIZE`).
pub const MIN_LARGE_BUFSIZE: u32 = 8192;
/// Maximum `small_pool_count` and `large_pool_count` (4 Mi buffers: at least 16 GiB of small
/// or 32 GiB of large buffers, and a 64 MiB free-index ring). SPDK has no explicit limit; its
/// DPDK ring refuses counts from 2^31 on.
pub const MAX_POOL_COUNT: u64 = 1 << 22;
/// Buffer alignment; sizes are rounded up to it (SPDK `IOBUF_ALIGNMENT`).
pub const IOBUF_ALIGNMENT: usize = 4096;
/// Small buffers cached per Thread (SPDK `iobuf_small_cache_size` default).
pub const SMALL_CACHE_SIZE: usize = 128;
/// Large buffers cached per Thread (SPDK `iobuf_large_cache_size` default).
pub const LARGE_CACHE_SIZE: usize = 16;
/// Buffers moved between a cache and the global ring at once (SPDK `IOBUF_BATCH_SIZE`).
pub const BATCH_SIZE: usize = 32;
/// Module name the free functions [`iobuf_get`] / [`iobuf_get_or_wait`] account to.
pub const DEFAULT_MODULE: &str = "default";

/// Pool options, with SPDK's `iobuf_set_options` names and defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IobufOpts {
    /// Number of small buffers.
    pub small_pool_count: u64,
    /// Number of large buffers.
    pub large_pool_count: u64,
    /// Size of a small buffer.
    pub small_bufsize: u32,
    /// Size of a large buffer.
    pub large_bufsize: u32,
    /// NUMA-aware pools (accepted, not implemented: one pool for all nodes).
    pub enable_numa: bool,
}

impl Default for IobufOpts {
    fn default() -> Self {
        IobufOpts {
            small_pool_count: 8192,
            large_pool_count: 1024,
            small_bufsize: 8192,
            large_bufsize: 135_168,
            enable_numa: false,
        }
    }
}

impl IobufOpts {
    /// SPDK's checks: counts below the minimum are refused; sizes below the minimum raised.
    fn checked(mut self) -> Result<IobufOpts, EnvError> {
        if self.small_pool_count < MIN_SMALL_POOL_COUNT {
            return Err(EnvError::InvalidArgument(format!(
                "small_pool_count must be at least {MIN_SMALL_POOL_COUNT}"
            )));
        }
        if self.large_pool_count < MIN_LARGE_POOL_COUNT {
            return Err(EnvError::InvalidArgument(format!(
                "large_pool_count must be at least {MIN_LARGE_POOL_COUNT}"
            )));
        }
        for (name, count) in [
            ("small_pool_count", self.small_pool_count),
            ("large_pool_count", self.large_pool_count),
        ] {
            if count > MAX_POOL_COUNT {
                tracing::error!("{name} {count} exceeds the maximum {MAX_POOL_COUNT}");
                return Err(EnvError::InvalidArgument(format!(
                    "{name} {count} exceeds the maximum {MAX_POOL_COUNT}"
                )));
            }
        }
        if self.small_bufsize < MIN_SMALL_BUFSIZE {
            tracing::warn!("small_bufsize must be at least {MIN_SMALL_BUFSIZE}; increasing");
            self.small_bufsize = MIN_SMALL_BUFSIZE;
        }
        if self.large_bufsize < MIN_LARGE_BUFSIZE {
            tracing::warn!("large_bufsize must be at least {MIN_LARGE_BUFSIZE}; increasing");
            self.large_bufsize = MIN_LARGE_BUFSIZE;
        }
        Ok(self)
    }

    /// Bytes the pools of these (checked) options take: buffers (sizes rounded up to
    /// [`IOBUF_ALIGNMENT`]) and the free-index rings. Counts are at most [`MAX_POOL_COUNT`] and
    /// sizes `u32`, so this cannot overflow.
    fn pool_bytes(&self) -> u64 {
        let class = |count: u64, size: u32| {
            let ring_slot = std::mem::size_of::<usize>() as u64 * 2;
            count * u64::from(size).next_multiple_of(IOBUF_ALIGNMENT as u64)
                + count.max(2).next_power_of_two() * ring_slot
        };
        class(self.small_pool_count, self.small_bufsize)
            + class(self.large_pool_count, self.large_bufsize)
    }

    /// Refuses options whose pools need more memory than the system can give
    /// ([`crate::dma::check_available`]): [`EnvError::NoMemory`], logged.
    fn check_memory(&self) -> Result<(), EnvError> {
        crate::dma::check_available(self.pool_bytes(), "iobuf pools")
    }
}

/// Counters of one pool class for one module (SPDK `spdk_iobuf_pool_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IobufPoolStats {
    /// Gets served from a Thread's cache.
    pub cache: u64,
    /// Gets served from the global pool.
    pub main: u64,
    /// Gets that had to wait.
    pub retry: u64,
}

/// Counters of one module (an element of SPDK's `iobuf_get_stats` result).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IobufModuleStats {
    /// Module name.
    pub module: String,
    /// Small pool counters.
    pub small_pool: IobufPoolStats,
    /// Large pool counters.
    pub large_pool: IobufPoolStats,
}

#[derive(Default)]
struct Counters {
    v: [AtomicU64; 6],
}

const CACHE: usize = 0;
const MAIN: usize = 1;
const RETRY: usize = 2;

impl Counters {
    fn bump(&self, class: Class, what: usize) {
        self.v[class as usize * 3 + what].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> [u64; 6] {
        std::array::from_fn(|i| self.v[i].load(Ordering::Relaxed))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Small = 0,
    Large = 1,
}

struct PoolClass {
    _mem: DmaBuf,
    base: NonNull<u8>,
    bufsize: usize,
    count: usize,
    free: Ring<u32>,
}

/// A pair of buffer pools. The global one is reached through the free functions; separate
/// pools ([`IobufPool::new`]) are for tests and special uses. Pools are never freed (as SPDK's
/// live until the app exits).
pub struct IobufPool {
    id: u64,
    opts: IobufOpts,
    classes: [PoolClass; 2],
    modules: Mutex<Vec<(String, Arc<Counters>)>>,
    retired: Mutex<Vec<(String, [u64; 6])>>,
    default_counters: Arc<Counters>,
}

// SAFETY: the raw base pointers refer to the pool's own DMA memory; each buffer index is owned
// by exactly one party at a time (the ring, a cache, or an IoBuf), handed over through the
// lock-free ring or a Thread-local cache.
unsafe impl Send for IobufPool {}
// SAFETY: as above; shared state is the rings (lock-free, Sync) and Mutex-protected lists.
unsafe impl Sync for IobufPool {}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn make_class(count: u64, bufsize: u32) -> Result<PoolClass, EnvError> {
    let count = usize::try_from(count).map_err(|_| EnvError::InvalidArgument("count".into()))?;
    let bufsize = (bufsize as usize).next_multiple_of(IOBUF_ALIGNMENT);
    let total = count
        .checked_mul(bufsize)
        .ok_or_else(|| EnvError::InvalidArgument("pool size overflows".into()))?;
    let mut mem = DmaBuf::alloc(total, IOBUF_ALIGNMENT)?;
    let base = NonNull::new(mem.as_mut_ptr())
        .ok_or_else(|| EnvError::InvalidArgument("null pool memory".into()))?;
    let free = Ring::new(count);
    for i in 0..count {
        // count fits u32 (checked in IobufOpts::checked) and the ring holds >= count.
        let _ = free.push(i as u32);
    }
    Ok(PoolClass {
        _mem: mem,
        base,
        bufsize,
        count,
        free,
    })
}

impl IobufPool {
    /// Creates a pool pair with `opts` (checked as `iobuf_set_options`, including that the
    /// system has the memory for it: else [`EnvError::NoMemory`] before anything is
    /// allocated), backed by [`DmaBuf`]. The pool lives for the rest of the process.
    pub fn new(opts: IobufOpts) -> Result<&'static IobufPool, EnvError> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let mut opts = opts.checked()?;
        opts.check_memory()?;
        let small = make_class(opts.small_pool_count, opts.small_bufsize)?;
        let large = make_class(opts.large_pool_count, opts.large_bufsize)?;
        opts.small_bufsize = u32::try_from(small.bufsize).unwrap_or(u32::MAX);
        opts.large_bufsize = u32::try_from(large.bufsize).unwrap_or(u32::MAX);
        let default_counters = Arc::new(Counters::default());
        let pool = IobufPool {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            opts,
            classes: [small, large],
            modules: Mutex::new(vec![(DEFAULT_MODULE.to_owned(), default_counters.clone())]),
            retired: Mutex::new(Vec::new()),
            default_counters,
        };
        Ok(Box::leak(Box::new(pool)))
    }

    /// The options in force (sizes rounded up to [`IOBUF_ALIGNMENT`]).
    pub fn opts(&self) -> IobufOpts {
        self.opts
    }

    /// Free buffers in the global rings (small, large), not counting Thread caches.
    pub fn free_counts(&self) -> (usize, usize) {
        (self.classes[0].free.len(), self.classes[1].free.len())
    }

    fn class_for(&self, len: usize) -> Option<Class> {
        if len <= self.classes[0].bufsize {
            Some(Class::Small)
        } else if len <= self.classes[1].bufsize {
            Some(Class::Large)
        } else {
            None
        }
    }

    fn make_buf(&'static self, class: Class, idx: u32, len: usize) -> IoBuf {
        let c = &self.classes[class as usize];
        debug_assert!((idx as usize) < c.count);
        // SAFETY: idx < count, so the offset stays inside the pool's DMA allocation.
        let ptr = unsafe { c.base.add(idx as usize * c.bufsize) };
        IoBuf {
            pool: self,
            class,
            idx,
            ptr,
            len,
        }
    }

    fn give_back(&self, class: Class, idx: u32) {
        if self.classes[class as usize].free.push_spin(idx).is_err() {
            tracing::error!(idx, "iobuf ring overflow (double free?)");
        }
    }

    /// Per-module counters, summed over every channel ever opened (SPDK `iobuf_get_stats`).
    pub fn stats(&self) -> Vec<IobufModuleStats> {
        let mut out: Vec<(String, [u64; 6])> = Vec::new();
        let mut add = |name: &str, v: [u64; 6]| {
            let e = match out.iter_mut().position(|(n, _)| n == name) {
                Some(i) => &mut out[i].1,
                None => {
                    out.push((name.to_owned(), [0; 6]));
                    let last = out.len() - 1;
                    &mut out[last].1
                }
            };
            for i in 0..6 {
                e[i] += v[i];
            }
        };
        for (n, c) in lock(&self.modules).iter() {
            add(n, c.snapshot());
        }
        for (n, v) in lock(&self.retired).iter() {
            add(n, *v);
        }
        out.into_iter()
            .map(|(module, v)| IobufModuleStats {
                module,
                small_pool: IobufPoolStats {
                    cache: v[0],
                    main: v[1],
                    retry: v[2],
                },
                large_pool: IobufPoolStats {
                    cache: v[3],
                    main: v[4],
                    retry: v[5],
                },
            })
            .collect()
    }
}

impl std::fmt::Debug for IobufPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IobufPool")
            .field("opts", &self.opts)
            .field("free", &self.free_counts())
            .finish()
    }
}

/// A buffer from a pool: derefs to `len` bytes (the length asked for) of a `capacity`-byte,
/// 4 KiB-aligned DMA buffer. `Send`. Returned to the pool on drop.
pub struct IoBuf {
    pool: &'static IobufPool,
    class: Class,
    idx: u32,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: an IoBuf exclusively owns its buffer (one index, never shared) inside pool memory
// that lives for the process.
unsafe impl Send for IoBuf {}
// SAFETY: as above; mutation needs &mut.
unsafe impl Sync for IoBuf {}

impl IoBuf {
    /// The length asked for.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the length asked for was 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer's full size (the pool's buffer size).
    pub fn capacity(&self) -> usize {
        self.pool.classes[self.class as usize].bufsize
    }

    /// Changes the visible length; false (unchanged) if `len > capacity()`.
    pub fn set_len(&mut self, len: usize) -> bool {
        if len > self.capacity() {
            return false;
        }
        self.len = len;
        true
    }
}

impl std::ops::Deref for IoBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` (len <= capacity) lies in the pool's live DMA memory and is
        // owned exclusively by this IoBuf.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for IoBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl std::fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoBuf")
            .field("class", &self.class)
            .field("idx", &self.idx)
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        match Thread::current().filter(|t| !t.is_exited()) {
            Some(t) => thread_cache(&t.inner, self.pool).put(self.class, self.idx),
            None => self.pool.give_back(self.class, self.idx),
        }
    }
}

type WaitCb = Box<dyn FnOnce(IoBuf)>;

struct Waiter {
    len: usize,
    cb: WaitCb,
}

/// A Thread's cache in front of one pool, and its waiters.
pub(crate) struct ThreadCache {
    pool: &'static IobufPool,
    cache: [RefCell<Vec<u32>>; 2],
    waiters: [RefCell<VecDeque<Waiter>>; 2],
    waiting: Cell<usize>,
}

impl ThreadCache {
    fn cache_size(class: Class) -> usize {
        match class {
            Class::Small => SMALL_CACHE_SIZE,
            Class::Large => LARGE_CACHE_SIZE,
        }
    }

    /// Takes a buffer index from the cache or, in a batch, from the ring.
    fn take(&self, class: Class, counters: &Counters) -> Option<u32> {
        let c = class as usize;
        if let Some(i) = self.cache[c].borrow_mut().pop() {
            counters.bump(class, CACHE);
            return Some(i);
        }
        let ring = &self.pool.classes[c].free;
        let first = ring.pop()?;
        counters.bump(class, MAIN);
        let batch = BATCH_SIZE.min(Self::cache_size(class).max(1));
        let mut cache = self.cache[c].borrow_mut();
        for _ in 1..batch {
            match ring.pop() {
                Some(i) => cache.push(i),
                None => break,
            }
        }
        Some(first)
    }

    fn put(&self, class: Class, idx: u32) {
        let c = class as usize;
        let mut cache = self.cache[c].borrow_mut();
        cache.push(idx);
        if self.waiters[c].borrow().is_empty() {
            let size = Self::cache_size(class);
            let batch = BATCH_SIZE.min(size);
            if cache.len() >= size + batch.max(1) {
                let n = batch.max(1);
                let start = cache.len() - n;
                for i in cache.drain(start..) {
                    self.pool.give_back(class, i);
                }
            }
        }
    }

    fn release(&self) {
        for class in [Class::Small, Class::Large] {
            let c = class as usize;
            for i in self.cache[c].borrow_mut().drain(..) {
                self.pool.give_back(class, i);
            }
            let n = self.waiters[c].borrow().len();
            if n > 0 {
                tracing::warn!(
                    waiters = n,
                    "thread exits with iobuf waiters; dropping them"
                );
            }
            let dropped = std::mem::take(&mut *self.waiters[c].borrow_mut());
            drop(dropped);
        }
        self.waiting.set(0);
    }

    /// Serves waiters in order while buffers are available; true if any was served.
    fn serve(&self) -> bool {
        let mut served = false;
        for class in [Class::Small, Class::Large] {
            let c = class as usize;
            loop {
                if self.waiters[c].borrow().is_empty() {
                    break;
                }
                let Some(idx) = self.take_quiet(class) else {
                    break;
                };
                let Some(w) = self.waiters[c].borrow_mut().pop_front() else {
                    self.put(class, idx);
                    break;
                };
                self.waiting.set(self.waiting.get().saturating_sub(1));
                served = true;
                (w.cb)(self.pool.make_buf(class, idx, w.len));
            }
        }
        served
    }

    fn take_quiet(&self, class: Class) -> Option<u32> {
        let c = class as usize;
        let cached = self.cache[c].borrow_mut().pop();
        cached.or_else(|| self.pool.classes[c].free.pop())
    }
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        self.release();
    }
}

fn thread_cache(inner: &ThreadInner, pool: &'static IobufPool) -> Rc<ThreadCache> {
    if let Some(c) = inner.iobuf.borrow().iter().find(|c| c.pool.id == pool.id) {
        return c.clone();
    }
    let c = Rc::new(ThreadCache {
        pool,
        cache: [RefCell::new(Vec::new()), RefCell::new(Vec::new())],
        waiters: [RefCell::new(VecDeque::new()), RefCell::new(VecDeque::new())],
        waiting: Cell::new(0),
    });
    inner.iobuf.borrow_mut().push(c.clone());
    c
}

/// Called from `Thread::poll`: serves iobuf waiters; true if any was served.
pub(crate) fn serve_waiters(inner: &ThreadInner) -> bool {
    let caches: Vec<Rc<ThreadCache>> = {
        let v = inner.iobuf.borrow();
        if v.iter().all(|c| c.waiting.get() == 0) {
            return false;
        }
        v.iter().filter(|c| c.waiting.get() > 0).cloned().collect()
    };
    let mut busy = false;
    for c in caches {
        busy |= c.serve();
    }
    busy
}

/// True if a Thread has iobuf waiters.
pub(crate) fn has_waiters(inner: &ThreadInner) -> bool {
    inner.iobuf.borrow().iter().any(|c| c.waiting.get() > 0)
}

/// Called at Thread exit: returns cached buffers to the rings, drops waiters.
pub(crate) fn release_thread_caches(inner: &ThreadInner) {
    let caches = std::mem::take(&mut *inner.iobuf.borrow_mut());
    for c in &caches {
        c.release();
    }
}

/// A module's access to a pool on one Thread (SPDK `spdk_iobuf_channel`). `!Send`.
pub struct IobufChannel {
    cache: Rc<ThreadCache>,
    module: String,
    counters: Arc<Counters>,
    /// False for the shared default counters, which stay registered.
    owns_counters: bool,
}

impl IobufChannel {
    /// Opens a channel of `module` on the current Thread to the global pool (initialising it
    /// with the options set so far).
    pub fn new(module: &str) -> Result<IobufChannel, EnvError> {
        IobufChannel::with_pool(iobuf_initialize()?, module)
    }

    /// Opens a channel of `module` on the current Thread to `pool`.
    pub fn with_pool(pool: &'static IobufPool, module: &str) -> Result<IobufChannel, EnvError> {
        let t = Thread::current().ok_or(EnvError::NoCurrentThread)?;
        if t.is_exited() {
            return Err(EnvError::ThreadExited(t.name()));
        }
        let counters = Arc::new(Counters::default());
        lock(&pool.modules).push((module.to_owned(), counters.clone()));
        Ok(IobufChannel {
            cache: thread_cache(&t.inner, pool),
            module: module.to_owned(),
            counters,
            owns_counters: true,
        })
    }

    /// The module name.
    pub fn module(&self) -> &str {
        &self.module
    }

    /// A buffer of at least `len` bytes from the Thread's cache, else the global pool; `None`
    /// if both are empty or `len` exceeds the large buffer size.
    pub fn get(&self, len: usize) -> Option<IoBuf> {
        let class = self.cache.pool.class_for(len)?;
        let idx = self.cache.take(class, &self.counters)?;
        Some(self.cache.pool.make_buf(class, idx, len))
    }

    /// As [`IobufChannel::get`], but when no buffer is available queues `cb` (SPDK's
    /// `spdk_iobuf_get` with an entry): returns `Ok(Some(buf))` at once if one is available
    /// (then `cb` is dropped unused), `Ok(None)` if `cb` was queued; queued callbacks run in
    /// order on this Thread's polls as buffers come back. Errors with
    /// [`EnvError::IobufTooLarge`] if `len` exceeds the large buffer size.
    pub fn get_or_wait(
        &self,
        len: usize,
        cb: impl FnOnce(IoBuf) + 'static,
    ) -> Result<Option<IoBuf>, EnvError> {
        let pool = self.cache.pool;
        let class = pool.class_for(len).ok_or(EnvError::IobufTooLarge {
            len,
            max: pool.classes[1].bufsize,
        })?;
        if self.cache.waiters[class as usize].borrow().is_empty()
            && let Some(idx) = self.cache.take(class, &self.counters)
        {
            return Ok(Some(pool.make_buf(class, idx, len)));
        }
        self.counters.bump(class, RETRY);
        self.cache.waiters[class as usize]
            .borrow_mut()
            .push_back(Waiter {
                len,
                cb: Box::new(cb),
            });
        self.cache.waiting.set(self.cache.waiting.get() + 1);
        Ok(None)
    }
}

impl Drop for IobufChannel {
    fn drop(&mut self) {
        if !self.owns_counters {
            return;
        }
        let mut mods = lock(&self.cache.pool.modules);
        if let Some(i) = mods
            .iter()
            .position(|(_, c)| Arc::ptr_eq(c, &self.counters))
        {
            mods.swap_remove(i);
        }
        drop(mods);
        lock(&self.cache.pool.retired).push((self.module.clone(), self.counters.snapshot()));
    }
}

impl std::fmt::Debug for IobufChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IobufChannel")
            .field("module", &self.module)
            .finish()
    }
}

static OPTS: Mutex<Option<IobufOpts>> = Mutex::new(None);
static POOL: OnceLock<&'static IobufPool> = OnceLock::new();

/// Sets the global pools' options (SPDK `iobuf_set_options`); only before they are
/// initialised, else [`EnvError::IobufInitialized`]. Counts below the minimum or above
/// [`MAX_POOL_COUNT`] are refused ([`EnvError::InvalidArgument`]), sizes below the minimum
/// raised; pools needing more memory than the system can give are refused
/// ([`EnvError::NoMemory`]).
pub fn iobuf_set_options(opts: IobufOpts) -> Result<(), EnvError> {
    let mut g = lock(&OPTS);
    if POOL.get().is_some() {
        return Err(EnvError::IobufInitialized);
    }
    let opts = opts.checked()?;
    opts.check_memory()?;
    *g = Some(opts);
    Ok(())
}

/// The global pools' options (after initialisation: with sizes rounded to 4 KiB).
pub fn iobuf_get_options() -> IobufOpts {
    match POOL.get() {
        Some(p) => p.opts(),
        None => lock(&OPTS).unwrap_or_default(),
    }
}

/// Initialises the global pools (idempotent; the first get does it too).
pub fn iobuf_initialize() -> Result<&'static IobufPool, EnvError> {
    if let Some(p) = POOL.get() {
        return Ok(p);
    }
    let g = lock(&OPTS);
    if let Some(p) = POOL.get() {
        return Ok(p);
    }
    let p = IobufPool::new(g.unwrap_or_default())?;
    let _ = POOL.set(p);
    tracing::info!(opts = ?p.opts(), "iobuf pools initialised");
    Ok(p)
}

/// True once the global pools exist.
pub fn iobuf_is_initialized() -> bool {
    POOL.get().is_some()
}

/// A global-pool buffer of at least `len` bytes, accounted to [`DEFAULT_MODULE`]: from the
/// current Thread's cache, else the global ring (also off a Thread). `None` if none is free,
/// `len` exceeds the large buffer size, or the pools cannot be initialised.
pub fn iobuf_get(len: usize) -> Option<IoBuf> {
    let pool = iobuf_initialize().ok()?;
    let class = pool.class_for(len)?;
    let idx = match Thread::current().filter(|t| !t.is_exited()) {
        Some(t) => thread_cache(&t.inner, pool).take(class, &pool.default_counters)?,
        None => {
            let i = pool.classes[class as usize].free.pop()?;
            pool.default_counters.bump(class, MAIN);
            i
        }
    };
    Some(pool.make_buf(class, idx, len))
}

/// [`IobufChannel::get_or_wait`] on the current Thread's default channel to the global pool.
/// Errors off a Thread ([`EnvError::NoCurrentThread`]).
pub fn iobuf_get_or_wait(
    len: usize,
    cb: impl FnOnce(IoBuf) + 'static,
) -> Result<Option<IoBuf>, EnvError> {
    let pool = iobuf_initialize()?;
    let t = Thread::current().ok_or(EnvError::NoCurrentThread)?;
    let ch = IobufChannel {
        cache: thread_cache(&t.inner, pool),
        module: DEFAULT_MODULE.to_owned(),
        counters: pool.default_counters.clone(),
        owns_counters: false,
    };
    ch.get_or_wait(len, cb)
}

/// Per-module counters of the global pools (SPDK `iobuf_get_stats`); empty before init.
pub fn iobuf_get_stats() -> Vec<IobufModuleStats> {
    POOL.get().map(|p| p.stats()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestThreads;

    fn small_pool() -> &'static IobufPool {
        IobufPool::new(IobufOpts {
            small_pool_count: 64,
            large_pool_count: 8,
            small_bufsize: 4096,
            large_bufsize: 8192,
            enable_numa: false,
        })
        .unwrap()
    }

    fn stats_of(pool: &IobufPool, module: &str) -> IobufModuleStats {
        pool.stats()
            .into_iter()
            .find(|m| m.module == module)
            .unwrap()
    }

    #[test]
    fn get_counts_main_then_cache_and_fills_the_cache_in_a_batch() {
        let pool = small_pool();
        let tt = TestThreads::new(1);
        tt.set_current(0);
        let ch = IobufChannel::with_pool(pool, "mod_a").unwrap();
        let a = ch.get(100).unwrap();
        assert_eq!((a.len(), a.capacity()), (100, 4096));
        assert_eq!(a.as_ptr() as usize % IOBUF_ALIGNMENT, 0);
        // one batch of 32 left the ring: 1 returned, 31 cached
        assert_eq!(pool.free_counts(), (32, 8));
        let b = ch.get(4096).unwrap();
        let c = ch.get(4097).unwrap();
        assert_eq!(c.capacity(), 8192);
        let s = stats_of(pool, "mod_a");
        assert_eq!(
            s.small_pool,
            IobufPoolStats {
                cache: 1,
                main: 1,
                retry: 0
            }
        );
        assert_eq!(
            s.large_pool,
            IobufPoolStats {
                cache: 0,
                main: 1,
                retry: 0
            }
        );
        drop((a, b, c));
        drop(ch);
        // counters survive the channel
        assert_eq!(stats_of(pool, "mod_a").small_pool.cache, 1);
        tt.clear_current();
    }

    #[test]
    fn too_large_requests_are_refused() {
        let pool = small_pool();
        let tt = TestThreads::new(1);
        tt.set_current(0);
        let ch = IobufChannel::with_pool(pool, "m").unwrap();
        assert!(ch.get(8193).is_none());
        assert!(matches!(
            ch.get_or_wait(8193, |_| {}),
            Err(EnvError::IobufTooLarge {
                len: 8193,
                max: 8192
            })
        ));
        tt.clear_current();
    }

    #[test]
    fn waiters_are_served_in_order_as_buffers_return() {
        let pool = small_pool();
        let tt = TestThreads::new(1);
        tt.set_current(0);
        let ch = IobufChannel::with_pool(pool, "w").unwrap();
        let mut held: Vec<IoBuf> = (0..8).map(|_| ch.get(5000).unwrap()).collect();
        assert!(ch.get(5000).is_none());
        let log = Rc::new(RefCell::new(Vec::new()));
        let kept = Rc::new(RefCell::new(Vec::new()));
        for i in 1..=3 {
            let (l, k) = (log.clone(), kept.clone());
            let r = ch.get_or_wait(6000, move |b: IoBuf| {
                l.borrow_mut().push((i, b.len()));
                k.borrow_mut().push(b);
            });
            assert!(matches!(r, Ok(None)));
        }
        assert_eq!(stats_of(pool, "w").large_pool.retry, 3);
        held.pop();
        tt.clear_current();
        tt.poll_threads();
        assert_eq!(*log.borrow(), vec![(1, 6000)]);
        tt.set_current(0);
        held.pop();
        held.pop();
        tt.clear_current();
        tt.poll_threads();
        assert_eq!(*log.borrow(), vec![(1, 6000), (2, 6000), (3, 6000)]);
        tt.set_current(0);
        drop(held);
        kept.borrow_mut().clear();
        drop(ch);
        tt.clear_current();
        tt.thread(0).exit();
        assert_eq!(pool.free_counts(), (64, 8));
    }

    #[test]
    fn waiter_is_served_when_another_thread_frees_to_the_ring() {
        let pool = small_pool();
        let tt = TestThreads::new(1);
        let held: Vec<IoBuf> = (0..8)
            .map(|_| {
                let c = pool.classes[1].free.pop().unwrap();
                pool.make_buf(Class::Large, c, 8192)
            })
            .collect();
        tt.set_current(0);
        let ch = IobufChannel::with_pool(pool, "x").unwrap();
        let got = Rc::new(Cell::new(false));
        let g = got.clone();
        assert!(matches!(
            ch.get_or_wait(8192, move |_| g.set(true)),
            Ok(None)
        ));
        assert!(tt.thread(0).has_pending_work());
        tt.clear_current();
        // returned off any Thread: goes to the global ring
        std::thread::spawn(move || drop(held)).join().unwrap();
        assert_eq!(pool.free_counts().1, 8);
        tt.poll_threads();
        assert!(got.get());
        assert!(!tt.thread(0).has_pending_work());
        tt.set_current(0);
        drop(ch);
        tt.clear_current();
    }

    #[test]
    fn thread_exit_returns_cached_buffers_to_the_rings() {
        let pool = small_pool();
        let tt = TestThreads::new(1);
        tt.set_current(0);
        let ch = IobufChannel::with_pool(pool, "e").unwrap();
        let b = ch.get(10).unwrap();
        drop(b);
        drop(ch);
        assert_eq!(pool.free_counts(), (32, 8));
        tt.clear_current();
        tt.thread(0).exit();
        assert_eq!(pool.free_counts(), (64, 8));
    }

    #[test]
    fn options_are_checked_and_serialise_with_spdk_names() {
        let bad = IobufOpts {
            small_pool_count: 63,
            ..IobufOpts::default()
        };
        assert!(matches!(
            IobufPool::new(bad),
            Err(EnvError::InvalidArgument(_))
        ));
        let bad = IobufOpts {
            large_pool_count: 7,
            ..IobufOpts::default()
        };
        assert!(matches!(
            IobufPool::new(bad),
            Err(EnvError::InvalidArgument(_))
        ));
        let raised = IobufOpts {
            small_pool_count: 64,
            large_pool_count: 8,
            small_bufsize: 100,
            large_bufsize: 100,
            enable_numa: false,
        }
        .checked()
        .unwrap();
        assert_eq!((raised.small_bufsize, raised.large_bufsize), (4096, 8192));
        let json = serde_json::to_string(&IobufOpts::default()).unwrap();
        assert_eq!(
            json,
            r#"{"small_pool_count":8192,"large_pool_count":1024,"small_bufsize":8192,"large_bufsize":135168,"enable_numa":false}"#
        );
        let o: IobufOpts = serde_json::from_str(r#"{"small_pool_count":100}"#).unwrap();
        assert_eq!(o.small_pool_count, 100);
        assert_eq!(o.large_pool_count, 1024);
        assert!(serde_json::from_str::<IobufOpts>(r#"{"bogus":1}"#).is_err());
        let st = IobufModuleStats {
            module: "bdev".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&st).unwrap(),
            r#"{"module":"bdev","small_pool":{"cache":0,"main":0,"retry":0},"large_pool":{"cache":0,"main":0,"retry":0}}"#
        );
    }

    #[test]
    fn pool_counts_above_the_maximum_are_refused() {
        for (small, large, text) in [
            (
                MAX_POOL_COUNT + 1,
                1024,
                "invalid argument: small_pool_count 4194305 exceeds the maximum 4194304",
            ),
            (
                8192,
                u64::MAX,
                "invalid argument: large_pool_count 18446744073709551615 exceeds the maximum 4194304",
            ),
        ] {
            let o = IobufOpts {
                small_pool_count: small,
                large_pool_count: large,
                ..IobufOpts::default()
            };
            let e = IobufPool::new(o).unwrap_err();
            assert!(matches!(e, EnvError::InvalidArgument(_)));
            assert_eq!(e.to_string(), text);
        }
        let max = IobufOpts {
            small_pool_count: MAX_POOL_COUNT,
            large_pool_count: MAX_POOL_COUNT,
            ..IobufOpts::default()
        };
        assert_eq!(max.checked().unwrap(), max);
    }

    #[test]
    fn pools_larger_than_available_memory_are_refused_before_allocating() {
        assert_eq!(
            IobufOpts::default().checked().unwrap().pool_bytes(),
            8192 * 8192 + 8192 * 16 + 1024 * 135_168 + 1024 * 16
        );
        // 4 Mi buffers of 4 GiB: 16 PiB, more than any machine has.
        let huge = IobufOpts {
            small_pool_count: MAX_POOL_COUNT,
            small_bufsize: u32::MAX,
            ..IobufOpts::default()
        };
        let bytes = MAX_POOL_COUNT * (1 << 32) + MAX_POOL_COUNT * 16 + 1024 * 135_168 + 1024 * 16;
        assert_eq!(huge.checked().unwrap().pool_bytes(), bytes);
        match IobufPool::new(huge) {
            Err(EnvError::NoMemory {
                requested,
                available,
            }) => {
                assert_eq!(requested, bytes);
                assert!(available < bytes);
            }
            other => panic!("expected NoMemory, got {other:?}"),
        }
        // Just above what this machine has (with 1 GiB to spare for other jobs' churn), below
        // the 1 TiB DmaBuf cap that was the only limit before: refused, nothing allocated.
        let avail = crate::dma::mem_available().unwrap();
        let size = ((avail + (1 << 30)) / MAX_POOL_COUNT + 1).next_multiple_of(4096);
        let above = IobufOpts {
            small_pool_count: MAX_POOL_COUNT,
            small_bufsize: u32::try_from(size).unwrap(),
            ..IobufOpts::default()
        };
        assert!(above.pool_bytes() < crate::dma::MAX_DMA_ALLOC as u64);
        assert!(matches!(
            IobufPool::new(above),
            Err(EnvError::NoMemory { requested, .. }) if requested == above.pool_bytes()
        ));
        // The default pools fit (they are what every target starts with).
        assert!(IobufOpts::default().check_memory().is_ok());
    }

    #[test]
    fn global_options_are_refused_after_initialisation() {
        let small = IobufOpts {
            small_pool_count: 64,
            large_pool_count: 8,
            small_bufsize: 4096,
            large_bufsize: 8192,
            enable_numa: false,
        };
        iobuf_set_options(small).unwrap();
        assert_eq!(iobuf_get_options(), small);
        let b = iobuf_get(4096).unwrap();
        assert_eq!(b.len(), 4096);
        assert!(iobuf_is_initialized());
        assert!(matches!(
            iobuf_set_options(IobufOpts::default()),
            Err(EnvError::IobufInitialized)
        ));
        assert!(iobuf_get(8193).is_none());
        assert!(matches!(
            iobuf_get_or_wait(10, |_| {}),
            Err(EnvError::NoCurrentThread)
        ));
        drop(b);
        let s = iobuf_get_stats();
        assert_eq!(s[0].module, DEFAULT_MODULE);
        assert_eq!(s[0].small_pool.main, 1);
    }
}
