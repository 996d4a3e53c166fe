//! The outbound queue of one connection: PDU header bytes plus the data buffers of responses,
//! written with vectored writes (`writev`), so C2HData payloads go from the request's buffers
//! (bdev iovecs, iobuf segments) to the socket without being copied into a staging buffer
//! (SPDK queues `spdk_sock_request` iovecs the same way).
//!
//! The queue is a list of pieces in wire order:
//! - inline bytes (headers, digests, small PDUs), kept in one growing byte buffer and
//!   consumed in order; consecutive inline pushes merge into one piece (one iovec);
//! - ranges of a queued data buffer;
//! - a release marker after the last range of a buffer: once the writer passes it the buffer is
//!   dropped (an iobuf returns to its pool).
//!
//! Partial writes are tracked inside the front piece, so a socket that takes any number of
//! bytes at a time (a slow reader, a full send buffer) continues exactly where it stopped.

use crate::error::TcpError;
use nvme::spec::tcp::digest::DigestState;
use nvmf::request::DataBuf;
use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice, Write};

/// Most slices given to one vectored write.
pub const MAX_IOVS: usize = 64;
/// Drop written inline bytes from the front once this many are done (the queue never drains
/// completely under constant load).
const COMPACT_AT: usize = 1 << 20;

/// One piece of the wire stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece {
    /// The next `len` bytes of the inline buffer.
    Inline(usize),
    /// `len` bytes at `start` of segment `seg` of the oldest data buffer not yet released.
    Data {
        seg: usize,
        start: usize,
        len: usize,
    },
    /// The oldest data buffer is fully written: drop it.
    Release,
}

/// Bytes waiting to be written to a connection's socket, data buffers included.
#[derive(Debug, Default)]
pub struct OutQueue {
    /// Inline bytes; `inline[..inline_done]` belongs to pieces already written.
    inline: Vec<u8>,
    inline_done: usize,
    pieces: VecDeque<Piece>,
    /// Bytes of the front piece already written.
    front_done: usize,
    /// Data buffers referenced by `Data` pieces, oldest first.
    bufs: VecDeque<DataBuf>,
    /// Bytes not yet written.
    queued: usize,
}

impl OutQueue {
    /// An empty queue.
    pub fn new() -> OutQueue {
        OutQueue::default()
    }

    /// Bytes not yet written.
    pub fn len(&self) -> usize {
        self.queued
    }

    /// True when everything was written.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Data buffers still held (queued or partly written).
    pub fn buffers_held(&self) -> usize {
        self.bufs.len()
    }

