//! Per-bdev QoS rate limits (SPDK `bdev_set_qos_limit`), enforced per channel.
//!
//! SPDK funnels a QoS bdev's I/O through one thread. Here every channel runs its own token
//! bucket holding `limit / number_of_channels`, refilled every 1 ms timeslice (SPDK's
//! `SPDK_BDEV_QOS_TIMESLICE_IN_USEC`); the division is redone whenever a channel of the bdev
//! is created or destroyed, so the sum over channels equals the configured limit. A channel
//! whose quota runs out holds further I/O in FIFO order until the next timeslice. As in SPDK,
//! an I/O is admitted while a quota is positive and may drive it negative; the deficit is
//! carried into the next timeslice.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::BdevError;
use crate::io::IoType;
use crate::registry::lock;

/// QoS timeslice in nanoseconds (SPDK `SPDK_BDEV_QOS_TIMESLICE_IN_USEC` = 1000 us).
pub const QOS_TIMESLICE_NS: u64 = 1_000_000;
/// IOPS limits must be multiples of this (SPDK `SPDK_BDEV_QOS_MIN_IOS_PER_SEC`).
pub const QOS_MIN_IOS_PER_SEC: u64 = 1000;
/// Smallest byte quota of a timeslice (SPDK `SPDK_BDEV_QOS_MIN_BYTE_PER_TIMESLICE`).
const QOS_MIN_BYTES_PER_TIMESLICE: u64 = 512;
const NS_PER_SEC: u64 = 1_000_000_000;
const MIB: u64 = 1024 * 1024;

/// Rate limits of one bdev; 0 means unlimited (SPDK `assigned_rate_limits`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QosLimits {
    /// Read plus write I/Os per second (multiple of 1000).
    pub rw_ios_per_sec: u64,
    /// Read plus write MiB per second.
    pub rw_mbytes_per_sec: u64,
    /// Read MiB per second.
    pub r_mbytes_per_sec: u64,
    /// Write MiB per second.
    pub w_mbytes_per_sec: u64,
}

impl QosLimits {
    /// True when no limit is set.
    pub fn is_unlimited(&self) -> bool {
        *self == QosLimits::default()
    }

    /// Checks SPDK's rule: IOPS limits are 0 or a multiple of 1000.
    pub fn validate(&self) -> Result<(), BdevError> {
        if !self.rw_ios_per_sec.is_multiple_of(QOS_MIN_IOS_PER_SEC) {
            return Err(BdevError::InvalidArgument(format!(
                "rw_ios_per_sec {} is not a multiple of {QOS_MIN_IOS_PER_SEC}",
                self.rw_ios_per_sec
            )));
        }
        Ok(())
    }
}

/// Bdev-wide QoS state read by channels on the I/O path through one atomic generation.
#[derive(Debug, Default)]
pub(crate) struct QosShared {
    limits: Mutex<QosLimits>,
    generation: AtomicU64,
    channels: AtomicUsize,
}

impl QosShared {
    pub(crate) fn limits(&self) -> QosLimits {
        *lock(&self.limits)
    }

