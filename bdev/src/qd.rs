//! Queue-depth sampling (SPDK `spdk_bdev_set_qd_sampling_period`,
//! `bdev_calculate_measured_queue_depth`): a periodic poller on the Thread that set the period
//! sums every channel's outstanding I/O (by message to each channel's Thread) and accumulates
//! `io_time` and `weighted_io_time`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::BdevError;
use crate::bdev::BdevShared;
use crate::registry::lock;
use crate::stats::QueueDepthStat;

/// Sampling state of one bdev.
pub(crate) struct QdState {
    period_us: u64,
    measured: u64,
    io_time: u64,
    weighted_io_time: u64,
    in_progress: bool,
    /// Thread running the sampler poller.
    thread: Option<env::ThreadHandle>,
    /// Bumped on every period change; a sampler of an older generation stops.
    generation: u64,
}

impl Default for QdState {
    fn default() -> Self {
        QdState {
            period_us: 0,
            // SPDK starts `measured_queue_depth` at UINT64_MAX until the first sample.
            measured: u64::MAX,
            io_time: 0,
            weighted_io_time: 0,
            in_progress: false,
            thread: None,
            generation: 0,
        }
    }
}

thread_local! {
    /// Sampler pollers on this OS thread's Threads, by bdev address.
    static SAMPLERS: RefCell<HashMap<usize, env::Poller>> = RefCell::new(HashMap::new());
}

fn key(b: &BdevShared) -> usize {
    std::ptr::from_ref(b) as usize
}

pub(crate) fn set_period(b: &Arc<BdevShared>, period_us: u64) -> Result<(), BdevError> {
    let here = env::Thread::current().ok_or(BdevError::NoThread)?.handle();
    let (old_thread, generation) = {
        let mut q = lock(&b.qd);
        if q.period_us == period_us {
            return Ok(());
        }
        q.period_us = period_us;
        q.generation += 1;
        let old = q.thread.take();
        if period_us != 0 {
            q.thread = Some(here.clone());
        }
        (old, q.generation)
    };
    let k = key(b);
    if let Some(t) = old_thread {
        if t == here {
            SAMPLERS.with(|s| s.borrow_mut().remove(&k));
        } else if let Err(e) = t.send_msg(move || {
            SAMPLERS.with(|s| s.borrow_mut().remove(&k));
        }) {
            tracing::warn!(error = %e, "queue-depth sampler of another thread not stopped");
        }
    }
    tracing::info!(bdev = %b.props.name, period_us, "queue depth sampling period set");
    if period_us == 0 {
        return Ok(());
    }
    let weak = Arc::downgrade(b);
    let poller = env::poller_register_periodic(
        move || sample(&weak, generation),
        Duration::from_micros(period_us),
    )
    .map_err(|_| BdevError::NoThread)?;
    SAMPLERS.with(|s| s.borrow_mut().insert(k, poller));
    Ok(())
}

/// Stops sampling (bdev unregistration, as SPDK).
pub(crate) fn stop(b: &Arc<BdevShared>) {
    let old = {
        let mut q = lock(&b.qd);
        q.period_us = 0;
        q.generation += 1;
        q.thread.take()
    };
    if let Some(t) = old {
        let k = key(b);
        let _ = t.send_msg(move || {
            SAMPLERS.with(|s| s.borrow_mut().remove(&k));
        });
    }
}

fn sample(weak: &Weak<BdevShared>, generation: u64) -> env::PollStatus {
    let Some(b) = weak.upgrade() else {
        return env::PollStatus::Idle;
    };
    {
        let mut q = lock(&b.qd);
        if q.in_progress || q.generation != generation {
            return env::PollStatus::Idle;
        }
        q.in_progress = true;
    }
    let acc = Arc::new(AtomicU64::new(0));
    let acc2 = Arc::clone(&acc);
    let b2 = Arc::clone(&b);
    env::for_each_channel(
        &b,
        move |ch| {
            acc2.fetch_add(ch.outstanding(), Ordering::Relaxed);
        },
        move || {
            let mut q = lock(&b2.qd);
            q.in_progress = false;
            if q.generation != generation {
                return;
            }
            let depth = acc.load(Ordering::Relaxed);
            q.measured = depth;
            if depth != 0 {
                q.io_time = q.io_time.saturating_add(q.period_us);
                q.weighted_io_time = q
                    .weighted_io_time
                    .saturating_add(q.period_us.saturating_mul(depth));
            }
        },
    );
    env::PollStatus::Busy
}

pub(crate) fn stat(b: &BdevShared) -> Option<QueueDepthStat> {
    let q = lock(&b.qd);
    (q.period_us != 0).then_some(QueueDepthStat {
        period_us: q.period_us,
        queue_depth: q.measured,
        io_time: q.io_time,
        weighted_io_time: q.weighted_io_time,
    })
}
