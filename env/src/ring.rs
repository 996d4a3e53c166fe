//! A bounded lock-free multi-producer multi-consumer ring (Dmitry Vyukov's bounded queue).
//!
//! Used as each Thread's message ring (many producers, one consumer) and as the global free
//! lists of the iobuf pools (many producers, many consumers). Every slot carries a sequence
//! number: a producer may write slot `pos & mask` when its sequence equals `pos`, a consumer may
//! read it when its sequence equals `pos + 1`. Neither side ever blocks: a full ring refuses a
//! push, an empty ring refuses a pop.
//!
//! Model-checked with loom: `RUSTFLAGS="--cfg loom" cargo test -p rspdk-env --release --lib loom`.

use crate::sync::{AtomicUsize, Ordering, UnsafeCell, spin_yield};
use std::mem::MaybeUninit;

struct Slot<T> {
    seq: AtomicUsize,
    val: UnsafeCell<MaybeUninit<T>>,
}

/// A bounded MPMC ring of `T`; `push` and `pop` are lock-free and never block.
pub struct Ring<T> {
    slots: Box<[Slot<T>]>,
    mask: usize,
    enq: AtomicUsize,
    deq: AtomicUsize,
}

// SAFETY: a value is moved in by exactly one producer and out by exactly one consumer; the slot
// sequence numbers (acquire/release) hand ownership of the slot from one to the other, so the
// ring can be shared between threads whenever `T` itself can be sent between threads.
unsafe impl<T: Send> Sync for Ring<T> {}
// SAFETY: as above; the ring owns its values, which are `Send`.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T> Ring<T> {
    /// Creates a ring holding at least `capacity` items (rounded up to a power of two, minimum 2).
    pub fn new(capacity: usize) -> Ring<T> {
        let cap = capacity.max(2).next_power_of_two();
        let slots = (0..cap)
            .map(|i| Slot {
                seq: AtomicUsize::new(i),
                val: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Ring {
            slots,
            mask: cap - 1,
            enq: AtomicUsize::new(0),
            deq: AtomicUsize::new(0),
        }
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Appends `v`; gives it back if the ring is full. Never waits: with several consumers it
    /// can also fail while a consumer is between claiming and releasing the slot it needs (see
    /// [`Ring::push_spin`]); with one consumer a failure means the ring is full.
    pub fn push(&self, v: T) -> Result<(), T> {
        let mut pos = self.enq.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos & self.mask];
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos) as isize;
            if diff == 0 {
                match self.enq.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the CAS gave this producer exclusive ownership of the slot
                        // (its sequence equals `pos` and no other producer can claim `pos`);
                        // consumers do not read it until the release store below.
                        slot.val.with_mut(|p| unsafe { (*p).write(v) });
                        slot.seq.store(pos.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(cur) => pos = cur,
                }
            } else if diff < 0 {
                return Err(v);
            } else {
                pos = self.enq.load(Ordering::Relaxed);
            }
        }
    }

    /// Appends `v`, waiting out a consumer that has claimed the target slot but not yet
    /// released it (with several consumers, [`Ring::push`] can fail that way on a ring that is
    /// not full). Gives `v` back only if the ring is really full. Used to return buffers to a
    /// pool whose ring can hold all of them, so the wait is for another thread's few
    /// instructions.
    pub fn push_spin(&self, mut v: T) -> Result<(), T> {
        loop {
            match self.push(v) {
                Ok(()) => return Ok(()),
                Err(back) => {
                    // Read-modify-writes read the latest values. Reading enq before deq can
                    // only under-estimate the fill, so a ring that can hold every item it
                    // will ever get is never reported full here.
                    let enq = self.enq.fetch_add(0, Ordering::SeqCst);
                    let deq = self.deq.fetch_add(0, Ordering::SeqCst);
                    if enq.wrapping_sub(deq) as isize >= self.capacity() as isize {
                        return Err(back);
                    }
                    v = back;
                    spin_yield();
                }
            }
        }
    }

    /// Removes the oldest item, if any.
    pub fn pop(&self) -> Option<T> {
        let mut pos = self.deq.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos & self.mask];
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos.wrapping_add(1)) as isize;
            if diff == 0 {
                match self.deq.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the CAS gave this consumer exclusive ownership of the slot,
                        // whose value the producer initialised before its release store of
                        // `pos + 1` (observed by the acquire load above).
                        let v = slot.val.with_mut(|p| unsafe { (*p).assume_init_read() });
                        slot.seq
                            .store(pos.wrapping_add(self.mask + 1), Ordering::Release);
                        return Some(v);
                    }
                    Err(cur) => pos = cur,
                }
            } else if diff < 0 {
                return None;
            } else {
                pos = self.deq.load(Ordering::Relaxed);
            }
        }
    }

    /// Approximate number of queued items (claimed slots count even if not yet published).
    pub fn len(&self) -> usize {
        let deq = self.deq.load(Ordering::SeqCst);
        let enq = self.enq.load(Ordering::SeqCst);
        enq.wrapping_sub(deq).min(self.capacity())
    }

    /// True when no slot is claimed or queued. A push in progress counts as not empty, so a
    /// consumer that checks this before sleeping never misses it.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

