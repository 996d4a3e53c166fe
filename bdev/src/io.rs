//! I/O types, requests, statuses and completions (SPDK `enum spdk_bdev_io_type`,
//! `spdk_bdev_io`, `spdk_bdev_io_status`).

use std::rc::Rc;

use crate::channel::ChanCore;
use crate::iovec::IoVecs;

/// The kind of an I/O, as SPDK's `enum spdk_bdev_io_type`; also the keys of
/// `supported_io_types` in `bdev_get_bdevs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoType {
    /// Read blocks.
    Read,
    /// Write blocks.
    Write,
    /// Deallocate blocks.
    Unmap,
    /// Make written data durable.
    Flush,
    /// Reset the device.
    Reset,
    /// NVMe admin passthrough.
    NvmeAdmin,
    /// NVMe I/O passthrough.
    NvmeIo,
    /// NVMe I/O passthrough with metadata.
    NvmeIoMd,
    /// Write zeroes to blocks.
    WriteZeroes,
    /// Zero-copy I/O.
    Zcopy,
    /// Zoned: report zones.
    GetZoneInfo,
    /// Zoned: zone management.
    ZoneManagement,
    /// Zoned: zone append.
    ZoneAppend,
    /// Compare blocks with a buffer.
    Compare,
    /// Atomic compare then write.
    CompareAndWrite,
    /// Abort an I/O.
    Abort,
    /// Seek to the next hole.
    SeekHole,
    /// Seek to the next data.
    SeekData,
    /// Copy blocks inside the bdev.
    Copy,
    /// NVMe passthrough with separate metadata iovec.
    NvmeIovMd,
    /// NVM subsystem reset.
    NvmeNssr,
}

impl IoType {
    /// All types, in the order SPDK lists them in `supported_io_types`.
    pub const ALL: [IoType; 21] = [
        IoType::Read,
        IoType::Write,
        IoType::Unmap,
        IoType::Flush,
        IoType::Reset,
        IoType::NvmeAdmin,
        IoType::NvmeIo,
        IoType::NvmeIoMd,
        IoType::WriteZeroes,
        IoType::Zcopy,
        IoType::GetZoneInfo,
        IoType::ZoneManagement,
        IoType::ZoneAppend,
        IoType::Compare,
        IoType::CompareAndWrite,
        IoType::Abort,
        IoType::SeekHole,
        IoType::SeekData,
        IoType::Copy,
        IoType::NvmeIovMd,
        IoType::NvmeNssr,
    ];

    /// SPDK's JSON name of the type.
    pub fn json_name(self) -> &'static str {
        match self {
            IoType::Read => "read",
            IoType::Write => "write",
            IoType::Unmap => "unmap",
            IoType::Flush => "flush",
            IoType::Reset => "reset",
            IoType::NvmeAdmin => "nvme_admin",
            IoType::NvmeIo => "nvme_io",
            IoType::NvmeIoMd => "nvme_io_md",
            IoType::WriteZeroes => "write_zeroes",
            IoType::Zcopy => "zcopy",
            IoType::GetZoneInfo => "get_zone_info",
            IoType::ZoneManagement => "zone_management",
            IoType::ZoneAppend => "zone_append",
            IoType::Compare => "compare",
            IoType::CompareAndWrite => "compare_and_write",
            IoType::Abort => "abort",
            IoType::SeekHole => "seek_hole",
            IoType::SeekData => "seek_data",
            IoType::Copy => "copy",
            IoType::NvmeIovMd => "nvme_iov_md",
            IoType::NvmeNssr => "nvme_nssr",
        }
    }

    /// Position in [`IoType::ALL`] (the declaration order).
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// True for types that modify the bdev and so need a writable descriptor.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            IoType::Write
                | IoType::Unmap
                | IoType::WriteZeroes
                | IoType::CompareAndWrite
                | IoType::Copy
                | IoType::ZoneAppend
                | IoType::ZoneManagement
        )
    }
}

