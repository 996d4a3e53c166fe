//! `nvme_perf`: NVMe-oF I/O load generator and reporter, like SPDK's `spdk_nvme_perf`.
//!
//! `nvme_perf -r 'trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 subnqn:...' -q 32 -o 4096
//! -w randread -t 10 -c 0x3`: one worker thread per core in the mask; each worker runs one
//! I/O queue pair per namespace it is associated with (namespaces and workers are paired
//! round robin, as SPDK does); progress each second; then per-namespace and total IOPS,
//! MiB/s, average/min/max latency and latency percentiles.

mod hist;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hist::Histogram;
use nvme::host::{Completion, Controller, ControllerOpts, IoQpair, TransportId};

/// I/O pattern (`-w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Pattern {
    /// Sequential reads.
    Read,
    /// Sequential writes.
    Write,
    /// Random reads.
    #[value(name = "randread")]
    RandRead,
    /// Random writes.
    #[value(name = "randwrite")]
    RandWrite,
    /// Sequential mix (`-M` percent reads).
    Rw,
    /// Random mix (`-M` percent reads).
    #[value(name = "randrw")]
    RandRw,
}

impl Pattern {
    fn random(self) -> bool {
        matches!(
            self,
            Pattern::RandRead | Pattern::RandWrite | Pattern::RandRw
        )
    }

    fn read_percent(self, mix: Option<u32>) -> Option<u32> {
        match self {
            Pattern::Read | Pattern::RandRead => Some(100),
            Pattern::Write | Pattern::RandWrite => Some(0),
            Pattern::Rw | Pattern::RandRw => mix,
        }
    }
}

/// Command line (spdk_nvme_perf's option letters).
#[derive(Parser, Debug)]
#[command(name = "nvme_perf", about = "NVMe-oF performance tool")]
struct Args {
    /// Transport ID of a controller (repeatable): 'trtype:TCP adrfam:IPv4 traddr:<ip>
    /// trsvcid:<port> subnqn:<nqn> [ns:<nsid>] [hostnqn:<nqn>]'.
    #[arg(short = 'r', long = "transport", required = true)]
    trid: Vec<String>,
    /// I/Os in flight per namespace per worker.
    #[arg(short = 'q', long = "io-depth")]
    depth: u32,
    /// I/O size in bytes.
    #[arg(short = 'o', long = "io-size")]
    io_size: u32,
    /// I/O pattern.
    #[arg(short = 'w', long = "io-pattern", value_enum)]
    pattern: Pattern,
    /// Percentage of reads for rw and randrw.
    #[arg(short = 'M', long = "rwmixread")]
    rwmixread: Option<u32>,
    /// Run time in seconds.
    #[arg(short = 't', long = "time")]
    time: u64,
    /// Core mask of the workers (one thread per core, pinned to it).
    #[arg(short = 'c', long = "core-mask", default_value = "0x1")]
    core_mask: String,
    /// Enable NVMe/TCP header digest.
    #[arg(short = 'H', long = "enable-tcp-hdgst")]
    hdgst: bool,
    /// Enable NVMe/TCP data digest.
    #[arg(short = 'I', long = "enable-tcp-ddgst")]
    ddgst: bool,
}

/// Percentile cutoffs of SPDK perf's "Summary latency data".
const CUTOFFS: [f64; 15] = [
    0.01, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999, 0.99999, 0.999999,
    0.9999999,
];

/// One namespace assigned to one worker.
struct NsJob {
    name: String,
    nsid: u32,
    block_size: u32,
    num_blocks: u64,
    qpair: IoQpair,
}

/// Result of one namespace on one worker.
struct NsResult {
    name: String,
    core: u32,
    completed: u64,
    total_ns: u128,
    min_ns: u64,
    max_ns: u64,
    errors: u64,
    hist: Histogram,
}

