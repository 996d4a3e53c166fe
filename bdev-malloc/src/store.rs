//! The RAM behind a malloc bdev: fixed-size stripes of env DMA memory (hugepages when the
//! system has them), each behind its own mutex.
//!
//! SPDK's malloc shares one buffer between reactors without synchronization. Safe Rust needs
//! it, so the memory is cut into stripes of whole blocks (about 1 MiB) with a mutex each:
//! Threads touching different stripes never contend, and compare-and-write holds every stripe
//! of its range at once, which makes it atomic against all other I/O.

use std::sync::{Mutex, MutexGuard};

use bdev::{BdevError, IoVecs};
use env::DmaBuf;

/// Target stripe size; rounded down to whole blocks (at least one block).
const STRIPE_TARGET_BYTES: u64 = 2 << 20;
/// Alignment of each stripe (a page; SPDK's malloc asks 2 MiB for the whole buffer).
const STRIPE_ALIGN: usize = 4096;

fn lock(m: &Mutex<DmaBuf>) -> MutexGuard<'_, DmaBuf> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Zero-initialised striped memory of `len` bytes.
pub(crate) struct Store {
    stripes: Vec<Mutex<DmaBuf>>,
    stripe_len: u64,
    len: u64,
}

/// One stripe-local piece of a byte range: stripe index, start inside it, length, and its
/// offset from the start of the range.
struct Piece {
    stripe: usize,
    start: usize,
    len: usize,
    at: usize,
}

impl Store {
    /// Allocates `num_blocks * block_size` zeroed bytes; ENOMEM if that overflows, is more than
    /// the system can still give ([`env::mem_available`]; checked before allocating), or the
    /// allocation fails.
    pub(crate) fn new(num_blocks: u64, block_size: u32) -> Result<Store, BdevError> {
        let bs = u64::from(block_size.max(1));
        let len = num_blocks
            .checked_mul(bs)
            .ok_or_else(|| BdevError::NoMemory("malloc size overflows".into()))?;
        // Before allocating anything: what the system can still give, net of earlier DmaBufs
        // that are not yet resident (SPDK fails cleanly with ENOMEM from its hugepage memory;
        // without this, locked memory could take the machine's last RAM).
        env::check_available(len, "malloc bdev").map_err(|e| {
            tracing::error!(error = %e, "malloc bdev memory allocation refused");
            BdevError::NoMemory(e.to_string())
        })?;
        let stripe_len = (STRIPE_TARGET_BYTES / bs).max(1) * bs;
        let count = len.div_ceil(stripe_len);
        let mut stripes = Vec::new();
        stripes
            .try_reserve_exact(usize::try_from(count).unwrap_or(usize::MAX))
            .map_err(|e| BdevError::NoMemory(e.to_string()))?;
        let mut left = len;
        while left > 0 {
            let n = usize::try_from(left.min(stripe_len))
                .map_err(|e| BdevError::NoMemory(e.to_string()))?;
            let buf = DmaBuf::alloc(n, STRIPE_ALIGN).map_err(|e| {
                tracing::error!(error = %e, "malloc bdev memory allocation failed");
                BdevError::NoMemory(e.to_string())
            })?;
            stripes.push(Mutex::new(buf));
            left -= n as u64;
        }
        Ok(Store {
            stripes,
            stripe_len,
            len,
        })
    }

