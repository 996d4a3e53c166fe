//! Per-channel I/O statistics (SPDK `struct spdk_bdev_io_stat`), aggregated on request.

use serde_json::{Value, json};

use crate::io::IoType;

/// Counters of one channel, or of a bdev once aggregated. Latencies are env ticks
/// (nanoseconds; `bdev_get_iostat` reports `tick_rate` 1e9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoStat {
    /// Bytes read.
    pub bytes_read: u64,
    /// Reads completed successfully.
    pub num_read_ops: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Writes completed successfully.
    pub num_write_ops: u64,
    /// Bytes unmapped.
    pub bytes_unmapped: u64,
    /// Unmaps completed successfully.
    pub num_unmap_ops: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// Copies completed successfully.
    pub num_copy_ops: u64,
    /// Sum of read latencies.
    pub read_latency_ticks: u64,
    /// Largest read latency.
    pub max_read_latency_ticks: u64,
    /// Smallest read latency (`u64::MAX` until the first read).
    pub min_read_latency_ticks: u64,
    /// Sum of write latencies.
    pub write_latency_ticks: u64,
    /// Largest write latency.
    pub max_write_latency_ticks: u64,
    /// Smallest write latency (`u64::MAX` until the first write).
    pub min_write_latency_ticks: u64,
    /// Sum of unmap latencies.
    pub unmap_latency_ticks: u64,
    /// Largest unmap latency.
    pub max_unmap_latency_ticks: u64,
    /// Smallest unmap latency (`u64::MAX` until the first unmap).
    pub min_unmap_latency_ticks: u64,
    /// Sum of copy latencies.
    pub copy_latency_ticks: u64,
    /// Largest copy latency.
    pub max_copy_latency_ticks: u64,
    /// Smallest copy latency (`u64::MAX` until the first copy).
    pub min_copy_latency_ticks: u64,
    /// I/Os that completed with an error status.
    pub num_io_errors: u64,
}

impl Default for IoStat {
    fn default() -> Self {
        IoStat {
            bytes_read: 0,
            num_read_ops: 0,
            bytes_written: 0,
            num_write_ops: 0,
            bytes_unmapped: 0,
            num_unmap_ops: 0,
            bytes_copied: 0,
            num_copy_ops: 0,
            read_latency_ticks: 0,
            max_read_latency_ticks: 0,
            min_read_latency_ticks: u64::MAX,
            write_latency_ticks: 0,
            max_write_latency_ticks: 0,
            min_write_latency_ticks: u64::MAX,
            unmap_latency_ticks: 0,
            max_unmap_latency_ticks: 0,
            min_unmap_latency_ticks: u64::MAX,
            copy_latency_ticks: 0,
            max_copy_latency_ticks: 0,
            min_copy_latency_ticks: u64::MAX,
            num_io_errors: 0,
        }
    }
}

fn lat(sum: &mut u64, max: &mut u64, min: &mut u64, ticks: u64) {
    *sum = sum.saturating_add(ticks);
    *max = (*max).max(ticks);
    *min = (*min).min(ticks);
}

impl IoStat {
    /// Accounts one successful I/O of `bytes` that took `ticks`.
    pub fn record(&mut self, io_type: IoType, bytes: u64, ticks: u64) {
        match io_type {
            IoType::Read => {
                self.bytes_read += bytes;
                self.num_read_ops += 1;
                lat(
                    &mut self.read_latency_ticks,
                    &mut self.max_read_latency_ticks,
                    &mut self.min_read_latency_ticks,
                    ticks,
                );
            }
            IoType::Write => {
                self.bytes_written += bytes;
                self.num_write_ops += 1;
                lat(
                    &mut self.write_latency_ticks,
                    &mut self.max_write_latency_ticks,
                    &mut self.min_write_latency_ticks,
                    ticks,
                );
            }
            IoType::Unmap => {
                self.bytes_unmapped += bytes;
                self.num_unmap_ops += 1;
                lat(
                    &mut self.unmap_latency_ticks,
                    &mut self.max_unmap_latency_ticks,
                    &mut self.min_unmap_latency_ticks,
                    ticks,
                );
            }
            IoType::Copy => {
                self.bytes_copied += bytes;
                self.num_copy_ops += 1;
                lat(
                    &mut self.copy_latency_ticks,
                    &mut self.max_copy_latency_ticks,
                    &mut self.min_copy_latency_ticks,
                    ticks,
                );
            }
            _ => {}
        }
    }

