use super::*;
use crate::testing::TestThreads;
use crate::time::Ticks;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;

#[test]
fn messages_run_in_order_on_the_target_thread() {
    let tt = TestThreads::new(2);
    let (tx, rx) = mpsc::channel();
    let h = tt.thread(1).handle();
    for i in 0..10 {
        let tx = tx.clone();
        h.send_msg(move || {
            tx.send((i, Thread::current().unwrap().id())).unwrap();
        })
        .unwrap();
    }
    assert_eq!(tt.poll_thread(0), PollStatus::Idle);
    assert!(rx.try_recv().is_err());
    assert_eq!(tt.poll_thread(1), PollStatus::Busy);
    let got: Vec<_> = rx.try_iter().collect();
    let want: Vec<_> = (0..10).map(|i| (i, tt.thread(1).id())).collect();
    assert_eq!(got, want);
    assert_eq!(tt.poll_thread(1), PollStatus::Idle);
}

#[test]
fn one_poll_runs_at_most_a_batch_of_messages() {
    let t = Thread::new("batch");
    let n = Arc::new(AtomicUsize::new(0));
    for _ in 0..MSG_BATCH_SIZE + 3 {
        let n = n.clone();
        t.handle()
            .send_msg(move || {
                n.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
    }
    t.poll(Ticks::ZERO);
    assert_eq!(n.load(Ordering::Relaxed), MSG_BATCH_SIZE);
    t.poll(Ticks::ZERO);
    assert_eq!(n.load(Ordering::Relaxed), MSG_BATCH_SIZE + 3);
}

#[test]
fn full_ring_returns_ring_full_and_never_blocks() {
    let t = Thread::with_ring_size("small", 4);
    let h = t.handle();
    for _ in 0..4 {
        h.send_msg(|| {}).unwrap();
    }
    assert!(matches!(h.send_msg(|| {}), Err(EnvError::RingFull(name)) if name == "small"));
    t.poll(Ticks::ZERO);
    assert!(h.send_msg(|| {}).is_ok());
}

#[test]
fn exited_thread_refuses_messages_and_runs_queued_ones_at_exit() {
    let t = Thread::new("ex");
    let h = t.handle();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    h.send_msg(move || {
        r.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    t.exit();
    assert_eq!(ran.load(Ordering::Relaxed), 1);
    assert!(t.is_exited());
    assert!(h.is_exited());
    assert!(matches!(h.send_msg(|| {}), Err(EnvError::ThreadExited(n)) if n == "ex"));
    assert_eq!(t.poll(Ticks::ZERO), PollStatus::Idle);
}

#[test]
fn current_thread_is_set_only_during_poll() {
    let t = Thread::new("cur");
    assert!(Thread::current().is_none());
    let seen = Rc::new(RefCell::new(None));
    let s = seen.clone();
    let _p = t.register_poller(move || {
        *s.borrow_mut() = Thread::current().map(|c| (c.name(), crate::time::now()));
        PollStatus::Idle
    });
    t.poll(Ticks(1234));
    assert_eq!(*seen.borrow(), Some(("cur".to_string(), Ticks(1234))));
    assert!(Thread::current().is_none());
}

#[test]
fn poller_register_off_a_thread_is_an_error() {
    assert!(matches!(
        poller_register(|| PollStatus::Idle),
        Err(EnvError::NoCurrentThread)
    ));
    assert!(matches!(
        interrupt_register(0, || PollStatus::Idle),
        Err(EnvError::NoCurrentThread)
    ));
}

#[test]
fn periodic_poller_fires_at_the_right_manual_clock_times() {
    let tt = TestThreads::new(1);
    tt.set_current(0);
    let fired = Rc::new(RefCell::new(Vec::new()));
    let f = fired.clone();
    let p = poller_register_periodic(
        move || {
            f.borrow_mut().push(crate::time::now().as_nanos());
            PollStatus::Busy
        },
        Duration::from_millis(10),
    )
    .unwrap();
    tt.clear_current();
    assert_eq!(tt.thread(0).next_timer_deadline(), Some(Ticks(10_000_000)));
    for _ in 0..35 {
        tt.advance_time(Duration::from_millis(1));
        tt.poll_threads();
    }
    assert_eq!(*fired.borrow(), vec![10_000_000, 20_000_000, 30_000_000]);
    assert_eq!(tt.thread(0).stats().timed_pollers_count, 1);
    p.unregister();
    assert_eq!(tt.thread(0).stats().timed_pollers_count, 0);
    tt.advance_time(Duration::from_millis(20));
    tt.poll_threads();
    assert_eq!(fired.borrow().len(), 3);
    assert_eq!(tt.thread(0).next_timer_deadline(), None);
}

#[test]
fn always_on_poller_runs_every_poll_until_dropped() {
    let t = Thread::new("p");
    let n = Rc::new(Cell::new(0));
    let n2 = n.clone();
    let p = t.register_poller(move || {
        n2.set(n2.get() + 1);
        PollStatus::Idle
    });
    assert!(t.has_work());
    assert_eq!(t.poll(Ticks(0)), PollStatus::Idle);
    t.poll(Ticks(1));
    assert_eq!(n.get(), 2);
    drop(p);
    t.poll(Ticks(2));
    assert_eq!(n.get(), 2);
    assert!(t.inner.pollers.borrow().is_empty());
    assert!(!t.has_work());
}

#[test]
fn poller_may_unregister_itself_and_register_another() {
    let t = Thread::new("self");
    let slot: Rc<RefCell<Option<Poller>>> = Rc::new(RefCell::new(None));
    let log = Rc::new(RefCell::new(Vec::new()));
    let (s, l) = (slot.clone(), log.clone());
    let p = t.register_poller(move || {
        l.borrow_mut().push("first");
        s.borrow_mut().take(); // drops our own Poller
        let l2 = l.clone();
        std::mem::forget(poller_register(move || {
            l2.borrow_mut().push("second");
            PollStatus::Idle
        }));
        PollStatus::Busy
    });
    *slot.borrow_mut() = Some(p);
    assert_eq!(t.poll(Ticks(0)), PollStatus::Busy);
    t.poll(Ticks(1));
    assert_eq!(*log.borrow(), vec!["first", "second", "second"]);
}

#[test]
fn busy_and_idle_ticks_follow_the_status_of_the_previous_poll() {
    let t = Thread::new("acct");
    t.poll(Ticks(0)); // idle
    t.handle().send_msg(|| {}).unwrap();
    t.poll(Ticks(100)); // +100 idle; busy
    t.poll(Ticks(150)); // +50 busy; idle
    let s = t.stats();
    assert_eq!((s.busy_ticks, s.idle_ticks), (50, 100));
}

struct Dev {
    created: AtomicUsize,
    destroyed: Arc<AtomicUsize>,
}

struct Chan {
    thread: ThreadId,
    destroyed: Arc<AtomicUsize>,
}

impl Drop for Chan {
    fn drop(&mut self) {
        assert_eq!(Thread::current().map(|t| t.id()), Some(self.thread));
        self.destroyed.fetch_add(1, Ordering::Relaxed);
    }
}

impl IoDevice for Dev {
    type Channel = Chan;
    fn create_channel(self: &Arc<Self>) -> Chan {
        self.created.fetch_add(1, Ordering::Relaxed);
        Chan {
            thread: Thread::current().unwrap().id(),
            destroyed: self.destroyed.clone(),
        }
    }
}

fn dev() -> Arc<Dev> {
    Arc::new(Dev {
        created: AtomicUsize::new(0),
        destroyed: Arc::new(AtomicUsize::new(0)),
    })
}

#[test]
fn channel_is_created_once_per_thread_and_destroyed_with_its_last_ref() {
    let tt = TestThreads::new(2);
    let d = dev();
    tt.set_current(0);
    let a = get_io_channel(&d).unwrap();
    let b = get_io_channel(&d).unwrap();
    assert_eq!(d.created.load(Ordering::Relaxed), 1);
    assert_eq!(a.ref_count(), 2);
    assert_eq!(a.thread, tt.thread(0).id());
    tt.set_current(1);
    let c = get_io_channel(&d).unwrap();
    assert_eq!(d.created.load(Ordering::Relaxed), 2);
    assert_eq!(c.thread, tt.thread(1).id());
    drop(c);
    assert_eq!(d.destroyed.load(Ordering::Relaxed), 1);
    tt.set_current(0);
    drop(a);
    assert_eq!(d.destroyed.load(Ordering::Relaxed), 1);
    drop(b);
    assert_eq!(d.destroyed.load(Ordering::Relaxed), 2);
    let again = get_io_channel(&d).unwrap();
    assert_eq!(d.created.load(Ordering::Relaxed), 3);
    drop(again);
    tt.clear_current();
    assert!(matches!(get_io_channel(&d), Err(EnvError::NoCurrentThread)));
}

#[test]
fn for_each_channel_visits_each_holding_thread_then_calls_done_on_caller() {
    let tt = TestThreads::new(3);
    let d = dev();
    let mut held = Vec::new();
    for i in [0, 2] {
        tt.set_current(i);
        held.push(get_io_channel(&d).unwrap());
    }
    let visits = Arc::new(std::sync::Mutex::new(Vec::new()));
    let v = visits.clone();
    let (tx, rx) = mpsc::channel();
    tt.set_current(1);
    for_each_channel(
        &d,
        move |ch| {
            v.lock()
                .unwrap()
                .push((Thread::current().unwrap().id(), ch.thread))
        },
        move || tx.send(Thread::current().unwrap().id()).unwrap(),
    );
    tt.clear_current();
    assert!(rx.try_recv().is_err()); // asynchronous, never inline
    assert!(tt.poll_threads());
    let (t0, t2) = (tt.thread(0).id(), tt.thread(2).id());
    assert_eq!(*visits.lock().unwrap(), vec![(t0, t0), (t2, t2)]);
    assert_eq!(rx.try_recv().unwrap(), tt.thread(1).id());
    for (ch, i) in held.into_iter().zip([0, 2]) {
        tt.set_current(i);
        drop(ch);
    }
    tt.clear_current();
    assert_eq!(d.destroyed.load(Ordering::Relaxed), 2);
}

#[test]
fn for_each_channel_with_no_channels_still_calls_done() {
    let tt = TestThreads::new(1);
    let d = dev();
    let (tx, rx) = mpsc::channel();
    tt.set_current(0);
    for_each_channel(&d, |_| panic!("no channel"), move || tx.send(1).unwrap());
    tt.clear_current();
    assert!(rx.try_recv().is_err());
    tt.poll_threads();
    assert_eq!(rx.try_recv().unwrap(), 1);
}

#[test]
fn interrupt_handler_runs_when_fd_is_readable() {
    let t = Thread::new("irq");
    let w = crate::wake::Waker::new().unwrap();
    let fd = w.fd();
    let hits = Rc::new(Cell::new(0));
    let h = hits.clone();
    set_current(Some(t.clone()));
    let irq = interrupt_register(fd, move || {
        let mut v = 0u64;
        // SAFETY: test reads 8 bytes from an eventfd into a live u64.
        unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
        h.set(h.get() + 1);
        PollStatus::Busy
    })
    .unwrap();
    set_current(None);
    assert_eq!(t.poll(Ticks(0)), PollStatus::Idle);
    w.signal();
    assert_eq!(t.poll(Ticks(1)), PollStatus::Busy);
    assert_eq!(hits.get(), 1);
    assert_eq!(t.poll(Ticks(2)), PollStatus::Idle);
    drop(irq);
    w.signal();
    t.poll(Ticks(3));
    assert_eq!(hits.get(), 1);
}

#[test]
fn events_choose_readable_and_writable_wakeups() {
    use std::os::fd::AsRawFd;
    let t = Thread::new("wr");
    // An idle connected socket is writable and not readable.
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let hits = Rc::new(Cell::new(0));
    let h = hits.clone();
    set_current(Some(t.clone()));
    let irq = interrupt_register(a.as_raw_fd(), move || {
        h.set(h.get() + 1);
        PollStatus::Busy
    })
    .unwrap();
    set_current(None);
    assert_eq!(t.poll(Ticks(0)), PollStatus::Idle, "readable interest only");
    irq.set_events(true, true).unwrap();
    assert_eq!(t.poll(Ticks(1)), PollStatus::Busy);
    assert_eq!(hits.get(), 1);
    irq.set_events(true, false).unwrap();
    assert_eq!(t.poll(Ticks(2)), PollStatus::Idle);
    assert_eq!(hits.get(), 1);
    // Readable but not wanted: no wakeup.
    use std::io::Write;
    (&_b).write_all(b"x").unwrap();
    irq.set_events(false, false).unwrap();
    assert_eq!(t.poll(Ticks(3)), PollStatus::Idle);
    irq.set_events(true, false).unwrap();
    assert_eq!(t.poll(Ticks(4)), PollStatus::Busy);
    assert_eq!(hits.get(), 2);
}

#[test]
fn dropped_thread_refuses_messages() {
    let t = Thread::new("gone");
    let h = t.handle();
    drop(t);
    assert!(matches!(h.send_msg(|| {}), Err(EnvError::ThreadExited(_))));
}

#[test]
fn request_exit_exits_the_thread_on_its_next_poll() {
    let t = Thread::new("rq");
    let h = t.handle();
    h.request_exit().unwrap();
    assert!(!t.is_exited());
    t.poll(Ticks(0));
    assert!(t.is_exited());
}

#[test]
fn thread_stats_serialise_with_spdk_names() {
    let s = ThreadStats {
        busy_ticks: 1,
        idle_ticks: 2,
        active_pollers_count: 3,
        timed_pollers_count: 4,
        paused_pollers_count: 0,
    };
    assert_eq!(
        serde_json::to_string(&s).unwrap(),
        r#"{"busy":1,"idle":2,"active_pollers_count":3,"timed_pollers_count":4,"paused_pollers_count":0}"#
    );
}
