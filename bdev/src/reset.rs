//! Bdev reset as SPDK v25.09 runs it (`bdev_start_reset`, `bdev_reset_freeze_channel`,
//! `bdev_reset_check_outstanding_io`, `bdev_unfreeze_channel`, `bdev_reset_complete`).
//!
//! ```text
//!  reset on channel C ─▶ another in progress? ── yes ─▶ queued; completes with its status
//!        │ no
//!        ▼
//!  freeze every channel (for_each_channel): new I/O there completes Aborted; I/O held back
//!  by the no-memory retry queue or QoS is aborted
//!        │
//!        ├─ reset_io_drain_timeout == 0 (default) ─────────────▶ module reset on C
//!        └─ else poll all channels' outstanding I/O every second:
//!              none left ─▶ complete Success (the module sees no reset)
//!              timeout   ─▶ module reset on C
//!        ▼
//!  module completes ─▶ unfreeze every channel ─▶ queued resets get the same status,
//!                                                then the reset itself completes
//! ```
//!
//! A channel created while a reset runs starts unfrozen and its I/O reaches the module (SPDK
//! v25.09 `bdev_channel_create` clears the channel flags whatever `reset_in_progress` is).
//! A reset that cannot be set up (submitted off a Thread) completes `Failed` from the
//! channel's poller without freezing anything or touching a reset in progress.
//!
//! One reset per bdev at a time; a reset holds its channel (the env channel reference) until it
//! completes, so the channel outlives a consumer that drops its handle meanwhile. I/O already at
//! the module when the reset starts is not aborted by the layer (the module's reset deals with
//! it, as in SPDK).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::channel::{ChanCore, ChannelInner};
use crate::io::{IoInner, IoStatus};
use crate::local::LocalCallback;
use crate::registry::lock;

/// How often a reset with a drain timeout rechecks outstanding I/O (SPDK
/// `BDEV_RESET_CHECK_OUTSTANDING_IO_PERIOD_IN_USEC`, one second).
pub const RESET_CHECK_OUTSTANDING_IO_PERIOD: Duration = Duration::from_secs(1);

/// Per-bdev reset bookkeeping (SPDK `reset_in_progress`, `queued_resets`).
#[derive(Default)]
pub(crate) struct ResetCtl {
    in_progress: bool,
    queued: Vec<LocalCallback<IoStatus>>,
}

/// The reset in progress on a channel, with the env channel reference it holds.
pub(crate) struct ActiveReset {
    inner: Option<IoInner>,
    _ch_ref: env::IoChannel<ChannelInner>,
    /// Rechecks outstanding I/O while a drain timeout runs.
    poller: Option<env::Poller>,
}

/// Starts a reset submitted on `core` (validated, not frozen-aborted). A reset that cannot be
/// set up (no Thread to run its callbacks on) completes `Failed` from the channel's poller and
/// changes nothing: no channel is frozen and a reset in progress is left alone.
pub(crate) fn start(core: &Rc<ChanCore>, inner: IoInner) {
    let ch_ref = match env::get_io_channel(core.bdev_arc()) {
        Ok(ch) if ch.is_core(core) => ch,
        _ => {
            tracing::error!(bdev = %core.bdev_name(), "reset submitted on a channel that is no longer registered");
            return core.push_completion(inner, IoStatus::Failed);
        }
    };
    let mut ctl = lock(&core.bdev_arc().reset);
    if ctl.in_progress {
        // The request waits in a slot the callback shares, so it is not lost if the callback
        // cannot be created.
        let slot = Rc::new(RefCell::new(Some(inner)));
        let (c, s2) = (Rc::clone(core), Rc::clone(&slot));
        let cb = LocalCallback::new(move |status: IoStatus| {
            let _keep = ch_ref;
            if let Some(i) = s2.borrow_mut().take() {
                c.finish(i, status);
            }
        });
        match cb {
            Ok(cb) => {
                tracing::debug!(bdev = %core.bdev_name(), "reset queued behind the one in progress");
                ctl.queued.push(cb);
            }
            Err(e) => {
                drop(ctl);
                tracing::error!(bdev = %core.bdev_name(), error = %e, "reset cannot wait for the one in progress; failing it");
                if let Some(i) = slot.borrow_mut().take() {
                    core.push_completion(i, IoStatus::Failed);
                }
            }
        }
        return;
    }
    let c = Rc::clone(core);
    let next = match LocalCallback::new(move |()| after_freeze(&c)) {
        Ok(n) => n,
        Err(e) => {
            drop(ctl);
            tracing::error!(bdev = %core.bdev_name(), error = %e, "reset cannot be started; failing it");
            return core.push_completion(inner, IoStatus::Failed);
        }
    };
    ctl.in_progress = true;
    drop(ctl);
    tracing::info!(bdev = %core.bdev_name(), "bdev reset started: freezing channels");
    *core.active_reset.borrow_mut() = Some(ActiveReset {
        inner: Some(inner),
        _ch_ref: ch_ref,
        poller: None,
    });
    env::for_each_channel(
        core.bdev_arc(),
        |ch| {
            if let Some(c) = ch.core() {
                c.freeze();
            }
        },
        move || next.call(()),
    );
}

