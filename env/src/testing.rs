//! Many Threads on one OS thread with a manual clock (SPDK `test/common/lib/ut_multithread.c`),
//! for deterministic tests of code built on Threads, messages, pollers and channels.
//!
//! ```
//! use env::testing::TestThreads;
//! use std::time::Duration;
//! let tt = TestThreads::new(2);
//! let (tx, rx) = std::sync::mpsc::channel();
//! tt.thread(1).handle().send_msg(move || tx.send(env::Thread::current().unwrap().name()).unwrap()).unwrap();
//! tt.poll_threads();
//! assert_eq!(rx.try_recv().unwrap(), "ut_thread1");
//! tt.advance_time(Duration::from_millis(5));
//! assert_eq!(tt.now().as_nanos(), 5_000_000);
//! ```

use crate::thread::{PollStatus, Thread, set_current};
use crate::time::Ticks;
use std::cell::Cell;
use std::time::Duration;

/// Upper bound of rounds [`TestThreads::poll_threads`] runs before giving up.
pub const MAX_POLL_ROUNDS: usize = 100_000;

/// `n` Threads named `ut_thread0..` polled by hand on the calling OS thread, with a manual
/// clock starting at 0. Dropping it exits the Threads.
#[derive(Debug)]
pub struct TestThreads {
    threads: Vec<Thread>,
    now: Cell<Ticks>,
}

impl TestThreads {
    /// Creates `n` Threads; none is current.
    pub fn new(n: usize) -> TestThreads {
        let threads: Vec<Thread> = (0..n)
            .map(|i| Thread::new(&format!("ut_thread{i}")))
            .collect();
        for t in &threads {
            t.set_now(Ticks::ZERO);
        }
        TestThreads {
            threads,
            now: Cell::new(Ticks::ZERO),
        }
    }

    /// Thread `i`. Panics if `i` is out of range (test code).
    pub fn thread(&self, i: usize) -> &Thread {
        &self.threads[i]
    }

    /// Number of Threads.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// True if there are no Threads.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Makes Thread `i` current on this OS thread (outside polls), so test code can register
    /// pollers or get channels "on" it (SPDK `set_thread`).
    pub fn set_current(&self, i: usize) {
        set_current(Some(self.threads[i].clone()));
    }

    /// Leaves no Thread current.
    pub fn clear_current(&self) {
        set_current(None);
    }

    /// Polls Thread `i` once at the manual clock's time.
    pub fn poll_thread(&self, i: usize) -> PollStatus {
        self.threads[i].poll(self.now.get())
    }

    /// Polls every Thread in turn until a whole round finds all idle; true if that happened
    /// within [`MAX_POLL_ROUNDS`] rounds (false means some poller keeps reporting busy).
    pub fn poll_threads(&self) -> bool {
        for _ in 0..MAX_POLL_ROUNDS {
            let mut busy = false;
            for i in 0..self.threads.len() {
                busy |= self.poll_thread(i) == PollStatus::Busy;
            }
            if !busy {
                return true;
            }
        }
        false
    }

    /// Moves the manual clock forward (pollers run at the next poll).
    pub fn advance_time(&self, d: Duration) {
        let t = self.now.get() + d;
        self.now.set(t);
        for th in &self.threads {
            th.set_now(t);
        }
    }

    /// The manual clock.
    pub fn now(&self) -> Ticks {
        self.now.get()
    }
}

impl Drop for TestThreads {
    fn drop(&mut self) {
        let ours = Thread::current().is_some_and(|c| self.threads.iter().any(|t| t.id() == c.id()));
        if ours {
            set_current(None);
        }
        for t in &self.threads {
            t.exit();
        }
    }
}
