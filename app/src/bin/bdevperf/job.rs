//! One job: a bdev opened on one core's Thread, kept busy with `-q` I/Os for `-t` seconds.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bdev::{Bdev, BdevChannel, Desc, IoCompletion, IoVecs};

use crate::opts::{Checked, Workload};

/// What a job does: which bdev, where, and on which block range.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Position in the report.
    pub index: usize,
    /// Bdev name.
    pub bdev: String,
    /// Core whose reactor runs the job.
    pub core: u32,
    /// First block of the job's range.
    pub start_block: u64,
    /// Blocks in the range.
    pub num_blocks: u64,
    /// Blocks per I/O.
    pub io_blocks: u64,
    /// Block size in bytes.
    pub block_size: u64,
}

/// Plans one job per (bdev, core); the jobs of a bdev split its blocks so that verify jobs never
/// write over each other.
pub fn plan(bdevs: &[Bdev], cores: &[u32], o: &Checked) -> Result<Vec<JobSpec>, String> {
    if bdevs.is_empty() {
        return Err("no bdevs to run on".into());
    }
    let mut out = Vec::new();
    for b in bdevs {
        let bs = u64::from(b.block_size());
        if bs == 0 || !o.io_size.is_multiple_of(bs) {
            return Err(format!(
                "-o {}: I/O size must be a multiple of the block size {bs} of bdev {}",
                o.io_size,
                b.name()
            ));
        }
        let io_blocks = o.io_size / bs;
        let per_job = b.num_blocks() / cores.len() as u64;
        let units = per_job / io_blocks;
        if units == 0 {
            return Err(format!(
                "bdev {}: {} blocks cannot hold one {}-byte I/O per core",
                b.name(),
                b.num_blocks(),
                o.io_size
            ));
        }
        if o.workload == Workload::Verify && units < u64::from(o.queue_depth) {
            return Err(format!(
                "bdev {}: verify needs at least -q ({}) I/O units per job, has {units}",
                b.name(),
                o.queue_depth
            ));
        }
        for (i, &core) in cores.iter().enumerate() {
            out.push(JobSpec {
                index: out.len(),
                bdev: b.name().to_owned(),
                core,
                start_block: per_job * i as u64,
                num_blocks: units * io_blocks,
                io_blocks,
                block_size: bs,
            });
        }
    }
    Ok(out)
}

/// What a job measured.
#[derive(Debug, Clone, Default)]
pub struct JobResult {
    /// Position in the report.
    pub index: usize,
    /// "bdev (Core Mask 0x..)".
    pub label: String,
    /// Bdev name.
    pub bdev: String,
    /// First block and block count of the range (verify report line).
    pub range: (u64, u64),
    /// Completed I/Os.
    pub ios: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Failed I/Os.
    pub fails: u64,
    /// Time from first submission to last completion.
    pub runtime: Duration,
    /// Sum, min and max of the latencies in ns.
    pub lat_sum_ns: u128,
    /// Smallest latency.
    pub lat_min_ns: u64,
    /// Largest latency.
    pub lat_max_ns: u64,
    /// Miscompares found by verify (the first few described).
    pub miscompares: u64,
    /// Descriptions of the first miscompares.
    pub miscompare_msgs: Vec<String>,
    /// Why the job could not run.
    pub error: Option<String>,
}

impl JobResult {
    /// A job that never ran.
    pub fn failed_to_start(index: usize, name: &str, _core: u32, why: &str) -> JobResult {
        JobResult {
            index,
            label: name.to_owned(),
            bdev: name.to_owned(),
            error: Some(why.to_owned()),
            ..JobResult::default()
        }
    }
}

/// State shared by the jobs and the app thread.
#[derive(Debug)]
pub struct Shared {
    remaining: AtomicUsize,
    ios: AtomicU64,
    bytes: AtomicU64,
    results: Mutex<Vec<JobResult>>,
}

impl Shared {
    /// For `jobs` jobs.
    pub fn new(jobs: usize) -> Arc<Shared> {
        Arc::new(Shared {
            remaining: AtomicUsize::new(jobs),
            ios: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            results: Mutex::new(Vec::new()),
        })
    }

    /// Records a finished job.
    pub fn push(&self, r: JobResult) {
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
        self.remaining.fetch_sub(1, Ordering::AcqRel);
    }

    /// True when every job has reported.
    pub fn all_done(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }

    /// I/Os and bytes completed so far by all jobs.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.ios.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// The results, in job order.
    pub fn take_results(&self) -> Vec<JobResult> {
        let mut v = std::mem::take(&mut *self.results.lock().unwrap_or_else(|e| e.into_inner()));
        v.sort_by_key(|r| r.index);
        v
    }
}