    pub(crate) fn set(&self, l: QosLimits) {
        *lock(&self.limits) = l;
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn channel_added(&self) {
        self.channels.fetch_add(1, Ordering::AcqRel);
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn channel_removed(&self) {
        self.channels.fetch_sub(1, Ordering::AcqRel);
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// One channel's token bucket.
#[derive(Debug)]
pub(crate) struct QosBucket {
    generation: u64,
    enabled: bool,
    quota: [Option<i64>; 4],
    remaining: [i64; 4],
    slice_start: u64,
}

impl QosBucket {
    pub(crate) fn new() -> QosBucket {
        QosBucket {
            generation: u64::MAX,
            enabled: false,
            quota: [None; 4],
            remaining: [0; 4],
            slice_start: 0,
        }
    }

    /// Reloads the limits if they (or the channel count) changed. Cheap when unchanged.
    pub(crate) fn refresh(&mut self, shared: &QosShared, now_ns: u64) {
        let g = shared.generation.load(Ordering::Acquire);
        if g == self.generation {
            return;
        }
        self.generation = g;
        let l = shared.limits();
        let n = shared.channels.load(Ordering::Acquire).max(1) as u64;
        let per_slice = |per_sec: u64, min: u64| -> Option<i64> {
            if per_sec == 0 {
                return None;
            }
            let q = per_sec.saturating_mul(QOS_TIMESLICE_NS) / NS_PER_SEC / n;
            Some(i64::try_from(q.max(min)).unwrap_or(i64::MAX))
        };
        self.quota = [
            per_slice(l.rw_ios_per_sec, 1),
            per_slice(
                l.rw_mbytes_per_sec.saturating_mul(MIB),
                QOS_MIN_BYTES_PER_TIMESLICE,
            ),
            per_slice(
                l.r_mbytes_per_sec.saturating_mul(MIB),
                QOS_MIN_BYTES_PER_TIMESLICE,
            ),
            per_slice(
                l.w_mbytes_per_sec.saturating_mul(MIB),
                QOS_MIN_BYTES_PER_TIMESLICE,
            ),
        ];
        self.enabled = self.quota.iter().any(Option::is_some);
        for i in 0..4 {
            self.remaining[i] = self.quota[i].unwrap_or(0);
        }
        self.slice_start = now_ns;
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Starts new timeslices up to `now_ns`; true if at least one started.
    pub(crate) fn tick(&mut self, now_ns: u64) -> bool {
        if !self.enabled || now_ns < self.slice_start + QOS_TIMESLICE_NS {
            return false;
        }
        let slices = (now_ns - self.slice_start) / QOS_TIMESLICE_NS;
        self.slice_start += slices * QOS_TIMESLICE_NS;
        for i in 0..4 {
            if let Some(q) = self.quota[i] {
                let refill = q.saturating_mul(i64::try_from(slices).unwrap_or(i64::MAX));
                self.remaining[i] = self.remaining[i].saturating_add(refill).min(q);
            }
        }
        true
    }

    /// Admits an I/O if every applicable quota is positive, charging it.
    pub(crate) fn try_admit(&mut self, io_type: IoType, bytes: u64) -> bool {
        let (is_read, is_write) = match io_type {
            IoType::Read => (true, false),
            IoType::Write => (false, true),
            _ => return true,
        };
        let applies = [true, true, is_read, is_write];
        let limited: [bool; 4] = std::array::from_fn(|i| applies[i] && self.quota[i].is_some());
        if (0..4).any(|i| limited[i] && self.remaining[i] <= 0) {
            return false;
        }
        let b = i64::try_from(bytes).unwrap_or(i64::MAX);
        let cost = [1, b, b, b];
        for ((rem, lim), c) in self.remaining.iter_mut().zip(limited).zip(cost) {
            if lim {
                *rem = rem.saturating_sub(c);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iops_limit_admits_quota_per_timeslice_split_over_channels() {
        let shared = QosShared::default();
        shared.channel_added();
        shared.channel_added();
        shared.set(QosLimits {
            rw_ios_per_sec: 4000,
            ..QosLimits::default()
        });
        let mut b = QosBucket::new();
        b.refresh(&shared, 0);
        // 4000/s = 4 per 1 ms slice, halved over two channels.
        assert!(b.try_admit(IoType::Read, 512));
        assert!(b.try_admit(IoType::Write, 512));
        assert!(!b.try_admit(IoType::Read, 512));
        assert!(b.try_admit(IoType::Flush, 0));
        assert!(!b.tick(999_999));
        assert!(b.tick(1_000_000));
        assert!(b.try_admit(IoType::Read, 512));
    }

    #[test]
    fn byte_limit_carries_deficit() {
        let shared = QosShared::default();
        shared.channel_added();
        shared.set(QosLimits {
            w_mbytes_per_sec: 1,
            ..QosLimits::default()
        });
        let mut b = QosBucket::new();
        b.refresh(&shared, 0);
        // 1 MiB/s = 1048 bytes per slice; a 4 KiB write is admitted and leaves a deficit.
        assert!(b.try_admit(IoType::Write, 4096));
        assert!(!b.try_admit(IoType::Write, 512));
        assert!(b.try_admit(IoType::Read, 512));
        b.tick(1_000_000);
        assert!(!b.try_admit(IoType::Write, 512));
        b.tick(3_000_000);
        assert!(b.try_admit(IoType::Write, 512));
    }

    #[test]
    fn iops_not_multiple_of_1000_is_invalid() {
        let l = QosLimits {
            rw_ios_per_sec: 1500,
            ..QosLimits::default()
        };
        assert_eq!(l.validate().unwrap_err().errno(), 22);
    }
}
