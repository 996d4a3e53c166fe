//! Reactors (SPDK `lib/event/reactor.c`): one OS thread per core, pinned, polling its Threads.
//!
//! [`Reactors::start`] starts one reactor per core of the mask, creates `app_thread` on the
//! first core and runs `app_init` there as its first message. Code running on a reactor reaches
//! the [`Reactors`] handle with [`reactors`] (e.g. to [`Reactors::spawn_thread`] from
//! `app_init`).
//!
//! Busy polling is the default (as SPDK: the loop spins). In interrupt mode a reactor whose
//! Threads all reported `Idle`, with no queued message and no due periodic poller, sleeps in
//! `epoll_wait` on: its eventfd (signalled by `send_msg` while it sleeps), a timerfd armed for the
//! next periodic poller, and each Thread's fd-interrupt epoll set.

use crate::EnvError;
use crate::cpumask::CpuMask;
use crate::thread::{PollStatus, Thread, ThreadHandle, ThreadShared};
use crate::time::{TICK_RATE, Ticks, monotonic};
use crate::wake::Waker;
use serde::Serialize;
use std::cell::RefCell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

/// Name of the Thread created on the first core (as SPDK).
pub const APP_THREAD_NAME: &str = "app_thread";

/// Reactor options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactorOpts {
    /// Cores to run reactors on (SPDK `-m`).
    pub cpumask: CpuMask,
    /// Sleep in epoll when idle instead of spinning (SPDK `--interrupt-mode`).
    pub interrupt_mode: bool,
}

impl Default for ReactorOpts {
    /// The first available core, busy polling.
    fn default() -> Self {
        let first = CpuMask::all_available().first().unwrap_or(0);
        ReactorOpts {
            cpumask: CpuMask::single(first).unwrap_or_default(),
            interrupt_mode: false,
        }
    }
}

/// One lightweight thread in [`ReactorStats`] (SPDK `framework_get_reactors` `lw_threads`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LwThreadInfo {
    /// Thread name.
    pub name: String,
    /// Thread id.
    pub id: u64,
    /// Core mask of the Thread, SPDK form (`"1"`).
    pub cpumask: String,
    /// Ticks since the Thread was placed on this reactor.
    pub elapsed: u64,
}

/// One reactor's counters (SPDK `framework_get_reactors` entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReactorStats {
    /// The core.
    pub lcore: u32,
    /// OS thread id of the reactor.
    pub tid: i32,
    /// Ticks spent in loop iterations that did work.
    pub busy: u64,
    /// Ticks spent idle (including sleeping).
    pub idle: u64,
    /// True if the reactor runs in interrupt mode.
    pub irq_mode: bool,
    /// True while the reactor sleeps in epoll.
    pub in_interrupt: bool,
    /// Its Threads.
    pub lw_threads: Vec<LwThreadInfo>,
}

/// One Thread in SPDK's `thread_get_stats` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ThreadStatsEntry {
    /// Thread name.
    pub name: String,
    /// Thread id.
    pub id: u64,
    /// Core mask, SPDK form (`"1"`).
    pub cpumask: String,
    /// Busy/idle ticks and poller counts.
    #[serde(flatten)]
    pub stats: crate::thread::ThreadStats,
}

struct ReactorShared {
    core: u32,
    waker: Arc<Waker>,
    /// Threads to adopt; `None` once the reactor stopped (then spawns are refused).
    incoming: Mutex<Option<Vec<Arc<ThreadShared>>>>,
    has_incoming: AtomicBool,
    busy: AtomicU64,
    idle: AtomicU64,
    in_interrupt: AtomicBool,
    tid: AtomicI32,
    threads: Mutex<Vec<(ThreadHandle, Ticks)>>,
}

struct ReactorsShared {
    reactors: Vec<ReactorShared>,
    interrupt_mode: bool,
    stop: AtomicBool,
    app_thread: ThreadHandle,
    joins: Mutex<Vec<(u32, JoinHandle<()>)>>,
}

/// `Send + Sync` handle to the running reactors; cheap to clone.
#[derive(Clone)]
pub struct Reactors {
    shared: Arc<ReactorsShared>,
}

thread_local! {
    static REACTORS: RefCell<Option<Reactors>> = const { RefCell::new(None) };
}