    /// Adds `o` into `self` (sums, max of maxima, min of minima).
    pub fn add(&mut self, o: &IoStat) {
        self.bytes_read += o.bytes_read;
        self.num_read_ops += o.num_read_ops;
        self.bytes_written += o.bytes_written;
        self.num_write_ops += o.num_write_ops;
        self.bytes_unmapped += o.bytes_unmapped;
        self.num_unmap_ops += o.num_unmap_ops;
        self.bytes_copied += o.bytes_copied;
        self.num_copy_ops += o.num_copy_ops;
        self.read_latency_ticks += o.read_latency_ticks;
        self.max_read_latency_ticks = self.max_read_latency_ticks.max(o.max_read_latency_ticks);
        self.min_read_latency_ticks = self.min_read_latency_ticks.min(o.min_read_latency_ticks);
        self.write_latency_ticks += o.write_latency_ticks;
        self.max_write_latency_ticks = self.max_write_latency_ticks.max(o.max_write_latency_ticks);
        self.min_write_latency_ticks = self.min_write_latency_ticks.min(o.min_write_latency_ticks);
        self.unmap_latency_ticks += o.unmap_latency_ticks;
        self.max_unmap_latency_ticks = self.max_unmap_latency_ticks.max(o.max_unmap_latency_ticks);
        self.min_unmap_latency_ticks = self.min_unmap_latency_ticks.min(o.min_unmap_latency_ticks);
        self.copy_latency_ticks += o.copy_latency_ticks;
        self.max_copy_latency_ticks = self.max_copy_latency_ticks.max(o.max_copy_latency_ticks);
        self.min_copy_latency_ticks = self.min_copy_latency_ticks.min(o.min_copy_latency_ticks);
        self.num_io_errors += o.num_io_errors;
    }

    /// The `bdev_get_iostat` entry for bdev `name` (SPDK's keys; minima never seen are 0).
    pub fn to_json(&self, name: &str) -> Value {
        let min = |v: u64| if v == u64::MAX { 0 } else { v };
        json!({
            "name": name,
            "bytes_read": self.bytes_read,
            "num_read_ops": self.num_read_ops,
            "bytes_written": self.bytes_written,
            "num_write_ops": self.num_write_ops,
            "bytes_unmapped": self.bytes_unmapped,
            "num_unmap_ops": self.num_unmap_ops,
            "bytes_copied": self.bytes_copied,
            "num_copy_ops": self.num_copy_ops,
            "read_latency_ticks": self.read_latency_ticks,
            "max_read_latency_ticks": self.max_read_latency_ticks,
            "min_read_latency_ticks": min(self.min_read_latency_ticks),
            "write_latency_ticks": self.write_latency_ticks,
            "max_write_latency_ticks": self.max_write_latency_ticks,
            "min_write_latency_ticks": min(self.min_write_latency_ticks),
            "unmap_latency_ticks": self.unmap_latency_ticks,
            "max_unmap_latency_ticks": self.max_unmap_latency_ticks,
            "min_unmap_latency_ticks": min(self.min_unmap_latency_ticks),
            "copy_latency_ticks": self.copy_latency_ticks,
            "max_copy_latency_ticks": self.max_copy_latency_ticks,
            "min_copy_latency_ticks": min(self.min_copy_latency_ticks),
            "io_error": {},
            "queue_depth_polling_period": 0,
            "queue_depth": 0,
            "io_time": 0,
            "weighted_io_time": 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_and_add_keep_sums_and_extrema() {
        let mut a = IoStat::default();
        a.record(IoType::Read, 4096, 10);
        a.record(IoType::Read, 512, 30);
        let mut b = IoStat::default();
        b.record(IoType::Read, 1024, 5);
        b.record(IoType::Write, 2048, 7);
        b.record(IoType::Flush, 0, 1);
        a.add(&b);
        assert_eq!(a.bytes_read, 5632);
        assert_eq!(a.num_read_ops, 3);
        assert_eq!(a.read_latency_ticks, 45);
        assert_eq!(a.max_read_latency_ticks, 30);
        assert_eq!(a.min_read_latency_ticks, 5);
        assert_eq!(a.bytes_written, 2048);
        assert_eq!(a.num_write_ops, 1);
        let j = a.to_json("x");
        assert_eq!(j["min_unmap_latency_ticks"], 0);
        assert_eq!(j["min_write_latency_ticks"], 7);
    }
}
