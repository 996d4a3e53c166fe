//! I/O devices and their per-Thread channels (SPDK `spdk_io_device_register`,
//! `spdk_get_io_channel`, `spdk_for_each_channel`).
//!
//! Any `Arc<D: IoDevice>` is a device (no registration step). The first
//! [`get_io_channel`] on a Thread calls [`IoDevice::create_channel`] there; later calls on that
//! Thread return the same channel while a reference lives. The channel is dropped (SPDK's
//! destroy callback) on its Thread with its last reference. A channel keeps its device alive.

use super::{Thread, ThreadHandle, ThreadInner};
use crate::EnvError;
use std::any::Any;
use std::collections::HashMap;
use std::ops::Deref;
use std::rc::{Rc, Weak};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

/// A device with per-Thread channels.
pub trait IoDevice: Send + Sync + 'static {
    /// The per-Thread context.
    type Channel: 'static;
    /// Creates the channel; called on the Thread that will own it.
    fn create_channel(self: &Arc<Self>) -> Self::Channel;
}

struct ChannelBox<C> {
    value: C,
    _device: Arc<dyn Any + Send + Sync>,
    key: usize,
    thread: ThreadHandle,
    owner: Weak<ThreadInner>,
}

/// A Thread's channel to a device: `Rc`-shared, `!Send`, derefs to the channel context.
pub struct IoChannel<C: 'static> {
    inner: Rc<ChannelBox<C>>,
}

impl<C> Clone for IoChannel<C> {
    fn clone(&self) -> Self {
        IoChannel {
            inner: self.inner.clone(),
        }
    }
}

impl<C> Deref for IoChannel<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.inner.value
    }
}

impl<C> IoChannel<C> {
    /// The Thread owning the channel.
    pub fn thread(&self) -> &ThreadHandle {
        &self.inner.thread
    }

    /// Number of live references to this channel.
    pub fn ref_count(&self) -> usize {
        Rc::strong_count(&self.inner)
    }
}

impl<C> std::fmt::Debug for IoChannel<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoChannel")
            .field("device", &format_args!("{:#x}", self.inner.key))
            .field("thread", &self.inner.thread.id())
            .finish()
    }
}

/// Threads holding a channel of each device, by device address (config path only).
fn registry() -> MutexGuard<'static, HashMap<usize, Vec<ThreadHandle>>> {
    static REG: LazyLock<Mutex<HashMap<usize, Vec<ThreadHandle>>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    REG.lock().unwrap_or_else(|e| e.into_inner())
}

impl<C> Drop for ChannelBox<C> {
    fn drop(&mut self) {
        {
            let mut reg = registry();
            if let Some(v) = reg.get_mut(&self.key) {
                v.retain(|h| h.id() != self.thread.id());
                if v.is_empty() {
                    reg.remove(&self.key);
                }
            }
        }
        let Some(t) = self.owner.upgrade() else {
            return;
        };
        if let Ok(mut map) = t.channels.try_borrow_mut()
            && map.get(&self.key).is_some_and(|w| w.strong_count() == 0)
        {
            map.remove(&self.key);
        }
    }
}

fn device_key<D>(dev: &Arc<D>) -> usize {
    Arc::as_ptr(dev) as *const () as usize
}

fn lookup<C: 'static>(inner: &ThreadInner, key: usize) -> Option<IoChannel<C>> {
    let rc = inner.channels.borrow().get(&key)?.upgrade()?;
    rc.downcast::<ChannelBox<C>>()
        .ok()
        .map(|inner| IoChannel { inner })
}

/// The current Thread's channel to `dev`, created on first use (SPDK `spdk_get_io_channel`).
/// Errors off a Thread ([`EnvError::NoCurrentThread`]) or on an exited one.
pub fn get_io_channel<D: IoDevice>(dev: &Arc<D>) -> Result<IoChannel<D::Channel>, EnvError> {
    let t = Thread::current().ok_or(EnvError::NoCurrentThread)?;
    if t.is_exited() {
        return Err(EnvError::ThreadExited(t.name()));
    }
    let key = device_key(dev);
    if let Some(ch) = lookup::<D::Channel>(&t.inner, key) {
        return Ok(ch);
    }
    let value = dev.create_channel();
    let device: Arc<dyn Any + Send + Sync> = dev.clone();
    let b = Rc::new(ChannelBox {
        value,
        _device: device,
        key,
        thread: t.handle(),
        owner: Rc::downgrade(&t.inner),
    });
    let weak: Weak<dyn Any> = Rc::downgrade(&b) as Weak<dyn Any>;
    t.inner.channels.borrow_mut().insert(key, weak);
    registry().entry(key).or_default().push(t.handle());
    tracing::trace!(thread = %t.name(), device = key, "io channel created");
    Ok(IoChannel { inner: b })
}

type Done = Box<dyn FnOnce() + Send>;

struct ForEach<D: IoDevice, F> {
    dev: Arc<D>,
    f: F,
    targets: Vec<ThreadHandle>,
    origin: Option<ThreadHandle>,
    done: Mutex<Option<Done>>,
}

/// Runs `f` on every Thread that holds a channel of `dev` when called, one Thread after the
/// other, each by message (SPDK `spdk_for_each_channel`); then runs `done` by message on the
/// calling Thread. A Thread whose channel was released meanwhile is skipped. Called off a Thread
/// (a programming error, logged), `done` runs on the last Thread visited, or at once if none.
/// A Thread that cannot take the message (exited, ring full) is skipped with a warning.
pub fn for_each_channel<D: IoDevice>(
    dev: &Arc<D>,
    f: impl Fn(&IoChannel<D::Channel>) + Send + Sync + 'static,
    done: impl FnOnce() + Send + 'static,
) {
    let origin = Thread::current().map(|t| t.handle());
    if origin.is_none() {
        tracing::error!("for_each_channel called off a Thread");
    }
    let targets = registry()
        .get(&device_key(dev))
        .cloned()
        .unwrap_or_default();
    let ctx = Arc::new(ForEach {
        dev: dev.clone(),
        f,
        targets,
        origin,
        done: Mutex::new(Some(Box::new(done))),
    });
    step(ctx, 0);
}

fn step<D: IoDevice, F: Fn(&IoChannel<D::Channel>) + Send + Sync + 'static>(
    ctx: Arc<ForEach<D, F>>,
    mut idx: usize,
) {
    while let Some(target) = ctx.targets.get(idx) {
        let c = ctx.clone();
        match target.send_msg(move || {
            let ch =
                Thread::current().and_then(|t| lookup::<D::Channel>(&t.inner, device_key(&c.dev)));
            if let Some(ch) = ch {
                (c.f)(&ch);
            }
            step(c, idx + 1);
        }) {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(thread = %target.name(), error = %e, "for_each_channel skips thread");
                idx += 1;
            }
        }
    }
    finish(&ctx);
}

fn finish<D: IoDevice, F>(ctx: &ForEach<D, F>) {
    let Some(done) = ctx.done.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    match &ctx.origin {
        Some(o) => {
            let slot = Arc::new(Mutex::new(Some(done)));
            let s2 = slot.clone();
            let sent = o.send_msg(move || {
                if let Some(d) = s2.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    d();
                }
            });
            if let Err(e) = sent {
                tracing::error!(error = %e, "for_each_channel cannot reach its caller; running done here");
                if let Some(d) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    d();
                }
            }
        }
        None => done(),
    }
}