/// The reactors this OS thread belongs to, when called on a reactor (e.g. in `app_init`).
pub fn reactors() -> Option<Reactors> {
    REACTORS.with(|r| r.borrow().clone())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Reactors {
    /// Validates the mask, starts one pinned reactor per core, and runs `app_init` as the first
    /// message of `app_thread` on the first core. Returns when every reactor is pinned and
    /// running; fails (stopping the others) if one cannot start.
    pub fn start(
        opts: ReactorOpts,
        app_init: impl FnOnce() + Send + 'static,
    ) -> Result<Reactors, EnvError> {
        opts.cpumask.validate()?;
        let cores: Vec<u32> = opts.cpumask.cores().collect();
        let mut reactors = Vec::with_capacity(cores.len());
        for &core in &cores {
            reactors.push(ReactorShared {
                core,
                waker: Arc::new(Waker::new()?),
                incoming: Mutex::new(Some(Vec::new())),
                has_incoming: AtomicBool::new(false),
                busy: AtomicU64::new(0),
                idle: AtomicU64::new(0),
                in_interrupt: AtomicBool::new(false),
                tid: AtomicI32::new(0),
                threads: Mutex::new(Vec::new()),
            });
        }
        let app = ThreadShared::new(APP_THREAD_NAME, crate::thread::DEFAULT_RING_SIZE);
        let app_handle = ThreadHandle {
            shared: app.clone(),
        };
        app_handle.send_msg(app_init)?;
        let r = Reactors {
            shared: Arc::new(ReactorsShared {
                reactors,
                interrupt_mode: opts.interrupt_mode,
                stop: AtomicBool::new(false),
                app_thread: app_handle,
                joins: Mutex::new(Vec::new()),
            }),
        };
        r.enqueue(0, app)?;
        let (tx, rx) = mpsc::channel();
        for (idx, &core) in cores.iter().enumerate() {
            let me = r.clone();
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("reactor_{core}"))
                .spawn(move || reactor_main(me, idx, tx));
            match spawned {
                Ok(j) => lock(&r.shared.joins).push((core, j)),
                Err(e) => {
                    r.stop();
                    let _ = r.clone().wait();
                    return Err(EnvError::Os {
                        op: "spawn reactor thread",
                        source: e,
                    });
                }
            }
        }
        drop(tx);
        for _ in 0..cores.len() {
            let res = rx.recv().unwrap_or_else(|_| {
                Err(EnvError::ReactorFailed {
                    core: 0,
                    reason: "reactor thread died at startup".into(),
                })
            });
            if let Err(e) = res {
                r.stop();
                let _ = r.clone().wait();
                return Err(e);
            }
        }
        tracing::info!(cores = ?cores, interrupt_mode = opts.interrupt_mode, "reactors started");
        Ok(r)
    }

    fn enqueue(&self, idx: usize, t: Arc<ThreadShared>) -> Result<(), EnvError> {
        let re = &self.shared.reactors[idx];
        t.set_waker(re.waker.clone());
        lock(&re.incoming)
            .as_mut()
            .ok_or(EnvError::ReactorNotRunning)?
            .push(t);
        re.has_incoming.store(true, Ordering::SeqCst);
        re.waker.signal();
        Ok(())
    }

    /// Creates a Thread named `name` on the reactor of `core` and runs `init` as its first
    /// message. Errors: [`EnvError::NoSuchCore`], [`EnvError::ReactorNotRunning`].
    pub fn spawn_thread(
        &self,
        core: u32,
        name: &str,
        init: impl FnOnce() + Send + 'static,
    ) -> Result<ThreadHandle, EnvError> {
        if self.shared.stop.load(Ordering::Acquire) {
            return Err(EnvError::ReactorNotRunning);
        }
        let idx = self
            .shared
            .reactors
            .iter()
            .position(|r| r.core == core)
            .ok_or(EnvError::NoSuchCore(core))?;
        let t = ThreadShared::new(name, crate::thread::DEFAULT_RING_SIZE);
        let h = ThreadHandle { shared: t.clone() };
        h.send_msg(init)?;
        self.enqueue(idx, t)?;
        Ok(h)
    }

    /// The `app_thread` on the first core.
    pub fn app_thread(&self) -> ThreadHandle {
        self.shared.app_thread.clone()
    }

    /// The reactors' cores, ascending.
    pub fn cores(&self) -> Vec<u32> {
        self.shared.reactors.iter().map(|r| r.core).collect()
    }

    /// True if the reactors run in interrupt mode.
    pub fn interrupt_mode(&self) -> bool {
        self.shared.interrupt_mode
    }

    /// Asks every reactor to exit its Threads and return. Callable from any thread, including
    /// a message on a reactor; returns at once.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for r in &self.shared.reactors {
            r.waker.signal();
        }
    }

    /// True once [`Reactors::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    /// Joins the reactor OS threads (after [`Reactors::stop`]). Refused on a reactor thread
    /// (it would join itself).
    pub fn wait(self) -> Result<(), EnvError> {
        if reactors().is_some() {
            return Err(EnvError::InvalidArgument(
                "Reactors::wait called on a reactor thread".into(),
            ));
        }
        let joins = std::mem::take(&mut *lock(&self.shared.joins));
        let mut res = Ok(());
        for (core, j) in joins {
            if j.join().is_err() {
                tracing::error!(core, "reactor panicked");
                res = Err(EnvError::ReactorFailed {
                    core,
                    reason: "panicked".into(),
                });
            }
        }
        res
    }

    /// Counters of every reactor and its Threads (for `framework_get_reactors`).
    pub fn stats(&self) -> Vec<ReactorStats> {
        let now = monotonic();
        self.shared
            .reactors
            .iter()
            .map(|r| ReactorStats {
                lcore: r.core,
                tid: r.tid.load(Ordering::Relaxed),
                busy: r.busy.load(Ordering::Relaxed),
                idle: r.idle.load(Ordering::Relaxed),
                irq_mode: self.shared.interrupt_mode,
                in_interrupt: r.in_interrupt.load(Ordering::Relaxed),
                lw_threads: lock(&r.threads)
                    .iter()
                    .map(|(h, since)| LwThreadInfo {
                        name: h.name(),
                        id: h.id().0,
                        cpumask: CpuMask::single(r.core).unwrap_or_default().to_spdk_string(),
                        elapsed: now.as_nanos().saturating_sub(since.as_nanos()),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Every live Thread with the core it runs on (for `thread_get_stats`).
    pub fn threads(&self) -> Vec<(u32, ThreadHandle)> {
        self.shared
            .reactors
            .iter()
            .flat_map(|r| {
                lock(&r.threads)
                    .iter()
                    .map(|(h, _)| (r.core, h.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Every live Thread's counters, SPDK `thread_get_stats` entries.
    pub fn thread_stats(&self) -> Vec<ThreadStatsEntry> {
        self.threads()
            .into_iter()
            .map(|(core, h)| ThreadStatsEntry {
                name: h.name(),
                id: h.id().0,
                cpumask: CpuMask::single(core).unwrap_or_default().to_spdk_string(),
                stats: h.stats(),
            })
            .collect()
    }

    /// Ticks per second of the counters ([`TICK_RATE`]).
    pub fn tick_rate(&self) -> u64 {
        TICK_RATE
    }
}

impl std::fmt::Debug for Reactors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactors")
            .field("cores", &self.cores())
            .field("interrupt_mode", &self.shared.interrupt_mode)
            .finish()
    }
}

/// Pins the calling OS thread to `core` (`sched_setaffinity`), as reactors pin themselves; for
/// tools that run their own worker threads (nvme_perf). Fails for a core at or above
/// [`crate::cpumask::MAX_CORES`] or one the process may not use.
pub fn pin_current_thread(core: u32) -> Result<(), EnvError> {
    if core >= crate::cpumask::MAX_CORES {
        return Err(EnvError::Os {
            op: "sched_setaffinity",
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        });
    }
    pin_to(core)
}

fn pin_to(core: u32) -> Result<(), EnvError> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `core` < MAX_CORES (1024) fits the cpu_set_t bit size (1024).
    unsafe { libc::CPU_SET(core as usize, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(EnvError::last_os("sched_setaffinity"));
    }
    Ok(())
}

/// Epoll set and timerfd of an interrupt-mode reactor.
struct Sleeper {
    epfd: OwnedFd,
    tfd: OwnedFd,
}

const TOKEN_WAKER: u64 = 0;
const TOKEN_TIMER: u64 = 1;
const TOKEN_THREAD: u64 = 2;

impl Sleeper {
    fn new(waker_fd: RawFd) -> Result<Sleeper, EnvError> {
        // SAFETY: no memory arguments; result checked.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(EnvError::last_os("epoll_create1"));
        }
        // SAFETY: fresh descriptor nothing else owns.
        let epfd = unsafe { OwnedFd::from_raw_fd(epfd) };
        // SAFETY: no memory arguments; result checked.
        let tfd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if tfd < 0 {
            return Err(EnvError::last_os("timerfd_create"));
        }
        // SAFETY: fresh descriptor nothing else owns.
        let tfd = unsafe { OwnedFd::from_raw_fd(tfd) };
        let s = Sleeper { epfd, tfd };
        s.add(waker_fd, TOKEN_WAKER)?;
        s.add(s.tfd.as_raw_fd(), TOKEN_TIMER)?;
        Ok(s)
    }

    fn add(&self, fd: RawFd, token: u64) -> Result<(), EnvError> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is valid for the call; fds are open.
        let rc =
            unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            return Err(EnvError::last_os("epoll_ctl(ADD)"));
        }
        Ok(())
    }

    /// Arms the timer `ns` from now (0 disarms).
    fn arm(&self, ns: u64) {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: `spec` is valid for the call; old value pointer may be null.
        unsafe { libc::timerfd_settime(self.tfd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }

    fn wait(&self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
        // SAFETY: `events` is a writable array of 8 entries.
        unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), events.as_mut_ptr(), 8, -1) };
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into a live u64 from our non-blocking timerfd.
        unsafe { libc::read(self.tfd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

struct LocalThread {
    thread: Thread,
    irq_fd_added: bool,
}

fn reactor_main(r: Reactors, idx: usize, started: mpsc::Sender<Result<(), EnvError>>) {
    let me = &r.shared.reactors[idx];
    // SAFETY: gettid has no arguments and cannot fail.
    me.tid.store(unsafe { libc::gettid() }, Ordering::Relaxed);
    let sleeper = match pin_to(me.core).and_then(|()| {
        if r.shared.interrupt_mode {
            Sleeper::new(me.waker.fd()).map(Some)
        } else {
            Ok(None)
        }
    }) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(core = me.core, error = %e, "reactor failed to start");
            let _ = started.send(Err(e));
            return;
        }
    };
    let _ = started.send(Ok(()));
    drop(started);
    REACTORS.with(|c| *c.borrow_mut() = Some(r.clone()));
    tracing::debug!(core = me.core, "reactor running");
    let mut threads: Vec<LocalThread> = Vec::new();
    let mut last = monotonic();
    loop {
        if me.has_incoming.swap(false, Ordering::SeqCst) {
            let new = lock(&me.incoming)
                .as_mut()
                .map(std::mem::take)
                .unwrap_or_default();
            let mut list = lock(&me.threads);
            for sh in new {
                let t = Thread::from_shared(sh);
                list.push((t.handle(), monotonic()));
                threads.push(LocalThread {
                    thread: t,
                    irq_fd_added: false,
                });
            }
        }
        let now = monotonic();
        let mut busy = false;
        for lt in &threads {
            busy |= lt.thread.poll(now) == PollStatus::Busy;
        }
        if threads.iter().any(|lt| lt.thread.is_exited()) {
            threads.retain(|lt| !lt.thread.is_exited());
            lock(&me.threads).retain(|(h, _)| !h.is_exited());
        }
        let after = monotonic();
        let ctr = if busy { &me.busy } else { &me.idle };
        ctr.fetch_add(
            after.as_nanos().saturating_sub(last.as_nanos()),
            Ordering::Relaxed,
        );
        last = after;
        if r.shared.stop.load(Ordering::SeqCst) {
            break;
        }
        if let (Some(s), false) = (&sleeper, busy) {
            maybe_sleep(&r, me, s, &mut threads);
        }
    }
    // Close the door first: Threads spawned from here on are refused; those already queued
    // are adopted so that their handles report exited.
    let late = lock(&me.incoming).take().unwrap_or_default();
    threads.extend(late.into_iter().map(|sh| LocalThread {
        thread: Thread::from_shared(sh),
        irq_fd_added: false,
    }));
    for lt in &threads {
        lt.thread.exit();
    }
    lock(&me.threads).clear();
    drop(threads);
    REACTORS.with(|c| c.borrow_mut().take());
    tracing::debug!(core = me.core, "reactor stopped");
}

/// Sleeps in epoll unless work is pending; returns after a wakeup.
fn maybe_sleep(r: &Reactors, me: &ReactorShared, s: &Sleeper, threads: &mut [LocalThread]) {
    for lt in threads.iter_mut().filter(|lt| !lt.irq_fd_added) {
        if let Some(fd) = lt.thread.interrupt_fd() {
            match s.add(fd, TOKEN_THREAD) {
                Ok(()) => lt.irq_fd_added = true,
                Err(e) => tracing::error!(error = %e, "cannot watch thread interrupts"),
            }
        }
    }
    me.waker.set_sleeping(true);
    let pending = me.has_incoming.load(Ordering::SeqCst)
        || r.shared.stop.load(Ordering::SeqCst)
        || threads.iter().any(|lt| lt.thread.has_pending_work());
    let now = monotonic();
    let deadline = threads
        .iter()
        .filter_map(|lt| lt.thread.next_timer_deadline())
        .min();
    if pending || deadline.is_some_and(|d| d <= now) {
        me.waker.set_sleeping(false);
        return;
    }
    s.arm(deadline.map_or(0, |d| d.as_nanos() - now.as_nanos()));
    me.in_interrupt.store(true, Ordering::Relaxed);
    s.wait();
    me.in_interrupt.store(false, Ordering::Relaxed);
    me.waker.set_sleeping(false);
    me.waker.drain();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thread::{poller_register, poller_register_periodic};
    use std::time::{Duration, Instant};

    fn two_cores() -> CpuMask {
        CpuMask::all_available().cores().take(2).collect()
    }

    fn wait_for(rx: &mpsc::Receiver<(String, u32)>, n: usize) -> Vec<(String, u32)> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < n && Instant::now() < deadline {
            if let Ok(v) = rx.recv_timeout(Duration::from_millis(100)) {
                got.push(v);
            }
        }
        got
    }

    fn on_core() -> u32 {
        // SAFETY: sched_getcpu has no arguments.
        unsafe { libc::sched_getcpu() as u32 }
    }

    #[test]
    fn reactors_run_messages_on_every_core_and_stop() {
        let mask = two_cores();
        let cores: Vec<u32> = mask.cores().collect();
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        let r = Reactors::start(
            ReactorOpts {
                cpumask: mask,
                interrupt_mode: false,
            },
            move || {
                let t = Thread::current().unwrap();
                tx2.send((t.name(), on_core())).unwrap();
            },
        )
        .unwrap();
        assert_eq!(r.cores(), cores);
        let got = wait_for(&rx, 1);
        assert_eq!(got, vec![(APP_THREAD_NAME.to_string(), cores[0])]);
        for &c in &cores {
            let tx = tx.clone();
            r.spawn_thread(c, &format!("worker{c}"), move || {
                tx.send((Thread::current().unwrap().name(), on_core()))
                    .unwrap();
            })
            .unwrap();
        }
        let mut got = wait_for(&rx, cores.len());
        got.sort();
        let want: Vec<_> = cores.iter().map(|c| (format!("worker{c}"), *c)).collect();
        assert_eq!(got, want);
        assert!(matches!(
            r.spawn_thread(999, "x", || {}),
            Err(EnvError::NoSuchCore(999))
        ));
        let st = r.stats();
        assert_eq!(st.len(), cores.len());
        assert_eq!(st[0].lw_threads[0].name, APP_THREAD_NAME);
        assert!(!st[0].irq_mode);
        let ts = r.thread_stats();
        let app_entry = ts.iter().find(|e| e.name == APP_THREAD_NAME).unwrap();
        assert_eq!(
            app_entry.cpumask,
            CpuMask::single(cores[0]).unwrap().to_spdk_string()
        );
        let json = serde_json::to_value(app_entry).unwrap();
        assert!(json.get("busy").is_some() && json.get("active_pollers_count").is_some());
        let app = r.app_thread();
        let r2 = r.clone();
        app.send_msg(move || {
            let me = reactors().unwrap();
            assert!(matches!(
                me.clone().wait(),
                Err(EnvError::InvalidArgument(_))
            ));
            me.stop();
        })
        .unwrap();
        r2.wait().unwrap();
        assert!(app.is_exited());
        assert!(matches!(
            r.spawn_thread(cores[0], "late", || {}),
            Err(EnvError::ReactorNotRunning)
        ));
    }

    #[test]
    fn reactors_refuse_an_empty_mask() {
        let r = Reactors::start(
            ReactorOpts {
                cpumask: CpuMask::new(),
                interrupt_mode: false,
            },
            || {},
        );
        assert!(matches!(r, Err(EnvError::EmptyCpuMask)));
    }

    fn thread_cpu_ticks(tid: i32) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let rest = &s[s.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        // fields after ')': state(0) ... utime is field 14 overall -> index 11 here, stime 12
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    #[test]
    fn interrupt_mode_reactor_wakes_on_its_timer() {
        let core = CpuMask::all_available().first().unwrap();
        let (tx_timer, rx) = mpsc::channel::<(String, u32)>();
        let r = Reactors::start(
            ReactorOpts {
                cpumask: CpuMask::single(core).unwrap(),
                interrupt_mode: true,
            },
            move || {
                // An always-on poller that reports idle must not keep the reactor awake.
                std::mem::forget(poller_register(|| PollStatus::Idle).unwrap());
                let mut n = 0;
                std::mem::forget(
                    poller_register_periodic(
                        move || {
                            n += 1;
                            if n <= 3 {
                                tx_timer.send(("timer".into(), n)).unwrap();
                            }
                            PollStatus::Busy
                        },
                        Duration::from_millis(50),
                    )
                    .unwrap(),
                );
            },
        )
        .unwrap();
        let start = Instant::now();
        let got = wait_for(&rx, 3);
        assert_eq!(
            got,
            vec![
                ("timer".into(), 1),
                ("timer".into(), 2),
                ("timer".into(), 3)
            ]
        );
        assert!(start.elapsed() >= Duration::from_millis(140));
        r.stop();
        r.clone().wait().unwrap();
    }

    #[test]
    fn idle_interrupt_mode_reactor_uses_almost_no_cpu_and_wakes_on_send_msg() {
        let core = CpuMask::all_available().first().unwrap();
        let r = Reactors::start(
            ReactorOpts {
                cpumask: CpuMask::single(core).unwrap(),
                interrupt_mode: true,
            },
            || std::mem::forget(poller_register(|| PollStatus::Idle).unwrap()),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let tid = r.stats()[0].tid;
        let before = thread_cpu_ticks(tid);
        std::thread::sleep(Duration::from_millis(1000));
        let used = thread_cpu_ticks(tid) - before;
        // clock ticks are 10 ms: at most 2 ticks in 1 s is <= 2 %.
        assert!(used <= 2, "idle reactor used {used} ticks in 1 s");
        assert!(r.stats()[0].in_interrupt);
        // Nothing but send_msg's eventfd signal can wake it now (no timer is armed).
        let (tx, rx) = mpsc::channel();
        r.app_thread()
            .send_msg(move || tx.send(("msg".to_string(), 0)).unwrap())
            .unwrap();
        assert_eq!(wait_for(&rx, 1), vec![("msg".to_string(), 0)]);
        r.stop();
        r.wait().unwrap();
    }

    #[test]
    fn interrupt_mode_reactor_wakes_for_a_thread_fd_interrupt() {
        let core = CpuMask::all_available().first().unwrap();
        let (fd_tx, fd_rx) = mpsc::channel::<i32>();
        let (tx, rx) = mpsc::channel::<(String, u32)>();
        let r = Reactors::start(
            ReactorOpts {
                cpumask: CpuMask::single(core).unwrap(),
                interrupt_mode: true,
            },
            move || {
                // SAFETY: eventfd has no memory arguments; checked below.
                let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
                assert!(efd >= 0);
                let irq = crate::thread::interrupt_register(efd, move || {
                    let mut v = 0u64;
                    // SAFETY: reads 8 bytes into a live u64 from our eventfd.
                    unsafe { libc::read(efd, (&mut v as *mut u64).cast(), 8) };
                    tx.send(("irq".into(), v as u32)).unwrap();
                    PollStatus::Busy
                })
                .unwrap();
                std::mem::forget(irq);
                fd_tx.send(efd).unwrap();
            },
        )
        .unwrap();
        let efd = fd_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(r.stats()[0].in_interrupt);
        let two: u64 = 2;
        // SAFETY: writes 8 bytes from a live u64 to the eventfd.
        unsafe { libc::write(efd, (&two as *const u64).cast(), 8) };
        assert_eq!(wait_for(&rx, 1), vec![("irq".to_string(), 2)]);
        r.stop();
        r.wait().unwrap();
        // SAFETY: the reactor and its Threads are gone; nothing else uses the fd.
        unsafe { libc::close(efd) };
    }
}