struct Shared {
    stop: AtomicBool,
    completed: AtomicU64,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("nvme_perf: {msg}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let args = Args::parse();
    app::log::init_tool_logging("warn");
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn check_args(args: &Args) -> Result<(Vec<TransportId>, Vec<u32>, u32), String> {
    let mut trids = Vec::new();
    for s in &args.trid {
        trids.push(
            TransportId::parse(s)
                .map_err(|e| format!("error parsing transport address {s:?}: {e}"))?,
        );
    }
    if args.depth == 0 {
        return Err("queue depth (-q) must be at least 1".into());
    }
    if args.io_size == 0 {
        return Err("I/O size (-o) must be at least 1 byte".into());
    }
    if args.time == 0 {
        return Err("run time (-t) must be at least 1 second".into());
    }
    let read_pct = args
        .pattern
        .read_percent(args.rwmixread)
        .ok_or("rwmixread (-M) must be specified for rw or randrw workloads")?;
    if read_pct > 100 {
        return Err(format!("rwmixread (-M) {read_pct} is above 100"));
    }
    let mask = env::CpuMask::parse(&args.core_mask)
        .and_then(|m| m.validate().map(|()| m))
        .map_err(|e| format!("invalid core mask {:?}: {e}", args.core_mask))?;
    let cores: Vec<u32> = mask.cores().collect();
    if cores.is_empty() {
        return Err(format!("core mask {:?} selects no core", args.core_mask));
    }
    Ok((trids, cores, read_pct))
}

fn run(args: &Args) -> Result<(), String> {
    let (trids, cores, read_pct) = check_args(args)?;
    println!("Initializing NVMe Controllers");
    let mut ctrlrs = Vec::new();
    for t in &trids {
        let opts = ControllerOpts {
            header_digest: args.hdgst,
            data_digest: args.ddgst,
            io_queue_size: u16::try_from(args.depth.saturating_add(1)).unwrap_or(u16::MAX),
            ..Default::default()
        };
        let c = Controller::connect(t, opts).map_err(|e| {
            format!(
                "failed to attach to {} {}:{} ({}): {e}",
                t.trtype.as_str(),
                t.traddr,
                t.trsvcid,
                t.subnqn
            )
        })?;
        if c.is_discovery() {
            return Err(format!(
                "{} is a discovery subsystem; give an NVM subsystem NQN",
                t.subnqn
            ));
        }
        println!(
            "Attached to NVMeoF Controller at {} (addr:{} subnqn:{})",
            t.trtype.as_str(),
            t.traddr,
            t.subnqn
        );
        ctrlrs.push(c);
    }
    // Namespaces to drive, as (controller index, nsid).
    let mut nss = Vec::new();
    for (ci, c) in ctrlrs.iter().enumerate() {
        for ns in c.namespaces() {
            if c.trid().nsid.is_some_and(|n| n != ns.id()) {
                continue;
            }
            if !args.io_size.is_multiple_of(ns.block_size()) {
                println!(
                    "WARNING: controller {} ns {} has invalid ns size / block size for I/O size {}",
                    c.trid().subnqn,
                    ns.id(),
                    args.io_size
                );
                continue;
            }
            if u64::from(args.io_size) > ns.size_bytes() {
                println!(
                    "WARNING: ns {} is smaller than the I/O size; skipped",
                    ns.id()
                );
                continue;
            }
            nss.push((ci, ns.id(), ns.block_size(), ns.num_blocks()));
        }
    }
    if nss.is_empty() {
        return Err("no valid NVMe controllers or namespaces found".into());
    }
    // Pair namespaces and workers round robin (SPDK associate_workers_with_ns).
    let mut jobs: Vec<Vec<NsJob>> = cores.iter().map(|_| Vec::new()).collect();
    for i in 0..nss.len().max(cores.len()) {
        let (ci, nsid, bs, nb) = nss[i % nss.len()];
        let c = &mut ctrlrs[ci];
        let name = format!(
            "{} (addr:{} subnqn:{}) NSID {nsid}",
            c.trid().trtype.as_str(),
            c.trid().traddr,
            c.trid().subnqn
        );
        let qpair = c
            .alloc_io_qpair(u16::try_from(args.depth.saturating_add(1)).unwrap_or(u16::MAX))
            .map_err(|e| format!("ERROR: init_ns_worker_ctx() failed: {e}"))?;
        println!("Associating {name} with lcore {}", cores[i % cores.len()]);
        jobs[i % cores.len()].push(NsJob {
            name,
            nsid,
            block_size: bs,
            num_blocks: nb,
            qpair,
        });
    }
    println!("Initialization complete. Launching workers.");
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        completed: AtomicU64::new(0),
    });
    let start = Instant::now();
    let mut handles = Vec::new();
    for (core, jobs) in cores.iter().copied().zip(jobs) {
        if jobs.is_empty() {
            continue;
        }
        let shared = shared.clone();
        let cfg = WorkerCfg {
            depth: args.depth,
            io_size: args.io_size,
            random: args.pattern.random(),
            read_pct,
            seed: 0x9e37_79b9_7f4a_7c15 ^ u64::from(core),
        };
        handles.push(
            std::thread::Builder::new()
                .name(format!("perf-core{core}"))
                .spawn(move || worker(core, jobs, cfg, &shared))
                .map_err(|e| format!("cannot start worker thread: {e}"))?,
        );
    }
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let deadline = start + Duration::from_secs(args.time);
    let mut next_tick = start + Duration::from_secs(1);
    let mut last = 0u64;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        for c in &mut ctrlrs {
            if let Err(e) = c.process_admin_completions() {
                shared.stop.store(true, Ordering::Relaxed);
                return Err(format!("admin queue of {} failed: {e}", c.trid().subnqn));
            }
        }
        if Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            let now = shared.completed.load(Ordering::Relaxed);
            let ios = now - last;
            last = now;
            let mib = ios as f64 * f64::from(args.io_size) / (1024.0 * 1024.0);
            let end = if tty { '\r' } else { '\n' };
            print!("{ios:9} IOPS, {mib:8.2} MiB/s{end}");
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut results = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => results.extend(r),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a worker thread panicked".into()),
        }
    }
    if tty {
        println!();
    }
    for c in &mut ctrlrs {
        if let Err(e) = c.shutdown() {
            tracing::warn!(error = %e, "controller shutdown failed");
        }
    }
    report(&results, elapsed, args.io_size);
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    if errors > 0 {
        return Err(format!("{errors} I/O errors"));
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct WorkerCfg {
    depth: u32,
    io_size: u32,
    random: bool,
    read_pct: u32,
    seed: u64,
}

struct NsState {
    job: NsJob,
    size_in_ios: u64,
    io_blocks: u64,
    next_seq: u64,
    started: Vec<Instant>,
    free_tags: Vec<u64>,
    spare: Vec<Vec<u8>>,
    res: NsResult,
}

fn worker(
    core: u32,
    jobs: Vec<NsJob>,
    cfg: WorkerCfg,
    shared: &Shared,
) -> Result<Vec<NsResult>, String> {
    // One worker per core of the mask, pinned there as SPDK pins its reactors.
    env::pin_current_thread(core)
        .map_err(|e| format!("cannot pin the worker to core {core}: {e}"))?;
    let mut rng = fastrand::Rng::with_seed(cfg.seed);
    let mut states: Vec<NsState> = jobs
        .into_iter()
        .map(|job| {
            let io_blocks = u64::from(cfg.io_size / job.block_size);
            let depth = (cfg.depth as usize).min(job.qpair.depth());
            NsState {
                size_in_ios: (job.num_blocks / io_blocks).max(1),
                io_blocks,
                next_seq: 0,
                started: vec![Instant::now(); depth],
                free_tags: (0..depth as u64).collect(),
                spare: (0..depth)
                    .map(|_| vec![0x5a; cfg.io_size as usize])
                    .collect(),
                res: NsResult {
                    name: job.name.clone(),
                    core,
                    completed: 0,
                    total_ns: 0,
                    min_ns: u64::MAX,
                    max_ns: 0,
                    errors: 0,
                    hist: Histogram::default(),
                },
                job,
            }
        })
        .collect();
    let mut done: Vec<Completion> = Vec::new();
    loop {
        let stopping = shared.stop.load(Ordering::Relaxed);
        let mut outstanding = 0;
        let mut progressed = false;
        for st in &mut states {
            if !stopping {
                submit_all(st, &cfg, &mut rng);
            }
            done.clear();
            if let Err(e) = st.job.qpair.process_completions(&mut done) {
                return Err(format!("I/O qpair for {} failed: {e}", st.res.name));
            }
            let now = Instant::now();
            progressed |= !done.is_empty();
            for c in done.drain(..) {
                let lat = now
                    .duration_since(st.started.get(c.tag as usize).copied().unwrap_or(now))
                    .as_nanos() as u64;
                let r = &mut st.res;
                if c.is_success() {
                    r.completed += 1;
                    r.total_ns += u128::from(lat);
                    r.min_ns = r.min_ns.min(lat);
                    r.max_ns = r.max_ns.max(lat);
                    r.hist.record(lat);
                    shared.completed.fetch_add(1, Ordering::Relaxed);
                } else {
                    r.errors += 1;
                    eprintln!("nvme_perf: I/O failed on {}: {}", r.name, c.status);
                }
                st.free_tags.push(c.tag);
                let mut buf = c.buf;
                if buf.len() != cfg.io_size as usize {
                    buf = vec![0x5a; cfg.io_size as usize];
                }
                st.spare.push(buf);
            }
            outstanding += st.job.qpair.outstanding();
        }
        if stopping && outstanding == 0 {
            break;
        }
        if !progressed {
            // Busy polling, but let the target's threads run on a shared machine.
            std::thread::yield_now();
        }
    }
    Ok(states.into_iter().map(|s| s.res).collect())
}

fn submit_all(st: &mut NsState, cfg: &WorkerCfg, rng: &mut fastrand::Rng) {
    while let Some(tag) = st.free_tags.pop() {
        let Some(buf) = st.spare.pop() else {
            st.free_tags.push(tag);
            return;
        };
        let io = if cfg.random {
            rng.u64(..st.size_in_ios)
        } else {
            let o = st.next_seq;
            st.next_seq = (st.next_seq + 1) % st.size_in_ios;
            o
        };
        let lba = io * st.io_blocks;
        let is_read = cfg.read_pct == 100 || (cfg.read_pct != 0 && rng.u32(..100) < cfg.read_pct);
        if let Some(t) = st.started.get_mut(tag as usize) {
            *t = Instant::now();
        }
        let r = if is_read {
            st.job.qpair.read(st.job.nsid, lba, buf, tag)
        } else {
            st.job.qpair.write(st.job.nsid, lba, buf, tag)
        };
        if let Err(rej) = r {
            st.free_tags.push(tag);
            let mut b = rej.buf;
            if b.len() != cfg.io_size as usize {
                b = vec![0x5a; cfg.io_size as usize];
            }
            st.spare.push(b);
            return;
        }
    }
}

fn report(results: &[NsResult], elapsed: Duration, io_size: u32) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let w = results.iter().map(|r| r.name.len()).max().unwrap_or(0);
    println!("========================================================");
    println!("{:>width$}", "Latency(us)", width = w + 60);
    println!(
        "{:<width$}: {:>10} {:>10} {:>10} {:>10} {:>10}",
        "Device Information",
        "IOPS",
        "MiB/s",
        "Average",
        "min",
        "max",
        width = w + 13
    );
    let (mut tiops, mut tmib, mut tcount, mut tns) = (0f64, 0f64, 0u64, 0u128);
    let (mut tmin, mut tmax) = (f64::MAX, 0f64);
    for r in results.iter().filter(|r| r.completed > 0) {
        let iops = r.completed as f64 / secs;
        let mib = iops * f64::from(io_size) / (1024.0 * 1024.0);
        let avg = r.total_ns as f64 / r.completed as f64 / 1000.0;
        let min = r.min_ns as f64 / 1000.0;
        let max = r.max_ns as f64 / 1000.0;
        tmin = tmin.min(min);
        tmax = tmax.max(max);
        println!(
            "{:<w$} from core {:2}: {iops:10.2} {mib:10.2} {avg:10.2} {min:10.2} {max:10.2}",
            r.name, r.core
        );
        tiops += iops;
        tmib += mib;
        tcount += r.completed;
        tns += r.total_ns;
    }
    if tcount > 0 {
        println!("========================================================");
        println!(
            "{:<width$}: {tiops:10.2} {tmib:10.2} {:10.2} {tmin:10.2} {tmax:10.2}",
            "Total",
            tns as f64 / tcount as f64 / 1000.0,
            width = w + 13
        );
        println!();
    }
    for r in results.iter().filter(|r| r.completed > 0) {
        println!(
            "Summary latency data for {:<43.43} from core {}:",
            r.name, r.core
        );
        println!(
            "================================================================================="
        );
        for (cut, ns) in r.hist.percentiles(&CUTOFFS) {
            println!("{:9.5}% : {:9.3}us", cut * 100.0, ns as f64 / 1000.0);
        }
        println!();
    }
}