struct Job {
    spec: JobSpec,
    opts: Arc<Checked>,
    shared: Arc<Shared>,
    ch: RefCell<Option<BdevChannel>>,
    desc: RefCell<Option<Desc>>,
    res: RefCell<JobResult>,
    started: Instant,
    deadline: Instant,
    inflight: Cell<u32>,
    next_unit: Cell<u64>,
    pass: Cell<u64>,
    rng: RefCell<fastrand::Rng>,
}

/// Runs a job on the current (job) Thread.
pub fn run(spec: JobSpec, opts: Arc<Checked>, shared: Arc<Shared>) {
    let label = spec.label();
    let mut res = JobResult {
        index: spec.index,
        label,
        bdev: spec.bdev.clone(),
        range: (spec.start_block, spec.num_blocks),
        lat_min_ns: u64::MAX,
        ..JobResult::default()
    };
    let write = !matches!(opts.workload, Workload::Read | Workload::RandRead);
    let opened = bdev::open_ext(&spec.bdev, write, |_| {})
        .map_err(|e| e.to_string())
        .and_then(|d| match d.get_io_channel() {
            Ok(c) => Ok((d, c)),
            Err(e) => Err(e.to_string()),
        });
    let (desc, ch) = match opened {
        Ok(x) => x,
        Err(e) => {
            eprintln!("bdevperf: job {}: {e}", res.label);
            res.error = Some(e);
            shared.push(res);
            return;
        }
    };
    let now = Instant::now();
    let job = Rc::new(Job {
        rng: RefCell::new(fastrand::Rng::with_seed(
            0x9E37_79B9_7F4A_7C15 ^ (spec.index as u64 + 1),
        )),
        spec,
        deadline: now + opts.time,
        opts,
        shared,
        ch: RefCell::new(Some(ch)),
        desc: RefCell::new(Some(desc)),
        res: RefCell::new(res),
        started: now,
        inflight: Cell::new(0),
        next_unit: Cell::new(0),
        pass: Cell::new(0),
    });
    let depth = job.opts.queue_depth;
    job.inflight.set(depth);
    for _ in 0..depth {
        let buf = IoVecs::from_vec(vec![0u8; job.io_bytes()]);
        submit_next(&job, buf);
    }
}

impl Job {
    fn io_bytes(&self) -> usize {
        usize::try_from(self.spec.io_blocks * self.spec.block_size).unwrap_or(usize::MAX)
    }

    fn units(&self) -> u64 {
        self.spec.num_blocks / self.spec.io_blocks
    }

    /// The next sequential unit (and the pass over the range it belongs to).
    fn next_seq(&self) -> (u64, u64) {
        let u = self.next_unit.get();
        let pass = self.pass.get();
        if u + 1 >= self.units() {
            self.next_unit.set(0);
            self.pass.set(pass + 1);
        } else {
            self.next_unit.set(u + 1);
        }
        (u, pass)
    }

    fn block_of(&self, unit: u64) -> u64 {
        self.spec.start_block + unit * self.spec.io_blocks
    }

    fn record(&self, c: &IoCompletion, t0: Instant, bytes: u64) {
        let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut r = self.res.borrow_mut();
        if c.is_success() {
            r.ios += 1;
            r.bytes += bytes;
            r.lat_sum_ns += u128::from(ns);
            r.lat_min_ns = r.lat_min_ns.min(ns);
            r.lat_max_ns = r.lat_max_ns.max(ns);
            self.shared.ios.fetch_add(1, Ordering::Relaxed);
            self.shared.bytes.fetch_add(bytes, Ordering::Relaxed);
        } else {
            r.fails += 1;
            if r.fails <= 5 {
                eprintln!(
                    "bdevperf: job {}: {:?} failed with {:?}",
                    r.label,
                    c.request.io_type(),
                    c.status
                );
            }
        }
    }

    fn finish(&self) {
        let mut r = self.res.borrow().clone();
        r.runtime = self.started.elapsed();
        if r.lat_min_ns == u64::MAX {
            r.lat_min_ns = 0;
        }
        self.ch.borrow_mut().take();
        self.desc.borrow_mut().take();
        self.shared.push(r);
    }
}

