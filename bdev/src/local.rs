//! Callbacks that must run on the Thread that created them (they may hold `!Send` state such as
//! an RPC request), fired from any thread by message.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::BdevError;

type Stored = Box<dyn FnOnce(Box<dyn Any>)>;

thread_local! {
    static PENDING: RefCell<HashMap<u64, Stored>> = RefCell::new(HashMap::new());
}

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A `Send` token for a closure parked on the creating Thread's OS thread.
pub(crate) struct LocalCallback<T> {
    id: Option<u64>,
    thread: env::ThreadHandle,
    _t: PhantomData<fn(T)>,
}

impl<T: Send + 'static> LocalCallback<T> {
    /// Parks `f` on the current Thread. Errors off a Thread.
    pub(crate) fn new(f: impl FnOnce(T) + 'static) -> Result<LocalCallback<T>, BdevError> {
        let thread = env::Thread::current().ok_or(BdevError::NoThread)?.handle();
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let stored: Stored = Box::new(move |v: Box<dyn Any>| {
            if let Ok(v) = v.downcast::<T>() {
                f(*v);
            }
        });
        PENDING.with(|p| p.borrow_mut().insert(id, stored));
        Ok(LocalCallback {
            id: Some(id),
            thread,
            _t: PhantomData,
        })
    }

    /// Runs the closure with `v` by message on its Thread (never inline).
    pub(crate) fn call(mut self, v: T) {
        if let Some(id) = self.id.take() {
            let r = self.thread.send_msg(move || {
                if let Some(f) = PENDING.with(|p| p.borrow_mut().remove(&id)) {
                    f(Box::new(v));
                }
            });
            if let Err(e) = r {
                tracing::error!(error = %e, thread = %self.thread.name(), "cannot deliver bdev callback");
            }
        }
    }
}

impl<T> Drop for LocalCallback<T> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = self.thread.send_msg(move || {
                PENDING.with(|p| p.borrow_mut().remove(&id));
            });
        }
    }
}