/// One request as the module sees it. Block offsets and counts are in the bdev's blocks.
#[derive(Debug)]
#[non_exhaustive]
pub enum IoRequest {
    /// Read `num_blocks` blocks at `offset_blocks` into `bufs`.
    Read {
        /// First block.
        offset_blocks: u64,
        /// Block count (> 0).
        num_blocks: u64,
        /// Destination, at least `num_blocks * block_size` bytes.
        bufs: IoVecs,
    },
    /// Write `bufs` to `num_blocks` blocks at `offset_blocks`.
    Write {
        /// First block.
        offset_blocks: u64,
        /// Block count (> 0).
        num_blocks: u64,
        /// Source, at least `num_blocks * block_size` bytes.
        bufs: IoVecs,
    },
    /// Deallocate blocks (reads of them return zeroes on malloc).
    Unmap {
        /// First block.
        offset_blocks: u64,
        /// Block count (> 0).
        num_blocks: u64,
    },
    /// Flush blocks.
    Flush {
        /// First block.
        offset_blocks: u64,
        /// Block count.
        num_blocks: u64,
    },
    /// Write zeroes to blocks.
    WriteZeroes {
        /// First block.
        offset_blocks: u64,
        /// Block count (> 0).
        num_blocks: u64,
    },
    /// Reset the device.
    Reset,
    /// Compare blocks with `bufs`; mismatch completes with [`IoStatus::Miscompare`].
    Compare {
        /// First block.
        offset_blocks: u64,
        /// Block count (> 0).
        num_blocks: u64,
        /// Expected data.
        bufs: IoVecs,
    },
    /// Atomically compare blocks with `compare` and, if equal, write `write`.
    CompareAndWrite {
        /// First block.
        offset_blocks: u64,
        /// Block count (> 0).
        num_blocks: u64,
        /// Expected data.
        compare: IoVecs,
        /// New data.
        write: IoVecs,
    },
    /// Copy `num_blocks` blocks from `src_offset_blocks` to `dst_offset_blocks`.
    Copy {
        /// Destination first block.
        dst_offset_blocks: u64,
        /// Source first block.
        src_offset_blocks: u64,
        /// Block count (> 0).
        num_blocks: u64,
    },
}

impl IoRequest {
    /// The request's type.
    pub fn io_type(&self) -> IoType {
        match self {
            IoRequest::Read { .. } => IoType::Read,
            IoRequest::Write { .. } => IoType::Write,
            IoRequest::Unmap { .. } => IoType::Unmap,
            IoRequest::Flush { .. } => IoType::Flush,
            IoRequest::WriteZeroes { .. } => IoType::WriteZeroes,
            IoRequest::Reset => IoType::Reset,
            IoRequest::Compare { .. } => IoType::Compare,
            IoRequest::CompareAndWrite { .. } => IoType::CompareAndWrite,
            IoRequest::Copy { .. } => IoType::Copy,
        }
    }

    /// Block count the request covers (0 for reset).
    pub fn num_blocks(&self) -> u64 {
        match self {
            IoRequest::Read { num_blocks, .. }
            | IoRequest::Write { num_blocks, .. }
            | IoRequest::Unmap { num_blocks, .. }
            | IoRequest::Flush { num_blocks, .. }
            | IoRequest::WriteZeroes { num_blocks, .. }
            | IoRequest::Compare { num_blocks, .. }
            | IoRequest::CompareAndWrite { num_blocks, .. }
            | IoRequest::Copy { num_blocks, .. } => *num_blocks,
            IoRequest::Reset => 0,
        }
    }

    /// The data buffer of a read, write or compare.
    pub fn bufs(&self) -> Option<&IoVecs> {
        match self {
            IoRequest::Read { bufs, .. }
            | IoRequest::Write { bufs, .. }
            | IoRequest::Compare { bufs, .. } => Some(bufs),
            _ => None,
        }
    }

    /// Gives the data buffers back: `(data, None)` for read/write/compare, `(compare, Some(write))`
    /// for compare-and-write, `None` for requests without data.
    pub fn into_bufs(self) -> Option<(IoVecs, Option<IoVecs>)> {
        match self {
            IoRequest::Read { bufs, .. }
            | IoRequest::Write { bufs, .. }
            | IoRequest::Compare { bufs, .. } => Some((bufs, None)),
            IoRequest::CompareAndWrite { compare, write, .. } => Some((compare, Some(write))),
            _ => None,
        }
    }
}

/// Why the bdev layer refused an I/O before it reached the module. nvmf maps these to NVMe
/// statuses (`OutOfRange` to LBA Out of Range, `Unsupported` to Invalid Opcode, the rest to
/// Invalid Field / SGL length invalid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidIo {
    /// The block range runs past the end of the bdev (or overflows).
    OutOfRange,
    /// The request covers zero blocks.
    ZeroLength,
    /// The buffers hold fewer bytes than `num_blocks * block_size`.
    BufferTooShort,
    /// The bdev does not support this I/O type.
    Unsupported,
    /// The request writes through a read-only descriptor.
    ReadOnly,
}