fn after_freeze(core: &Rc<ChanCore>) {
    let secs = core.bdev_arc().props.reset_io_drain_timeout;
    if secs == 0 {
        return submit_to_module(core);
    }
    let stop = env::now() + Duration::from_secs(u64::from(secs));
    check_outstanding(core, stop);
}

fn check_outstanding(core: &Rc<ChanCore>, stop: env::Ticks) {
    let busy = Arc::new(AtomicBool::new(false));
    let b2 = Arc::clone(&busy);
    let c = Rc::clone(core);
    let next = LocalCallback::new(move |()| {
        if !busy.load(Ordering::Acquire) {
            tracing::debug!(bdev = %c.bdev_name(), "reset: no outstanding I/O, module reset skipped");
            return complete(&c, IoStatus::Success);
        }
        if env::now() >= stop {
            tracing::info!(bdev = %c.bdev_name(), "reset: I/O still outstanding after reset_io_drain_timeout; resetting the module");
            return submit_to_module(&c);
        }
        let c2 = Rc::clone(&c);
        let poller = env::poller_register_periodic(
            move || {
                if let Some(a) = c2.active_reset.borrow_mut().as_mut() {
                    a.poller = None;
                }
                check_outstanding(&c2, stop);
                env::PollStatus::Busy
            },
            RESET_CHECK_OUTSTANDING_IO_PERIOD,
        );
        match poller {
            Ok(p) => {
                if let Some(a) = c.active_reset.borrow_mut().as_mut() {
                    a.poller = Some(p);
                }
            }
            Err(_) => submit_to_module(&c),
        }
    });
    let Ok(next) = next else {
        return submit_to_module(core);
    };
    env::for_each_channel(
        core.bdev_arc(),
        move |ch| {
            if ch.core().is_some_and(|c| c.outstanding_count() > 0) {
                b2.store(true, Ordering::Release);
            }
        },
        move || next.call(()),
    );
}

fn submit_to_module(core: &Rc<ChanCore>) {
    let inner = core
        .active_reset
        .borrow_mut()
        .as_mut()
        .and_then(|a| a.inner.take());
    match inner {
        Some(i) => core.dispatch_reset(i),
        None => {
            tracing::error!(bdev = %core.bdev_name(), "reset state lost before module submission")
        }
    }
}

/// The module (or the drain check) finished the reset with `status`: unfreeze every channel,
/// then complete the queued resets and this one.
pub(crate) fn complete(core: &Rc<ChanCore>, status: IoStatus) {
    let c = Rc::clone(core);
    let next = LocalCallback::new(move |()| finish(&c, status));
    let next = match next {
        Ok(n) => n,
        Err(e) => {
            // Not reached from the layer's own callers (all run on the channel's Thread); if
            // it were, the channels are still unfrozen, then the reset completes.
            tracing::error!(bdev = %core.bdev_name(), error = %e, "reset completion off a Thread; not waiting for the unfreeze");
            env::for_each_channel(
                core.bdev_arc(),
                |ch| {
                    if let Some(c) = ch.core() {
                        c.unfreeze();
                    }
                },
                || {},
            );
            return finish(core, status);
        }
    };
    env::for_each_channel(
        core.bdev_arc(),
        |ch| {
            if let Some(c) = ch.core() {
                c.unfreeze();
            }
        },
        move || next.call(()),
    );
}

/// A reset the module completed: its request goes back to the active slot, then
/// [`complete`].
pub(crate) fn module_done(core: &Rc<ChanCore>, mut inner: IoInner, status: IoStatus) {
    inner.dispatched = false;
    if let Some(a) = core.active_reset.borrow_mut().as_mut() {
        a.inner = Some(inner);
    }
    tracing::info!(bdev = %core.bdev_name(), ?status, "module reset done: unfreezing channels");
    complete(core, status);
}

fn finish(core: &Rc<ChanCore>, status: IoStatus) {
    let queued = {
        let mut ctl = lock(&core.bdev_arc().reset);
        ctl.in_progress = false;
        std::mem::take(&mut ctl.queued)
    };
    for q in queued {
        q.call(status);
    }
    let active = core.active_reset.borrow_mut().take();
    if let Some(ActiveReset {
        inner: Some(inner),
        _ch_ref,
        ..
    }) = active
    {
        core.finish(inner, status);
        drop(_ch_ref);
    }
}
