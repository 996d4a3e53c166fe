//! Owned scatter-gather buffers passed into a bdev I/O and handed back by its completion.
//!
//! An [`IoVec`] is one owned buffer plus the window (`offset`, `len`) of it that the I/O uses;
//! [`IoVecs`] is the scatter-gather list. Ownership moves into the submission and comes back in
//! the [`IoCompletion`](crate::IoCompletion), so no buffer is borrowed across an asynchronous
//! completion. A transport fills the segments from its socket ([`IoVec::as_mut_slice`]); a
//! module copies into or out of them ([`IoVecs::copy_from_slice_at`], [`IoVecs::copy_to_slice_at`]).

use crate::BdevError;

/// The owned memory behind one [`IoVec`].
#[non_exhaustive]
pub enum IoBufStorage {
    /// Ordinary heap memory.
    Vec(Vec<u8>),
    /// DMA-able memory from env.
    Dma(env::DmaBuf),
    /// A buffer from env's iobuf pool (returned to the pool when dropped).
    Iobuf(env::IoBuf),
}

impl IoBufStorage {
    fn bytes(&self) -> &[u8] {
        match self {
            IoBufStorage::Vec(v) => v,
            IoBufStorage::Dma(d) => d.as_slice(),
            IoBufStorage::Iobuf(b) => b,
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            IoBufStorage::Vec(v) => v,
            IoBufStorage::Dma(d) => d.as_mut_slice(),
            IoBufStorage::Iobuf(b) => b,
        }
    }

    /// Size of the whole storage in bytes.
    pub fn capacity(&self) -> usize {
        self.bytes().len()
    }
}

impl std::fmt::Debug for IoBufStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IoBufStorage::Vec(v) => write!(f, "Vec({} bytes)", v.len()),
            IoBufStorage::Dma(d) => write!(f, "Dma({} bytes)", d.len()),
            IoBufStorage::Iobuf(b) => write!(f, "Iobuf({} bytes)", b.len()),
        }
    }
}

impl From<Vec<u8>> for IoBufStorage {
    fn from(v: Vec<u8>) -> Self {
        IoBufStorage::Vec(v)
    }
}

impl From<env::DmaBuf> for IoBufStorage {
    fn from(d: env::DmaBuf) -> Self {
        IoBufStorage::Dma(d)
    }
}

impl From<env::IoBuf> for IoBufStorage {
    fn from(b: env::IoBuf) -> Self {
        IoBufStorage::Iobuf(b)
    }
}

/// One segment of a scatter-gather list: an owned buffer and the window of it the I/O uses.
#[derive(Debug)]
pub struct IoVec {
    storage: IoBufStorage,
    offset: usize,
    len: usize,
}

impl IoVec {
    /// A segment over `storage[offset..offset + len]`.
    ///
    /// Fails with [`BdevError::InvalidArgument`] when the window does not fit the storage.
    pub fn new(
        storage: impl Into<IoBufStorage>,
        offset: usize,
        len: usize,
    ) -> Result<IoVec, BdevError> {
        let storage = storage.into();
        let end = offset.checked_add(len);
        match end {
            Some(end) if end <= storage.capacity() => Ok(IoVec {
                storage,
                offset,
                len,
            }),
            _ => Err(BdevError::InvalidArgument(format!(
                "iovec window {offset}+{len} exceeds its {}-byte buffer",
                storage.capacity()
            ))),
        }
    }

    /// A segment covering all of `v`.
    pub fn from_vec(v: Vec<u8>) -> IoVec {
        let len = v.len();
        IoVec {
            storage: IoBufStorage::Vec(v),
            offset: 0,
            len,
        }
    }

    /// A segment of `len` zero bytes on the heap.
    pub fn zeroed(len: usize) -> IoVec {
        IoVec::from_vec(vec![0; len])
    }

    /// Length of the window in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start of the window inside the storage.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The window's bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.storage.bytes()[self.offset..self.offset + self.len]
    }

    /// The window's bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let (o, l) = (self.offset, self.len);
        &mut self.storage.bytes_mut()[o..o + l]
    }

    /// The whole storage (including bytes outside the window).
    pub fn storage(&self) -> &IoBufStorage {
        &self.storage
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> IoBufStorage {
        self.storage
    }
}

/// A scatter-gather list of owned segments.
#[derive(Debug, Default)]
pub struct IoVecs {
    segs: Vec<IoVec>,
}

impl IoVecs {
    /// An empty list.
    pub fn new() -> IoVecs {
        IoVecs { segs: Vec::new() }
    }

    /// A list of one segment.
    pub fn single(seg: IoVec) -> IoVecs {
        IoVecs { segs: vec![seg] }
    }

    /// A list of one heap segment holding `v`.
    pub fn from_vec(v: Vec<u8>) -> IoVecs {
        IoVecs::single(IoVec::from_vec(v))
    }

    /// Appends a segment.
    pub fn push(&mut self, seg: IoVec) {
        self.segs.push(seg);
    }

    /// Total bytes over all windows.
    pub fn total_len(&self) -> usize {
        self.segs.iter().map(IoVec::len).sum()
    }

    /// The segments.
    pub fn segments(&self) -> &[IoVec] {
        &self.segs
    }

    /// The segments, writable.
    pub fn segments_mut(&mut self) -> &mut [IoVec] {
        &mut self.segs
    }

    /// Gives the segments back.
    pub fn into_segments(self) -> Vec<IoVec> {
        self.segs
    }

