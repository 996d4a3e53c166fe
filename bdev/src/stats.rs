//! Per-channel I/O statistics (SPDK `struct spdk_bdev_io_stat`), aggregated on request, and
//! the `bdev_get_iostat` JSON shapes (SPDK `spdk_bdev_dump_io_stat_json`, `bdev_rpc.c`).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::io::{IoStatus, IoType};

/// What resetting statistics clears (SPDK `enum spdk_bdev_reset_stat_mode`; JSON `"all"`,
/// `"maxmin"`, `"none"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResetStatMode {
    /// Every counter, latency extrema and error counts included.
    #[default]
    All,
    /// Only the latency maxima and minima.
    #[serde(rename = "maxmin")]
    MaxMin,
    /// Only the `io_error` counts (newer SPDK, which the `spdk-rpc` client offers).
    Error,
    /// Nothing.
    None,
}

/// Failed I/Os by final status (SPDK `struct spdk_bdev_io_error_stat`, the `io_error` object of
/// `bdev_get_iostat`). Only I/Os that were accepted and completed with an error count; requests
/// the layer refused at submission ([`IoStatus::Invalid`], or [`IoStatus::Nomem`] for a full
/// channel), which SPDK rejects with an errno before they exist, do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoErrorStat {
    /// Status `failed`.
    pub failed: u64,
    /// Status `nvme_error`.
    pub nvme_error: u64,
    /// Status `scsi_error` (no module here produces it; kept for the shape).
    pub scsi_error: u64,
    /// Status `nomem`.
    pub nomem: u64,
    /// Status `miscompare`.
    pub miscompare: u64,
    /// Status `first_fused_failed` (no module here produces it; kept for the shape).
    pub first_fused_failed: u64,
    /// Status `aborted`.
    pub aborted: u64,
    /// Status `aio_error` (no module here produces it; kept for the shape).
    pub aio_error: u64,
}

impl IoErrorStat {
    /// Counts one I/O that completed with `status`; success and the layer's refusals are not
    /// errors here.
    pub fn record(&mut self, status: IoStatus) {
        match status {
            IoStatus::Failed => self.failed += 1,
            IoStatus::NvmeError { .. } => self.nvme_error += 1,
            IoStatus::Miscompare => self.miscompare += 1,
            IoStatus::Aborted => self.aborted += 1,
            IoStatus::Success | IoStatus::Nomem | IoStatus::Invalid(_) => {}
        }
    }

    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &IoErrorStat) {
        for (a, b) in self.counts_mut().into_iter().zip(o.counts()) {
            *a += b.1;
        }
    }

    /// `(SPDK status name, count)` in SPDK's order (status -1 down to -8).
    pub fn counts(&self) -> [(&'static str, u64); 8] {
        [
            ("failed", self.failed),
            ("nvme_error", self.nvme_error),
            ("scsi_error", self.scsi_error),
            ("nomem", self.nomem),
            ("miscompare", self.miscompare),
            ("first_fused_failed", self.first_fused_failed),
            ("aborted", self.aborted),
            ("aio_error", self.aio_error),
        ]
    }

    fn counts_mut(&mut self) -> [&mut u64; 8] {
        [
            &mut self.failed,
            &mut self.nvme_error,
            &mut self.scsi_error,
            &mut self.nomem,
            &mut self.miscompare,
            &mut self.first_fused_failed,
            &mut self.aborted,
            &mut self.aio_error,
        ]
    }

    /// The `io_error` object: only non-zero counts, keyed by SPDK's status names.
    pub fn to_json(&self) -> Value {
        let m: Map<String, Value> = self
            .counts()
            .into_iter()
            .filter(|(_, n)| *n != 0)
            .map(|(k, n)| (k.to_owned(), json!(n)))
            .collect();
        Value::Object(m)
    }
}

