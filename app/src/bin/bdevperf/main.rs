//! `bdevperf`: bdev I/O load generator (SPDK `examples/bdev/bdevperf`).
//!
//! Flow: parse and check the options on the main thread -> start the app framework with the
//! bdevs of `-c` -> once the bdevs exist, spawn one job Thread per (bdev, core) that keeps `-q`
//! I/Os in flight for `-t` seconds -> print a progress line each second, then a table per job and
//! a total -> exit 0, or 1 on any failed I/O or miscompare.

mod job;
mod opts;
mod report;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use env::PollStatus;

use crate::job::{JobResult, JobSpec, Shared};
use crate::opts::{PerfOpts, Workload};

/// Exit code decided by the tool itself (the framework path may not hand it over).
static TOOL_EXIT: AtomicI32 = AtomicI32::new(0);

fn main() {
    let opts = PerfOpts::parse();
    let cfg = match opts.check() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bdevperf: {e}");
            std::process::exit(1);
        }
    };
    let expected = match &cfg.app.json {
        Some(p) => match app::config::ConfigFile::load(p) {
            Ok(f) => opts::expected_bdevs(&f),
            Err(e) => {
                eprintln!("bdevperf: {e:#}");
                std::process::exit(1);
            }
        },
        None => {
            eprintln!("bdevperf: no bdevs: give a JSON config with -c/--json");
            std::process::exit(1);
        }
    };
    let app_opts = cfg.app.clone();
    let perf = Arc::new(cfg);
    let start: app::StartFn = Box::new(move || {
        let ctl = Controller::new(perf, expected);
        if let Err(e) = ctl.watch() {
            eprintln!("bdevperf: cannot register the app poller: {e}");
            TOOL_EXIT.store(1, Ordering::SeqCst);
            if let Some(r) = env::reactors() {
                r.stop();
            }
        }
        let c2 = ctl.clone();
        Box::new(move |fw: &Rc<app::framework::Framework>| {
            *c2.fw.borrow_mut() = Some(fw.clone());
        })
    });
    match app::run_with(app_opts, Some(start)) {
        Ok(code) => {
            let tool = TOOL_EXIT.load(Ordering::SeqCst);
            std::process::exit(if code != 0 { code } else { tool });
        }
        Err(e) => {
            eprintln!("bdevperf: {e:#}");
            std::process::exit(1);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    WaitBdevs,
    Running,
    Done,
}

/// App-thread state: waits for the bdevs, starts the jobs, prints progress and the report.
struct Controller {
    opts: Arc<opts::Checked>,
    expected: Vec<String>,
    phase: RefCell<Phase>,
    created: Instant,
    shared: RefCell<Option<Arc<Shared>>>,
    started: RefCell<Option<Instant>>,
    last_print: RefCell<(Instant, u64, u64)>,
    fw: RefCell<Option<Rc<app::framework::Framework>>>,
    poller: RefCell<Option<env::Poller>>,
}

/// How long the bdevs of the config may take to appear.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

impl Controller {
    fn new(opts: Arc<opts::Checked>, expected: Vec<String>) -> Rc<Controller> {
        let now = Instant::now();
        Rc::new(Controller {
            opts,
            expected,
            phase: RefCell::new(Phase::WaitBdevs),
            created: now,
            shared: RefCell::new(None),
            started: RefCell::new(None),
            last_print: RefCell::new((now, 0, 0)),
            fw: RefCell::new(None),
            poller: RefCell::new(None),
        })
    }

    fn watch(self: &Rc<Self>) -> Result<(), env::EnvError> {
        let me = self.clone();
        let p = env::poller_register_periodic(move || me.tick(), Duration::from_millis(20))?;
        *self.poller.borrow_mut() = Some(p);
        Ok(())
    }

    fn tick(self: &Rc<Self>) -> PollStatus {
        let phase = *self.phase.borrow();
        match phase {
            Phase::WaitBdevs => self.try_start(),
            Phase::Running => self.progress(),
            Phase::Done => PollStatus::Idle,
        }
    }

    /// Starts the jobs once every bdev named in the config exists.
    fn try_start(self: &Rc<Self>) -> PollStatus {
        let ready = if self.expected.is_empty() {
            !bdev::bdevs().is_empty()
        } else {
            self.expected.iter().all(|n| bdev::get_by_name(n).is_some())
        };
        if !ready {
            if self.created.elapsed() > READY_TIMEOUT {
                eprintln!(
                    "bdevperf: bdevs {:?} did not appear within {} s",
                    self.expected,
                    READY_TIMEOUT.as_secs()
                );
                self.finish(1);
            }
            return PollStatus::Idle;
        }
        let bdevs = bdev::bdevs();
        let Some(reactors) = env::reactors() else {
            eprintln!("bdevperf: not on a reactor");
            self.finish(1);
            return PollStatus::Idle;
        };
        let cores = reactors.cores();
        let specs = match job::plan(&bdevs, &cores, &self.opts) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("bdevperf: {e}");
                self.finish(1);
                return PollStatus::Idle;
            }
        };
        let shared = Shared::new(specs.len());
        println!("Running I/O for {} seconds...", self.opts.time.as_secs());
        for spec in specs {
            let core = spec.core;
            let name = format!("bdevperf_{}_{}", spec.bdev, core);
            let sh = shared.clone();
            let o = self.opts.clone();
            let idx = spec.index;
            if let Err(e) = reactors.spawn_thread(core, &name, move || job::run(spec, o, sh)) {
                eprintln!("bdevperf: cannot start job {name}: {e}");
                shared.push(JobResult::failed_to_start(idx, &name, core, &e.to_string()));
            }
        }
        *self.shared.borrow_mut() = Some(shared);
        let now = Instant::now();
        *self.started.borrow_mut() = Some(now);
        *self.last_print.borrow_mut() = (now, 0, 0);
        *self.phase.borrow_mut() = Phase::Running;
        PollStatus::Busy
    }

    /// A progress line each second; the report when every job has ended.
    fn progress(self: &Rc<Self>) -> PollStatus {
        let Some(shared) = self.shared.borrow().clone() else {
            return PollStatus::Idle;
        };
        if shared.all_done() {
            let results = shared.take_results();
            let elapsed = self
                .started
                .borrow()
                .map(|s| s.elapsed())
                .unwrap_or_default();
            let bad = report::print(&results, &self.opts, elapsed);
            self.finish(i32::from(bad));
            return PollStatus::Busy;
        }
        let (last, last_ios, last_bytes) = *self.last_print.borrow();
        if last.elapsed() >= Duration::from_secs(1) {
            let (ios, bytes) = shared.totals();
            let secs = last.elapsed().as_secs_f64();
            let iops = (ios - last_ios) as f64 / secs;
            let mibs = (bytes - last_bytes) as f64 / secs / (1024.0 * 1024.0);
            println!("{iops:>10.2} IOPS, {mibs:>8.2} MiB/s");
            *self.last_print.borrow_mut() = (Instant::now(), ios, bytes);
        }
        PollStatus::Idle
    }

    fn finish(self: &Rc<Self>, code: i32) {
        *self.phase.borrow_mut() = Phase::Done;
        TOOL_EXIT.store(code, Ordering::SeqCst);
        let fw = self.fw.borrow().clone();
        match fw {
            Some(fw) => fw.shutdown_with_code(code),
            None => match env::reactors() {
                Some(r) => r.stop(),
                None => std::process::exit(code),
            },
        }
    }
}

impl Workload {
    /// SPDK's name of the workload.
    fn name(self) -> &'static str {
        match self {
            Workload::Read => "read",
            Workload::Write => "write",
            Workload::RandRead => "randread",
            Workload::RandWrite => "randwrite",
            Workload::Rw => "rw",
            Workload::RandRw => "randrw",
            Workload::Verify => "verify",
            Workload::Unmap => "unmap",
            Workload::Flush => "flush",
            Workload::Reset => "reset",
        }
    }
}

impl JobSpec {
    /// The job's name in the report.
    fn label(&self) -> String {
        format!("{} (Core Mask 0x{:x})", self.bdev, 1u64 << self.core)
    }
}