/// The verify pattern: each 8-byte word holds the seed in its top 16 bits and the word's byte
/// offset on the bdev in the rest (little-endian).
pub fn fill_pattern(buf: &mut [u8], byte_offset: u64, seed: u64) {
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let w = pattern_word(byte_offset + 8 * i as u64, seed).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

fn pattern_word(byte_offset: u64, seed: u64) -> u64 {
    (seed << 48) ^ byte_offset
}

/// The first byte of `got` that differs from the pattern: (index, expected, got).
pub fn first_mismatch(got: &[u8], byte_offset: u64, seed: u64) -> Option<(usize, u8, u8)> {
    let mut want = vec![0u8; got.len()];
    fill_pattern(&mut want, byte_offset, seed);
    want.iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .map(|i| (i, want[i], got[i]))
}

fn submit_next(job: &Rc<Job>, mut buf: IoVecs) {
    if Instant::now() >= job.deadline {
        let left = job.inflight.get() - 1;
        job.inflight.set(left);
        if left == 0 {
            job.finish();
        }
        return;
    }
    let ch_ref = job.ch.borrow();
    let Some(ch) = ch_ref.as_ref() else {
        return;
    };
    let io_blocks = job.spec.io_blocks;
    let bytes = io_blocks * job.spec.block_size;
    let t0 = Instant::now();
    let j = job.clone();
    let random = matches!(
        job.opts.workload,
        Workload::RandRead | Workload::RandWrite | Workload::RandRw
    );
    let (unit, pass) = if random {
        (job.rng.borrow_mut().u64(..job.units()), 0)
    } else {
        job.next_seq()
    };
    let block = job.block_of(unit);
    match job.opts.workload {
        Workload::Verify => {
            // The pass over the range is part of the seed so that rewrites change the data.
            let seed = ((job.spec.index as u64) << 8 | (pass & 0xff)) & 0xffff;
            let byte_off = block * job.spec.block_size;
            let mut v = buf.to_vec();
            fill_pattern(&mut v, byte_off, seed);
            buf.copy_from_slice_at(0, &v);
            ch.write(buf, block, io_blocks, move |c| {
                j.record(&c, t0, bytes);
                let ok = c.is_success();
                let Some((buf, _)) = c.into_bufs() else {
                    return;
                };
                if !ok {
                    submit_next(&j, buf);
                    return;
                }
                verify_read(&j, buf, block, byte_off, seed);
            });
        }
        Workload::Unmap | Workload::Flush | Workload::Reset => {
            let cb = move |c: IoCompletion| {
                j.record(&c, t0, bytes);
                submit_next(&j, buf);
            };
            match job.opts.workload {
                Workload::Unmap => ch.unmap(block, io_blocks, cb),
                Workload::Flush => ch.flush(block, io_blocks, cb),
                _ => ch.reset(cb),
            }
        }
        _ => {
            let read = job.rng.borrow_mut().u32(..100) < job.opts.read_pct;
            let cb = move |c: IoCompletion| {
                j.record(&c, t0, bytes);
                if let Some((buf, _)) = c.into_bufs() {
                    submit_next(&j, buf);
                }
            };
            if read {
                ch.read(buf, block, io_blocks, cb);
            } else {
                ch.write(buf, block, io_blocks, cb);
            }
        }
    }
}

fn verify_read(job: &Rc<Job>, buf: IoVecs, block: u64, byte_off: u64, seed: u64) {
    let ch_ref = job.ch.borrow();
    let Some(ch) = ch_ref.as_ref() else {
        return;
    };
    let io_blocks = job.spec.io_blocks;
    let bytes = io_blocks * job.spec.block_size;
    let mut buf = buf;
    let zero = vec![0u8; buf.total_len()];
    buf.copy_from_slice_at(0, &zero);
    let t0 = Instant::now();
    let j = job.clone();
    ch.read(buf, block, io_blocks, move |c| {
        j.record(&c, t0, bytes);
        let ok = c.is_success();
        let Some((buf, _)) = c.into_bufs() else {
            return;
        };
        if ok
            && let Some((i, want, got)) = first_mismatch(&buf.to_vec(), byte_off, seed) {
                let msg = format!(
                    "miscompare on bdev {} at offset 0x{:x} (block {block}), byte {i}: expected 0x{want:02x}, read 0x{got:02x}",
                    j.spec.bdev, byte_off
                );
                eprintln!("bdevperf: {msg}");
                let mut r = j.res.borrow_mut();
                r.miscompares += 1;
                if r.miscompare_msgs.len() < 8 {
                    r.miscompare_msgs.push(msg);
                }
            }
        submit_next(&j, buf);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_holds_offset_and_seed_and_mismatch_is_found() {
        let mut b = vec![0u8; 16];
        fill_pattern(&mut b, 4096, 3);
        assert_eq!(&b[..8], &((3u64 << 48) ^ 4096).to_le_bytes());
        assert_eq!(&b[8..], &((3u64 << 48) ^ 4104).to_le_bytes());
        assert_eq!(first_mismatch(&b, 4096, 3), None);
        b[9] ^= 0xff;
        assert_eq!(first_mismatch(&b, 4096, 3), Some((9, 0x10, 0xef)));
        assert_eq!(first_mismatch(&b, 4096, 4).map(|m| m.0), Some(6));
    }
}
