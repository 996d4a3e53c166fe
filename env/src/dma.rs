//! DMA-able memory (SPDK `spdk_dma_zmalloc` / `spdk_zmalloc`).
//!
//! A [`DmaBuf`] is zeroed, aligned memory from its own anonymous mapping: backed by hugepages
//! (`MAP_HUGETLB`) when the system has enough free ones, else ordinary pages locked in memory
//! with `mlock` (if locking fails, e.g. `RLIMIT_MEMLOCK`, a warning is logged once and the
//! memory stays unlocked). No setup is needed; [`DmaBuf::backing`] tells which was used.

use crate::EnvError;
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The largest single allocation accepted (1 TiB): anything above is refused as absurd.
pub const MAX_DMA_ALLOC: usize = 1 << 40;
/// The largest alignment accepted (1 GiB).
pub const MAX_DMA_ALIGN: usize = 1 << 30;

/// What memory backs a [`DmaBuf`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaBacking {
    /// Hugepages (`MAP_HUGETLB`): pinned, physically contiguous per hugepage.
    Hugepages,
    /// Ordinary pages locked with `mlock`.
    Locked,
    /// Ordinary pages that could not be locked.
    Unlocked,
}

/// Bytes currently allocated per backing, and live allocations ([`mem_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemStats {
    /// Bytes mapped from hugepages.
    pub hugepage_bytes: u64,
    /// Bytes of locked ordinary pages.
    pub locked_bytes: u64,
    /// Bytes of unlocked ordinary pages.
    pub unlocked_bytes: u64,
    /// Live [`DmaBuf`]s.
    pub allocations: u64,
}

static HUGE_BYTES: AtomicU64 = AtomicU64::new(0);
static LOCKED_BYTES: AtomicU64 = AtomicU64::new(0);
static UNLOCKED_BYTES: AtomicU64 = AtomicU64::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

/// Current memory accounting of all live [`DmaBuf`]s.
pub fn mem_stats() -> MemStats {
    MemStats {
        hugepage_bytes: HUGE_BYTES.load(Ordering::Relaxed),
        locked_bytes: LOCKED_BYTES.load(Ordering::Relaxed),
        unlocked_bytes: UNLOCKED_BYTES.load(Ordering::Relaxed),
        allocations: ALLOCS.load(Ordering::Relaxed),
    }
}

/// Memory the system can still give to new [`DmaBuf`]s, in bytes (from `/proc/meminfo`,
/// read on each call): free hugepages, plus `MemAvailable` minus the bytes of live unlocked
/// `DmaBuf`s. Unlocked memory is mapped but not necessarily touched yet, so the kernel does not
/// count it as used although every byte of it may become resident; locked memory is resident
/// (`mlock` faults it in) and hugepages come from their own pool, so both are already counted
/// by the kernel and subtracting them again would count them twice. `None` if `/proc/meminfo`
/// cannot be read or has no `MemAvailable` (then no limit can be checked).
pub fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    available_from(&info, &mem_stats())
}

/// [`mem_available`] from the text of `/proc/meminfo` and the current accounting.
fn available_from(meminfo: &str, stats: &MemStats) -> Option<u64> {
    let kib = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let available = kib("MemAvailable:")?.saturating_mul(1024);
    let huge = kib("HugePages_Free:")
        .unwrap_or(0)
        .saturating_mul(kib("Hugepagesize:").unwrap_or(0).saturating_mul(1024));
    Some(
        available
            .saturating_sub(stats.unlocked_bytes)
            .saturating_add(huge),
    )
}

/// Checks that `len` bytes of DMA memory can be allocated before allocating them (SPDK fails
/// such an allocation with ENOMEM from its fixed hugepage memory; here the limit is what the
/// system has, [`mem_available`]). Refusal: [`EnvError::NoMemory`], logged. Succeeds when the
/// available memory is unknown. `what` names the allocation in the log line.
pub fn check_available(len: u64, what: &str) -> Result<(), EnvError> {
    let Some(available) = mem_available() else {
        return Ok(());
    };
    check_against(len, available, what)
}

fn check_against(len: u64, available: u64, what: &str) -> Result<(), EnvError> {
    if len > available {
        tracing::error!(
            requested = len,
            available,
            "{what}: {len} bytes of DMA memory requested, only {available} available"
        );
        return Err(EnvError::NoMemory {
            requested: len,
            available,
        });
    }
    Ok(())
}

fn counter(b: DmaBacking) -> &'static AtomicU64 {
    match b {
        DmaBacking::Hugepages => &HUGE_BYTES,
        DmaBacking::Locked => &LOCKED_BYTES,
        DmaBacking::Unlocked => &UNLOCKED_BYTES,
    }
}