/// Queue-depth sampling figures of a bdev (SPDK `bdev_set_qd_sampling_period`): present in
/// `bdev_get_iostat` only while a sampling period is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDepthStat {
    /// Sampling period in microseconds (`queue_depth_polling_period`).
    pub period_us: u64,
    /// I/Os outstanding at the modules at the last sample, summed over channels
    /// (`queue_depth`; `u64::MAX` before the first sample, as SPDK).
    pub queue_depth: u64,
    /// Microseconds of sampled periods with I/O outstanding (`io_time`).
    pub io_time: u64,
    /// Sum over sampled periods of period × queue depth (`weighted_io_time`).
    pub weighted_io_time: u64,
}

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
    /// I/Os that completed with any status but success, the layer's own refusals included.
    pub num_io_errors: u64,
    /// Errors by status, as SPDK counts them (`io_error`).
    pub io_error: IoErrorStat,
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
            io_error: IoErrorStat::default(),
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
        self.io_error.add(&o.io_error);
    }

    /// Accounts one I/O that completed with an error `status`.
    pub fn record_error(&mut self, status: IoStatus) {
        self.num_io_errors += 1;
        self.io_error.record(status);
    }

    /// Clears what `mode` says (SPDK `spdk_bdev_reset_io_stat`): `MaxMin` the latency extrema,
    /// `Error` the error counts, `All` everything.
    pub fn reset(&mut self, mode: ResetStatMode) {
        match mode {
            ResetStatMode::None => {}
            ResetStatMode::MaxMin => {
                let d = IoStat::default();
                self.max_read_latency_ticks = d.max_read_latency_ticks;
                self.min_read_latency_ticks = d.min_read_latency_ticks;
                self.max_write_latency_ticks = d.max_write_latency_ticks;
                self.min_write_latency_ticks = d.min_write_latency_ticks;
                self.max_unmap_latency_ticks = d.max_unmap_latency_ticks;
                self.min_unmap_latency_ticks = d.min_unmap_latency_ticks;
                self.max_copy_latency_ticks = d.max_copy_latency_ticks;
                self.min_copy_latency_ticks = d.min_copy_latency_ticks;
            }
            ResetStatMode::Error => self.io_error = IoErrorStat::default(),
            ResetStatMode::All => *self = IoStat::default(),
        }
    }

    /// The counters as SPDK's `spdk_bdev_dump_io_stat_json` writes them (no `io_error`).
    fn counters_json(&self) -> Map<String, Value> {
        let min = |v: u64| if v == u64::MAX { 0 } else { v };
        let v = json!({
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
        });
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// One entry of `bdev_get_iostat -c` (`channels[]`): `thread_id` then the counters;
    /// SPDK writes no `io_error` per channel.
    pub fn to_channel_json(&self, thread_id: u64) -> Value {
        let mut m = Map::new();
        m.insert("thread_id".into(), json!(thread_id));
        m.extend(self.counters_json());
        Value::Object(m)
    }

    /// The `bdev_get_iostat` entry for bdev `name` with SPDK's keys: the counters (minima
    /// never seen are 0), `io_error`, and the queue-depth keys when `qd` is given (SPDK writes
    /// them only while a sampling period is set).
    pub fn to_json(&self, name: &str, qd: Option<QueueDepthStat>) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), json!(name));
        m.extend(self.counters_json());
        m.insert("io_error".into(), self.io_error.to_json());
        if let Some(q) = qd {
            m.insert("queue_depth_polling_period".into(), json!(q.period_us));
            m.insert("queue_depth".into(), json!(q.queue_depth));
            m.insert("io_time".into(), json!(q.io_time));
            m.insert("weighted_io_time".into(), json!(q.weighted_io_time));
        }
        Value::Object(m)
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
        let j = a.to_json("x", None);
        assert_eq!(j["min_unmap_latency_ticks"], 0);
        assert_eq!(j["min_write_latency_ticks"], 7);
        assert_eq!(j["io_error"], json!({}));
        assert!(j.get("queue_depth").is_none());
    }

    #[test]
    fn io_error_counts_statuses_by_spdk_name_and_skips_refusals() {
        let mut a = IoStat::default();
        a.record_error(IoStatus::Failed);
        a.record_error(IoStatus::Miscompare);
        a.record_error(IoStatus::Miscompare);
        a.record_error(IoStatus::NvmeError {
            sct: 0,
            sc: 2,
            cdw0: 0,
        });
        a.record_error(IoStatus::Aborted);
        a.record_error(IoStatus::Invalid(crate::InvalidIo::OutOfRange));
        a.record_error(IoStatus::Nomem);
        assert_eq!(a.num_io_errors, 7);
        let mut b = IoStat::default();
        b.add(&a);
        b.add(&a);
        let j = b.to_json(
            "d",
            Some(QueueDepthStat {
                period_us: 1000,
                queue_depth: 3,
                io_time: 4000,
                weighted_io_time: 9000,
            }),
        );
        assert_eq!(
            j["io_error"],
            json!({"failed": 2, "nvme_error": 2, "miscompare": 4, "aborted": 2})
        );
        assert_eq!(j["queue_depth_polling_period"], 1000);
        assert_eq!(j["queue_depth"], 3);
        assert_eq!(j["io_time"], 4000);
        assert_eq!(j["weighted_io_time"], 9000);
    }

    #[test]
    fn reset_modes_clear_what_spdk_clears() {
        let mut a = IoStat::default();
        a.record(IoType::Read, 512, 9);
        a.record(IoType::Write, 1024, 4);
        a.record_error(IoStatus::Failed);
        let before = a;
        a.reset(ResetStatMode::None);
        assert_eq!(a, before);
        a.reset(ResetStatMode::MaxMin);
        assert_eq!(a.num_read_ops, 1);
        assert_eq!(a.read_latency_ticks, 9);
        assert_eq!(a.max_read_latency_ticks, 0);
        assert_eq!(a.min_read_latency_ticks, u64::MAX);
        assert_eq!(a.min_write_latency_ticks, u64::MAX);
        assert_eq!(a.io_error.failed, 1);
        a.reset(ResetStatMode::Error);
        assert_eq!(a.io_error, IoErrorStat::default());
        assert_eq!(a.num_read_ops, 1);
        a.reset(ResetStatMode::All);
        assert_eq!(a, IoStat::default());
        let c = before.to_channel_json(7);
        assert_eq!(c["thread_id"], 7);
        assert_eq!(c["bytes_written"], 1024);
        assert!(c.get("io_error").is_none() && c.get("name").is_none());
    }
}