impl<T> std::fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn push_pop_is_fifo_and_full_ring_refuses() {
        let r = Ring::new(4);
        assert_eq!(r.capacity(), 4);
        for i in 0..4 {
            assert_eq!(r.push(i), Ok(()));
        }
        assert_eq!(r.push(99), Err(99));
        assert_eq!(r.len(), 4);
        assert_eq!(r.pop(), Some(0));
        assert_eq!(r.push(4), Ok(()));
        assert_eq!(
            (0..4).map(|_| r.pop().unwrap()).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(r.pop(), None);
        assert!(r.is_empty());
    }

    #[test]
    fn capacity_rounds_up_to_power_of_two() {
        assert_eq!(Ring::<u8>::new(0).capacity(), 2);
        assert_eq!(Ring::<u8>::new(5).capacity(), 8);
    }

    #[test]
    fn drop_releases_queued_items() {
        let item = Arc::new(());
        let r = Ring::new(8);
        r.push(item.clone()).unwrap();
        r.push(item.clone()).unwrap();
        assert_eq!(Arc::strong_count(&item), 3);
        drop(r);
        assert_eq!(Arc::strong_count(&item), 1);
    }

    #[test]
    fn four_producers_one_consumer_deliver_everything_in_per_producer_order() {
        const PER: usize = 20_000;
        let r = Arc::new(Ring::new(64));
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..PER {
                        let mut v = (p, i);
                        loop {
                            match r.push(v) {
                                Ok(()) => break,
                                Err(back) => {
                                    v = back;
                                    std::thread::yield_now();
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        let mut next = [0usize; 4];
        let mut got = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while got < 4 * PER && std::time::Instant::now() < deadline {
            if let Some((p, i)) = r.pop() {
                assert_eq!(next[p], i);
                next[p] += 1;
                got += 1;
            } else {
                std::thread::yield_now();
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(got, 4 * PER);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    #[test]
    fn loom_two_producers_one_consumer() {
        loom::model(|| {
            let r = Arc::new(Ring::new(2));
            let ths: Vec<_> = (0..2)
                .map(|p| {
                    let r = r.clone();
                    loom::thread::spawn(move || r.push(p).is_ok())
                })
                .collect();
            let mut got = Vec::new();
            if let Some(v) = r.pop() {
                got.push(v);
            }
            let pushed: usize = ths
                .into_iter()
                .map(|t| usize::from(t.join().unwrap()))
                .sum();
            while let Some(v) = r.pop() {
                got.push(v);
            }
            assert_eq!(pushed, 2);
            got.sort();
            assert_eq!(got, vec![0, 1]);
        });
    }

    #[test]
    fn loom_full_ring_refuses_then_accepts_after_pop() {
        loom::model(|| {
            let r = Arc::new(Ring::new(2));
            r.push(10).unwrap();
            r.push(11).unwrap();
            let r2 = r.clone();
            let t = loom::thread::spawn(move || r2.pop());
            let pushed = r.push(12);
            let popped = t.join().unwrap();
            assert_eq!(popped, Some(10));
            let mut rest = Vec::new();
            while let Some(v) = r.pop() {
                rest.push(v);
            }
            match pushed {
                Ok(()) => assert_eq!(rest, vec![11, 12]),
                Err(v) => {
                    assert_eq!(v, 12);
                    assert_eq!(rest, vec![11]);
                }
            }
        });
    }

    #[test]
    fn loom_two_consumers_never_duplicate() {
        loom::model(|| {
            let r = Arc::new(Ring::new(2));
            r.push(1).unwrap();
            r.push(2).unwrap();
            let r2 = r.clone();
            let t = loom::thread::spawn(move || r2.pop());
            let a = r.pop();
            let b = t.join().unwrap();
            let mut got: Vec<_> = [a, b].into_iter().flatten().collect();
            got.sort();
            assert_eq!(got, vec![1, 2]);
        });
    }

    #[test]
    fn loom_pool_take_and_return_keeps_every_index() {
        // The iobuf pool pattern: indices are taken and returned concurrently (MPMC).
        loom::model(|| {
            let r = Arc::new(Ring::new(2));
            r.push(0u32).unwrap();
            r.push(1u32).unwrap();
            let ths: Vec<_> = (0..2)
                .map(|_| {
                    let r = r.clone();
                    loom::thread::spawn(move || {
                        if let Some(i) = r.pop() {
                            r.push_spin(i).unwrap();
                        }
                    })
                })
                .collect();
            for t in ths {
                t.join().unwrap();
            }
            let mut left = Vec::new();
            while let Some(i) = r.pop() {
                left.push(i);
            }
            left.sort();
            assert_eq!(left, vec![0, 1]);
        });
    }
}