/// Zeroed, aligned, DMA-able memory; `Send + Sync`, freed (unmapped) on drop.
pub struct DmaBuf {
    map: NonNull<u8>,
    map_len: usize,
    ptr: NonNull<u8>,
    len: usize,
    backing: DmaBacking,
}

// SAFETY: DmaBuf exclusively owns its mapping; shared access is read-only through &self.
unsafe impl Send for DmaBuf {}
// SAFETY: as above; mutation needs &mut self.
unsafe impl Sync for DmaBuf {}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory arguments.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

/// `(Hugepagesize, HugePages_Free)` from /proc/meminfo.
fn hugepages() -> (usize, usize) {
    static SIZE: OnceLock<usize> = OnceLock::new();
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<usize>().ok())
    };
    let size = *SIZE.get_or_init(|| field("Hugepagesize:").map_or(0, |kb| kb * 1024));
    (size, field("HugePages_Free:").unwrap_or(0))
}

fn round_up(v: usize, to: usize) -> Option<usize> {
    v.checked_add(to - 1).map(|x| x / to * to)
}

fn mmap(len: usize, extra_flags: i32) -> Option<NonNull<u8>> {
    // SAFETY: anonymous private mapping of `len` bytes at an address of the kernel's choosing;
    // no existing memory is affected. The result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra_flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        NonNull::new(p.cast())
    }
}