    /// Size in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Splits `[off, off+len)` (already checked against the size) into stripe pieces.
    fn pieces(&self, off: u64, len: u64) -> impl Iterator<Item = Piece> + '_ {
        let end = off + len;
        let mut pos = off;
        std::iter::from_fn(move || {
            if pos >= end {
                return None;
            }
            let stripe = pos / self.stripe_len;
            let start = pos % self.stripe_len;
            let n = (self.stripe_len - start).min(end - pos);
            let p = Piece {
                stripe: stripe as usize,
                start: start as usize,
                len: n as usize,
                at: (pos - off) as usize,
            };
            pos += n;
            Some(p)
        })
    }

    /// Copies `len` bytes at `off` into `bufs`.
    pub(crate) fn read(&self, off: u64, len: u64, bufs: &mut IoVecs) {
        for p in self.pieces(off, len) {
            let s = lock(&self.stripes[p.stripe]);
            bufs.copy_from_slice_at(p.at, &s[p.start..p.start + p.len]);
        }
    }

    /// Copies `len` bytes from `bufs` to `off`.
    pub(crate) fn write(&self, off: u64, len: u64, bufs: &IoVecs) {
        for p in self.pieces(off, len) {
            let mut s = lock(&self.stripes[p.stripe]);
            bufs.copy_to_slice_at(p.at, &mut s[p.start..p.start + p.len]);
        }
    }

    /// Zeroes `len` bytes at `off`.
    pub(crate) fn zero(&self, off: u64, len: u64) {
        for p in self.pieces(off, len) {
            lock(&self.stripes[p.stripe])[p.start..p.start + p.len].fill(0);
        }
    }

    /// True if the `len` bytes at `off` equal `bufs`' first `len` bytes.
    pub(crate) fn compare(&self, off: u64, len: u64, bufs: &IoVecs) -> bool {
        self.pieces(off, len).all(|p| {
            let s = lock(&self.stripes[p.stripe]);
            bufs.eq_slice_at(p.at, &s[p.start..p.start + p.len])
        })
    }

    /// Compares with `cmp` and, if equal, writes `data`, holding every stripe of the range.
    pub(crate) fn compare_and_write(
        &self,
        off: u64,
        len: u64,
        cmp: &IoVecs,
        data: &IoVecs,
    ) -> bool {
        let pieces: Vec<Piece> = self.pieces(off, len).collect();
        let mut guards: Vec<MutexGuard<'_, DmaBuf>> = pieces
            .iter()
            .map(|p| lock(&self.stripes[p.stripe]))
            .collect();
        let equal = pieces
            .iter()
            .zip(guards.iter())
            .all(|(p, g)| cmp.eq_slice_at(p.at, &g[p.start..p.start + p.len]));
        if equal {
            for (p, g) in pieces.iter().zip(guards.iter_mut()) {
                data.copy_to_slice_at(p.at, &mut g[p.start..p.start + p.len]);
            }
        }
        equal
    }

    /// Copies `len` bytes from `src` to `dst` (ranges may overlap), a bounded chunk at a time.
    pub(crate) fn copy(&self, dst: u64, src: u64, len: u64) {
        const CHUNK: u64 = 64 * 1024;
        let mut tmp = IoVecs::from_vec(vec![0; CHUNK.min(len) as usize]);
        let mut step = |done: u64, n: u64| {
            if n as usize != tmp.total_len() {
                tmp = IoVecs::from_vec(vec![0; n as usize]);
            }
            self.read(src + done, n, &mut tmp);
            self.write(dst + done, n, &tmp);
        };
        if dst > src {
            // Back to front so an overlapping source is read before it is overwritten.
            let mut end = len;
            while end > 0 {
                let n = end.min(CHUNK);
                step(end - n, n);
                end -= n;
            }
        } else {
            let mut done = 0;
            while done < len {
                let n = (len - done).min(CHUNK);
                step(done, n);
                done += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(store: &Store, off: u64, len: u64) -> Vec<u8> {
        let mut v = IoVecs::from_vec(vec![0; len as usize]);
        store.read(off, len, &mut v);
        v.to_vec()
    }

    #[test]
    fn io_across_stripe_boundary_round_trips() {
        let s = Store::new(8192, 512).unwrap();
        assert_eq!(s.len(), 4 << 20);
        assert_eq!(s.stripes.len(), 2);
        let off = (2 << 20) - 700;
        let data: Vec<u8> = (0..1400u32).map(|i| (i % 251) as u8).collect();
        s.write(off, 1400, &IoVecs::from_vec(data.clone()));
        assert_eq!(bytes(&s, off, 1400), data);
        assert_eq!(bytes(&s, off - 1, 1), vec![0]);
        assert_eq!(bytes(&s, off + 1400, 1), vec![0]);
        assert!(s.compare(off, 1400, &IoVecs::from_vec(data.clone())));
        s.zero(off + 10, 10);
        assert_eq!(bytes(&s, off + 9, 12)[0], data[9]);
        assert_eq!(&bytes(&s, off + 10, 10), &[0; 10]);
        assert_eq!(bytes(&s, off + 20, 1)[0], data[20]);
    }

    #[test]
    fn overlapping_copy_forward_and_backward() {
        let s = Store::new(1024, 512).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        s.write(0, 200_000, &IoVecs::from_vec(data.clone()));
        s.copy(1000, 0, 200_000);
        assert_eq!(bytes(&s, 1000, 200_000), data);
        s.copy(0, 1000, 200_000);
        assert_eq!(bytes(&s, 0, 200_000), data);
    }

    #[test]
    fn compare_and_write_writes_only_on_match() {
        let s = Store::new(8, 512).unwrap();
        let zeros = IoVecs::from_vec(vec![0; 512]);
        let ones = IoVecs::from_vec(vec![1; 512]);
        assert!(s.compare_and_write(512, 512, &zeros, &ones));
        assert_eq!(bytes(&s, 512, 512), vec![1; 512]);
        assert!(!s.compare_and_write(512, 512, &zeros, &zeros));
        assert_eq!(bytes(&s, 512, 512), vec![1; 512]);
    }

    #[test]
    fn absurd_size_is_enomem() {
        let e = Store::new(u64::MAX, 512).err().unwrap();
        assert_eq!(e.errno(), 12);
        // 512 TiB: no overflow, but more than any test machine has.
        let e = Store::new(1 << 40, 512).err().unwrap();
        assert_eq!(e.errno(), 12);
        let text = e.to_string();
        assert!(
            text.starts_with(
                "out of memory: cannot allocate 562949953421312 bytes of DMA memory: only "
            ),
            "{text}"
        );
    }
}