    /// Copies `src` into the list starting `at` bytes into it; returns the bytes copied
    /// (less than `src.len()` only when the list is shorter). Bytes outside
    /// `at..at + copied` are untouched.
    pub fn copy_from_slice_at(&mut self, at: usize, src: &[u8]) -> usize {
        let mut skip = at;
        let mut done = 0;
        for seg in &mut self.segs {
            if done == src.len() {
                break;
            }
            let s = seg.as_mut_slice();
            if skip >= s.len() {
                skip -= s.len();
                continue;
            }
            let n = (s.len() - skip).min(src.len() - done);
            s[skip..skip + n].copy_from_slice(&src[done..done + n]);
            done += n;
            skip = 0;
        }
        done
    }

    /// Copies from the list, starting `at` bytes into it, into `dst`; returns the bytes copied.
    pub fn copy_to_slice_at(&self, at: usize, dst: &mut [u8]) -> usize {
        let mut skip = at;
        let mut done = 0;
        for seg in &self.segs {
            if done == dst.len() {
                break;
            }
            let s = seg.as_slice();
            if skip >= s.len() {
                skip -= s.len();
                continue;
            }
            let n = (s.len() - skip).min(dst.len() - done);
            dst[done..done + n].copy_from_slice(&s[skip..skip + n]);
            done += n;
            skip = 0;
        }
        done
    }

    /// True when the `len` bytes starting `at` bytes into the list equal `other`
    /// (`other.len()` bytes are compared; a shorter list never matches).
    pub fn eq_slice_at(&self, at: usize, other: &[u8]) -> bool {
        let mut skip = at;
        let mut done = 0;
        for seg in &self.segs {
            if done == other.len() {
                break;
            }
            let s = seg.as_slice();
            if skip >= s.len() {
                skip -= s.len();
                continue;
            }
            let n = (s.len() - skip).min(other.len() - done);
            if s[skip..skip + n] != other[done..done + n] {
                return false;
            }
            done += n;
            skip = 0;
        }
        done == other.len()
    }

    /// The first `len` bytes of the list gathered into one vector (tests, small payloads).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.total_len()];
        self.copy_to_slice_at(0, &mut v);
        v
    }
}

impl From<Vec<IoVec>> for IoVecs {
    fn from(segs: Vec<IoVec>) -> Self {
        IoVecs { segs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_segments() -> IoVecs {
        let mut v = IoVecs::new();
        v.push(IoVec::new(vec![0xAA; 8], 2, 3).unwrap());
        v.push(IoVec::from_vec(vec![0xBB; 4]));
        v.push(IoVec::new(vec![0xCC; 6], 1, 2).unwrap());
        v
    }

    #[test]
    fn window_outside_storage_is_refused() {
        let err = IoVec::new(vec![0; 8], 4, 5).unwrap_err();
        assert_eq!(err.errno(), 22);
        assert!(IoVec::new(vec![0; 8], usize::MAX, 2).is_err());
        assert_eq!(IoVec::new(vec![0; 8], 4, 4).unwrap().len(), 4);
    }

    #[test]
    fn scatter_spans_segments_and_keeps_bytes_outside_windows() {
        let mut v = three_segments();
        assert_eq!(v.total_len(), 9);
        let n = v.copy_from_slice_at(1, &[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(n, 7);
        assert_eq!(v.to_vec(), vec![0xAA, 1, 2, 3, 4, 5, 6, 7, 0xCC]);
        let segs = v.into_segments();
        let IoBufStorage::Vec(first) = segs[0].storage() else {
            panic!("vec storage expected")
        };
        assert_eq!(first, &vec![0xAA, 0xAA, 0xAA, 1, 2, 0xAA, 0xAA, 0xAA]);
        let IoBufStorage::Vec(last) = segs[2].storage() else {
            panic!("vec storage expected")
        };
        assert_eq!(last, &vec![0xCC, 7, 0xCC, 0xCC, 0xCC, 0xCC]);
    }

    #[test]
    fn gather_and_compare_at_offset() {
        let mut v = three_segments();
        v.copy_from_slice_at(0, &[9, 8, 7, 6, 5, 4, 3, 2, 1]);
        let mut out = [0u8; 4];
        assert_eq!(v.copy_to_slice_at(2, &mut out), 4);
        assert_eq!(out, [7, 6, 5, 4]);
        assert!(v.eq_slice_at(2, &[7, 6, 5, 4]));
        assert!(!v.eq_slice_at(2, &[7, 6, 5, 0]));
        assert!(!v.eq_slice_at(8, &[1, 0]));
    }

    #[test]
    fn dma_segment_window_is_checked_and_writable() {
        let d = env::DmaBuf::alloc(4096, 4096).unwrap();
        assert!(IoVec::new(env::DmaBuf::alloc(4096, 4096).unwrap(), 4000, 97).is_err());
        let mut v = IoVecs::single(IoVec::new(d, 8, 16).unwrap());
        assert_eq!(v.copy_from_slice_at(0, &[7; 16]), 16);
        let IoBufStorage::Dma(d) = v.into_segments().remove(0).into_storage() else {
            panic!("dma storage expected")
        };
        assert_eq!(&d.as_slice()[..8], &[0; 8]);
        assert_eq!(&d.as_slice()[8..24], &[7; 16]);
        assert_eq!(d.as_slice()[24], 0);
    }

    #[test]
    fn copy_into_short_list_reports_partial_length() {
        let mut v = IoVecs::from_vec(vec![0; 4]);
        assert_eq!(v.copy_from_slice_at(2, &[1, 2, 3, 4]), 2);
        assert_eq!(v.to_vec(), vec![0, 0, 1, 2]);
    }
}