impl DmaBuf {
    /// Allocates `len` zeroed bytes aligned to `align`. Errors ([`EnvError::InvalidArgument`])
    /// for `len == 0`, `len > MAX_DMA_ALLOC`, `align` not a power of two or above
    /// `MAX_DMA_ALIGN`; [`EnvError::Os`] if the system has no memory for it.
    pub fn alloc(len: usize, align: usize) -> Result<DmaBuf, EnvError> {
        if len == 0 {
            return Err(EnvError::InvalidArgument("DMA buffer length 0".into()));
        }
        if len > MAX_DMA_ALLOC {
            return Err(EnvError::InvalidArgument(format!(
                "DMA buffer length {len} exceeds {MAX_DMA_ALLOC}"
            )));
        }
        if !align.is_power_of_two() || align > MAX_DMA_ALIGN {
            return Err(EnvError::InvalidArgument(format!(
                "DMA alignment {align} is not a power of two up to {MAX_DMA_ALIGN}"
            )));
        }
        let (hsize, hfree) = hugepages();
        if hsize > 0 && hfree > 0 {
            let extra = if align > hsize { align } else { 0 };
            if let Some(map_len) = len.checked_add(extra).and_then(|l| round_up(l, hsize))
                && map_len / hsize <= hfree
                && let Some(map) = mmap(map_len, libc::MAP_HUGETLB)
            {
                return Ok(DmaBuf::place(
                    map,
                    map_len,
                    len,
                    align,
                    DmaBacking::Hugepages,
                ));
            }
        }
        let page = page_size();
        let extra = if align > page { align } else { 0 };
        let map_len = len
            .checked_add(extra)
            .and_then(|l| round_up(l, page))
            .ok_or_else(|| EnvError::InvalidArgument(format!("DMA buffer length {len}")))?;
        let map = mmap(map_len, 0).ok_or_else(|| EnvError::last_os("mmap"))?;
        // SAFETY: locks our own freshly created mapping of `map_len` bytes.
        let locked = unsafe { libc::mlock(map.as_ptr().cast(), map_len) } == 0;
        if !locked {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %std::io::Error::last_os_error(),
                    "mlock failed; DMA memory stays unlocked (raise RLIMIT_MEMLOCK or configure hugepages)");
            }
        }
        let backing = if locked {
            DmaBacking::Locked
        } else {
            DmaBacking::Unlocked
        };
        Ok(DmaBuf::place(map, map_len, len, align, backing))
    }

    fn place(map: NonNull<u8>, map_len: usize, len: usize, align: usize, b: DmaBacking) -> DmaBuf {
        let off = map.as_ptr().align_offset(align);
        // SAFETY: `off < align` and the mapping has `align` extra bytes whenever `align` exceeds
        // the mapping's own (page) alignment, so `off + len <= map_len`.
        let ptr = unsafe { map.add(off) };
        counter(b).fetch_add(map_len as u64, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        DmaBuf {
            map,
            map_len,
            ptr,
            len,
            backing: b,
        }
    }

    /// The length asked for.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (zero-length buffers are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What backs the memory.
    pub fn backing(&self) -> DmaBacking {
        self.backing
    }

    /// Start of the buffer.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Start of the buffer, writable.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` lies in our live mapping, initialised (zeroed) by the kernel,
        // and is only mutated through `&mut self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as `as_slice`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::Deref for DmaBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for DmaBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `alloc`, which nothing references any
        // more (slices borrow `self`).
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_len) };
        counter(self.backing).fetch_sub(self.map_len as u64, Ordering::Relaxed);
        ALLOCS.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for DmaBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaBuf")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("backing", &self.backing)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_zeroed_and_writable() {
        for (len, align) in [
            (1, 1),
            (4096, 4096),
            (100, 64),
            (10_000, 1 << 16),
            (3 << 20, 1 << 21),
        ] {
            let mut b = DmaBuf::alloc(len, align).unwrap();
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % align, 0, "len {len} align {align}");
            assert!(b.as_slice().iter().all(|x| *x == 0));
            b.as_mut_slice()[len - 1] = 0xa5;
            b[0] = 0x5a;
            assert_eq!(
                (b[0], b[len - 1]),
                (0x5a, if len == 1 { 0x5a } else { 0xa5 })
            );
            // SAFETY: geteuid has no arguments and cannot fail.
            if unsafe { libc::geteuid() } == 0 {
                assert_ne!(b.backing(), DmaBacking::Unlocked, "root can always mlock");
            }
        }
    }

    #[test]
    fn bad_sizes_and_alignments_are_refused() {
        for (len, align) in [
            (0, 64),
            (64, 0),
            (64, 3),
            (64, 48),
            (usize::MAX, 64),
            (MAX_DMA_ALLOC + 1, 64),
            (64, MAX_DMA_ALIGN * 2),
        ] {
            assert!(
                matches!(DmaBuf::alloc(len, align), Err(EnvError::InvalidArgument(_))),
                "len {len} align {align}"
            );
        }
    }

    const MEMINFO: &str = "MemTotal:       24683656 kB\nMemFree:        20000000 kB\n\
        MemAvailable:   23958152 kB\nHugePages_Total:    1024\nHugePages_Free:      512\n\
        Hugepagesize:       2048 kB\n";

    #[test]
    fn available_is_mem_available_minus_unlocked_plus_free_hugepages() {
        let none = MemStats::default();
        // 23958152 KiB + 512 x 2 MiB.
        assert_eq!(
            available_from(MEMINFO, &none),
            Some(23_958_152 * 1024 + 512 * (2 << 20))
        );
        // Unlocked DmaBufs are subtracted (not yet resident); locked and hugepage bytes are
        // already counted by the kernel and are not.
        let stats = MemStats {
            hugepage_bytes: 1 << 30,
            locked_bytes: 3 << 30,
            unlocked_bytes: 5 << 30,
            allocations: 9,
        };
        assert_eq!(
            available_from(MEMINFO, &stats),
            Some(23_958_152 * 1024 - (5 << 30) + 512 * (2 << 20))
        );
        // More unlocked than available: no MemAvailable left, hugepages still count.
        let stats = MemStats {
            unlocked_bytes: u64::MAX,
            ..MemStats::default()
        };
        assert_eq!(available_from(MEMINFO, &stats), Some(512 * (2 << 20)));
        // No hugepage lines (kernel without hugetlbfs): MemAvailable alone.
        assert_eq!(
            available_from("MemAvailable: 1000 kB\n", &none),
            Some(1_024_000)
        );
        assert_eq!(available_from("MemTotal: 1000 kB\n", &none), None);
    }

    #[test]
    fn check_refuses_more_than_available_with_enomem_text() {
        assert!(check_against(4096, 4096, "test").is_ok());
        let e = check_against(4097, 4096, "test").unwrap_err();
        assert!(matches!(
            e,
            EnvError::NoMemory {
                requested: 4097,
                available: 4096
            }
        ));
        assert_eq!(
            e.to_string(),
            "cannot allocate 4097 bytes of DMA memory: only 4096 bytes available"
        );
        // The real check: far more than any machine has, refused without allocating.
        assert!(matches!(
            check_available(u64::MAX, "test"),
            Err(EnvError::NoMemory {
                requested: u64::MAX,
                ..
            })
        ));
        let avail = mem_available().unwrap();
        assert!(check_available(4096, "test").is_ok(), "{avail}");
    }

    #[test]
    fn mem_stats_count_live_allocations() {
        let b = DmaBuf::alloc(8192, 4096).unwrap();
        let s = mem_stats();
        assert!(s.allocations >= 1);
        assert!(s.hugepage_bytes + s.locked_bytes + s.unlocked_bytes >= 8192);
        drop(b);
    }
}