    /// Queues bytes (copied: headers, digests, small PDUs).
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.inline.extend_from_slice(bytes);
        self.queued += bytes.len();
        // Merge with the last piece when it is inline too: its bytes end where these start
        // (only its end moves, so a partly written front piece stays correct).
        if let Some(Piece::Inline(n)) = self.pieces.back_mut() {
            *n += bytes.len();
        } else {
            self.pieces.push_back(Piece::Inline(bytes.len()));
        }
    }

    /// Queues a data buffer: add its ranges and the bytes around them with the returned
    /// [`DataPush`]; the buffer is dropped once the last of its ranges is written.
    pub fn push_data(&mut self, buf: DataBuf) -> DataPush<'_> {
        self.bufs.push_back(buf);
        DataPush {
            q: self,
            release_at: 0,
        }
    }

    /// Everything not yet written, gathered into one vector (copies; for tests and fuzzing).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.queued);
        let mut inline_at = self.inline_done;
        let mut buf_idx = 0;
        for (i, p) in self.pieces.iter().enumerate() {
            let skip = if i == 0 { self.front_done } else { 0 };
            match *p {
                Piece::Inline(len) => {
                    v.extend_from_slice(
                        self.inline
                            .get(inline_at + skip..inline_at + len)
                            .unwrap_or_default(),
                    );
                    inline_at += len;
                }
                Piece::Data { seg, start, len } => {
                    v.extend_from_slice(self.data_slice(buf_idx, seg, start + skip, start + len));
                }
                Piece::Release => buf_idx += 1,
            }
        }
        v
    }

    /// Drops everything queued (data buffers included).
    pub fn clear(&mut self) {
        self.inline.clear();
        self.inline_done = 0;
        self.pieces.clear();
        self.front_done = 0;
        self.bufs.clear();
        self.queued = 0;
    }

    /// Puts `bytes` in front of everything queued (they go out first).
    pub fn prepend_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let old = std::mem::take(self);
        self.push_bytes(bytes);
        // Re-queue the old pieces behind, the partly written front piece trimmed.
        self.bufs = old.bufs;
        let mut inline_at = old.inline_done;
        for (i, p) in old.pieces.iter().enumerate() {
            let skip = if i == 0 { old.front_done } else { 0 };
            match *p {
                Piece::Inline(len) => {
                    let b = old
                        .inline
                        .get(inline_at + skip..inline_at + len)
                        .unwrap_or_default();
                    self.push_bytes(b);
                    inline_at += len;
                }
                Piece::Data { seg, start, len } => {
                    self.pieces.push_back(Piece::Data {
                        seg,
                        start: start + skip,
                        len: len - skip,
                    });
                    self.queued += len - skip;
                }
                Piece::Release => self.pieces.push_back(Piece::Release),
            }
        }
    }

    fn data_slice(&self, buf_idx: usize, seg: usize, from: usize, to: usize) -> &[u8] {
        self.bufs
            .get(buf_idx)
            .and_then(|b| b.segments().get(seg))
            .and_then(|s| s.as_slice().get(from..to))
            .unwrap_or_default()
    }

    /// Fills `iov` with the front of the queue; returns how many slices were set.
    fn io_slices<'a>(&'a self, iov: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let mut inline_at = self.inline_done;
        let mut buf_idx = 0;
        for (i, p) in self.pieces.iter().enumerate() {
            let skip = if i == 0 { self.front_done } else { 0 };
            let s: &[u8] = match *p {
                Piece::Inline(len) => {
                    let s = self
                        .inline
                        .get(inline_at + skip..inline_at + len)
                        .unwrap_or_default();
                    inline_at += len;
                    s
                }
                Piece::Data { seg, start, len } => {
                    self.data_slice(buf_idx, seg, start + skip, start + len)
                }
                Piece::Release => {
                    buf_idx += 1;
                    continue;
                }
            };
            let Some(slot) = iov.get_mut(n) else { break };
            *slot = IoSlice::new(s);
            n += 1;
        }
        n
    }

    /// Marks `n` bytes from the front as written; drops buffers whose data is all written.
    fn advance(&mut self, mut n: usize) {
        self.queued = self.queued.saturating_sub(n);
        loop {
            match self.pieces.front().copied() {
                None => break,
                Some(Piece::Release) => {
                    self.pieces.pop_front();
                    self.bufs.pop_front();
                }
                Some(p @ (Piece::Inline(len) | Piece::Data { len, .. })) => {
                    if n == 0 {
                        break;
                    }
                    let rest = len - self.front_done;
                    if n < rest {
                        self.front_done += n;
                        break;
                    }
                    n -= rest;
                    self.pieces.pop_front();
                    self.front_done = 0;
                    if let Piece::Inline(len) = p {
                        self.inline_done += len;
                    }
                }
            }
        }
        if self.pieces.is_empty() {
            self.inline.clear();
            self.inline_done = 0;
        } else if self.inline_done >= COMPACT_AT {
            self.inline.drain(..self.inline_done);
            self.inline_done = 0;
        }
    }

    /// Writes as much as `w` takes with vectored writes; stops when everything is written or
    /// the writer would block. Returns the bytes written. `Interrupted` is retried; a writer
    /// that takes nothing fails with `WriteZero`.
    pub fn write_to<W: Write>(&mut self, w: &mut W) -> Result<usize, TcpError> {
        let mut total = 0;
        while !self.is_empty() {
            let r = {
                let mut iov = [IoSlice::new(&[]); MAX_IOVS];
                let cnt = self.io_slices(&mut iov);
                let iov = iov.get(..cnt).unwrap_or_default();
                if iov.iter().all(|s| s.is_empty()) {
                    // Unreachable: every queued piece has bytes behind it.
                    return Err(TcpError::Io(std::io::Error::new(
                        ErrorKind::InvalidData,
                        "outbound queue lost its data",
                    )));
                }
                w.write_vectored(iov)
            };
            match r {
                Ok(0) => return Err(TcpError::Io(ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.advance(n);
                    total += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(TcpError::Io(e)),
            }
        }
        Ok(total)
    }
}

/// Adds the pieces of one data buffer to an [`OutQueue`] (see [`OutQueue::push_data`]); the
/// buffer's release marker is queued, after its last range, when this is dropped.
#[derive(Debug)]
pub struct DataPush<'a> {
    q: &'a mut OutQueue,
    /// Position in the piece list just after this buffer's last range (0: no range yet).
    release_at: usize,
}

impl DataPush<'_> {
    /// Queues bytes (a PDU header or digest) before or after the buffer's ranges.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.q.push_bytes(bytes);
    }

    /// Queues `len` bytes of the buffer starting `at` bytes into it (across its segments),
    /// adding them to `digest` if given. Returns the bytes queued (less than `len` only when
    /// the buffer is shorter).
    pub fn range(&mut self, at: usize, len: usize, mut digest: Option<&mut DigestState>) -> usize {
        let mut skip = at;
        let mut done = 0;
        let Some(buf) = self.q.bufs.back() else {
            return 0;
        };
        for (seg, s) in buf.segments().iter().enumerate() {
            if done == len {
                break;
            }
            let sl = s.as_slice();
            if skip >= sl.len() {
                skip -= sl.len();
                continue;
            }
            let n = (sl.len() - skip).min(len - done);
            if let Some(d) = digest.as_deref_mut() {
                d.update(sl.get(skip..skip + n).unwrap_or_default());
            }
            self.q.pieces.push_back(Piece::Data {
                seg,
                start: skip,
                len: n,
            });
            done += n;
            skip = 0;
        }
        self.q.queued += done;
        if done > 0 {
            self.release_at = self.q.pieces.len();
        }
        done
    }
}

impl Drop for DataPush<'_> {
    fn drop(&mut self) {
        if self.release_at == 0 {
            // Nothing refers to the buffer: drop it now.
            self.q.bufs.pop_back();
        } else {
            // Right after the last range (before a trailing digest or response), so the
            // buffer goes back as soon as its data is on the wire.
            self.q.pieces.insert(self.release_at, Piece::Release);
        }
    }
}

#[cfg(test)]
mod tests;