/// Final status of an I/O (SPDK `spdk_bdev_io_status`, plus the layer's own refusals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoStatus {
    /// Done.
    Success,
    /// The device failed it.
    Failed,
    /// No resources; retry after [`BdevChannel::queue_io_wait`](crate::BdevChannel::queue_io_wait).
    Nomem,
    /// Aborted (reset, removal).
    Aborted,
    /// Compare or compare-and-write found different data.
    Miscompare,
    /// The device answered with an NVMe status.
    NvmeError {
        /// Status code type.
        sct: u8,
        /// Status code.
        sc: u8,
        /// Completion dword 0.
        cdw0: u32,
    },
    /// Refused by the bdev layer before submission.
    Invalid(InvalidIo),
}

/// What a submitter gets back: the status and its request, buffers included.
#[derive(Debug)]
pub struct IoCompletion {
    /// Final status.
    pub status: IoStatus,
    /// The request as submitted; read data is in its buffers.
    pub request: IoRequest,
}

impl IoCompletion {
    /// True for [`IoStatus::Success`].
    pub fn is_success(&self) -> bool {
        self.status == IoStatus::Success
    }

    /// Gives the data buffers back (see [`IoRequest::into_bufs`]).
    pub fn into_bufs(self) -> Option<(IoVecs, Option<IoVecs>)> {
        self.request.into_bufs()
    }
}

/// Callback run when an I/O completes, on the Thread that submitted it, never inside the
/// submitting call.
pub type IoCallback = Box<dyn FnOnce(IoCompletion)>;

pub(crate) struct IoInner {
    pub(crate) request: IoRequest,
    pub(crate) cb: IoCallback,
    pub(crate) start: env::Ticks,
    /// True once handed to the module (counted as outstanding; a reset is not counted).
    pub(crate) dispatched: bool,
    /// The LBA range lock this I/O belongs to (an emulated compare-and-write's own compare and
    /// write pass its lock); 0 for none.
    pub(crate) owner_lock: u64,
    /// Key in the channel's in-flight write table while a write is at the module or waiting
    /// for its no-memory retry (what an LBA range lock waits for).
    pub(crate) inflight: Option<usize>,
}

/// An I/O handed to a module's [`BdevOps::submit_request`](crate::module::BdevOps::submit_request).
///
/// The module reads or fills the request's buffers and calls [`BdevIo::complete`] exactly once,
/// on the Thread it was submitted on (the type is `!Send`); completion may happen later, from
/// the module's poller. Dropping it without completing completes it as [`IoStatus::Failed`]
/// (and logs), so a buggy module cannot hang a submitter.
pub struct BdevIo {
    inner: Option<IoInner>,
    ch: Rc<ChanCore>,
}

impl BdevIo {
    pub(crate) fn new(inner: IoInner, ch: Rc<ChanCore>) -> BdevIo {
        BdevIo {
            inner: Some(inner),
            ch,
        }
    }

    /// The request.
    pub fn request(&self) -> &IoRequest {
        match &self.inner {
            Some(i) => &i.request,
            None => unreachable_request(),
        }
    }

    /// The request, writable (to fill read buffers).
    pub fn request_mut(&mut self) -> &mut IoRequest {
        match &mut self.inner {
            Some(i) => &mut i.request,
            None => unreachable_request(),
        }
    }

    /// The request's type.
    pub fn io_type(&self) -> IoType {
        self.request().io_type()
    }

    /// Completes the I/O; the submitter's callback runs from the channel's poller.
    pub fn complete(mut self, status: IoStatus) {
        if let Some(inner) = self.inner.take() {
            self.ch.push_completion(inner, status);
        }
    }
}

impl Drop for BdevIo {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            tracing::error!(
                bdev = %self.ch.bdev_name(),
                io_type = ?inner.request.io_type(),
                "module dropped a bdev I/O without completing it; failing it"
            );
            self.ch.push_completion(inner, IoStatus::Failed);
        }
    }
}

impl std::fmt::Debug for BdevIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BdevIo")
            .field("request", &self.inner.as_ref().map(|i| &i.request))
            .finish()
    }
}

// `inner` is only `None` after `complete` consumed `self` or inside `drop`; neither can call
// `request()`. Kept as a function so the invariant is stated once.
fn unreachable_request() -> ! {
    unreachable!("BdevIo request accessed after completion")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_the_position_in_all() {
        for (i, t) in IoType::ALL.iter().enumerate() {
            assert_eq!(t.index(), i, "{t:?}");
        }
    }
}
