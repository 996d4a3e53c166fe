//! Descriptors, events and claims (SPDK `spdk_bdev_open_ext`, `spdk_bdev_desc`,
//! `spdk_bdev_module_claim_bdev[_desc]`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::bdev::BdevShared;
use crate::channel::BdevChannel;
use crate::registry::{lock, lookup, maybe_destruct};
use crate::{Bdev, BdevError};

/// Events sent to a descriptor's `event_cb` (SPDK `enum spdk_bdev_event_type`), delivered by
/// message on the Thread that opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BdevEvent {
    /// The bdev is being unregistered: finish or fail outstanding I/O, put channels, close.
    Remove,
    /// The block count changed.
    Resize,
    /// Media management events are pending.
    MediaManagement,
}

/// Claim types (SPDK `enum spdk_bdev_claim_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimType {
    /// One writer, the claimant; other writable opens are refused.
    ExclusiveWrite,
    /// Many readers, one writer (the claimant's writable descriptor).
    ReadManyWriteOne,
    /// Many readers, no writer; several read-only claimants may share it.
    ReadManyWriteNone,
    /// Many readers and writers sharing a key (use [`Desc::claim_shared`]).
    ReadManyWriteShared,
}

impl ClaimType {
    /// SPDK's name in `bdev_get_bdevs`.
    pub fn name(self) -> &'static str {
        match self {
            ClaimType::ExclusiveWrite => "exclusive_write",
            ClaimType::ReadManyWriteOne => "read_many_write_one",
            ClaimType::ReadManyWriteNone => "read_many_write_none",
            ClaimType::ReadManyWriteShared => "read_many_write_shared",
        }
    }
}

pub(crate) enum ClaimState {
    None,
    /// `bdev_module_claim_bdev`: held by a module until `release_bdev`.
    V1 {
        module: String,
    },
    /// Descriptor claims, released when their descriptors close.
    V2 {
        ty: ClaimType,
        key: u64,
        holders: Vec<(u64, String)>,
    },
}

impl ClaimState {
    pub(crate) fn type_name(&self) -> Option<&'static str> {
        match self {
            ClaimState::None => None,
            ClaimState::V1 { .. } => Some(ClaimType::ExclusiveWrite.name()),
            ClaimState::V2 { ty, .. } => Some(ty.name()),
        }
    }

    fn blocks_writers(&self) -> bool {
        match self {
            ClaimState::None => false,
            ClaimState::V1 { .. } => true,
            ClaimState::V2 { ty, .. } => *ty != ClaimType::ReadManyWriteShared,
        }
    }
}

pub(crate) type EventCb = Arc<dyn Fn(BdevEvent) + Send + Sync>;

pub(crate) struct DescShared {
    pub(crate) id: u64,
    pub(crate) write: AtomicBool,
    pub(crate) closed: AtomicBool,
}

pub(crate) struct DescEntry {
    pub(crate) shared: Arc<DescShared>,
    pub(crate) event_cb: EventCb,
    pub(crate) thread: Option<env::ThreadHandle>,
}

pub(crate) fn deliver_event(cb: EventCb, thread: Option<env::ThreadHandle>, ev: BdevEvent) {
    match thread {
        Some(h) => {
            let cb2 = Arc::clone(&cb);
            if let Err(e) = h.send_msg(move || cb2(ev)) {
                tracing::warn!(error = %e, event = ?ev, "bdev event delivered inline: thread unreachable");
                cb(ev);
            }
        }
        None => cb(ev),
    }
}

static NEXT_DESC: AtomicU64 = AtomicU64::new(1);

/// An open descriptor (SPDK `spdk_bdev_desc`). Closing it ([`Desc::close`] or drop) releases
/// its claims; when the bdev is being removed, the last close destructs it.
pub struct Desc {
    pub(crate) bdev: Arc<BdevShared>,
    pub(crate) shared: Arc<DescShared>,
}

impl std::fmt::Debug for Desc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desc")
            .field("bdev", &self.bdev.props.name)
            .field("write", &self.is_writable())
            .finish()
    }
}

/// Opens a bdev by name, alias or UUID (SPDK `spdk_bdev_open_ext`). `event_cb` receives
/// [`BdevEvent`]s on the calling Thread (inline when called off a Thread).
///
/// Errors: unknown name [`BdevError::NotFound`] (ENODEV); bdev being removed
/// [`BdevError::Removing`] (ENODEV); `write` on a bdev claimed against writers
/// [`BdevError::ClaimConflict`] (EPERM).
pub fn open_ext(
    name: &str,
    write: bool,
    event_cb: impl Fn(BdevEvent) + Send + Sync + 'static,
) -> Result<Desc, BdevError> {
    let b = lookup(name).ok_or_else(|| BdevError::NotFound(name.to_owned()))?;
    let shared = Arc::new(DescShared {
        id: NEXT_DESC.fetch_add(1, Ordering::Relaxed),
        write: AtomicBool::new(write),
        closed: AtomicBool::new(false),
    });
    {
        let mut st = lock(&b.state);
        if st.removing {
            return Err(BdevError::Removing(b.props.name.clone()));
        }
        if write && st.claim.blocks_writers() {
            tracing::error!(bdev = %b.props.name, "cannot open for writing: bdev is claimed");
            return Err(BdevError::ClaimConflict {
                bdev: b.props.name.clone(),
                reason: "already claimed; writable open refused".into(),
            });
        }
        st.descs.push(DescEntry {
            shared: Arc::clone(&shared),
            event_cb: Arc::new(event_cb),
            thread: env::Thread::current().map(|t| t.handle()),
        });
    }
    Ok(Desc { bdev: b, shared })
}

impl Desc {
    /// The bdev.
    pub fn bdev(&self) -> Bdev {
        Bdev(Arc::clone(&self.bdev))
    }

    /// True if opened (or promoted by a claim) for writing.
    pub fn is_writable(&self) -> bool {
        self.shared.write.load(Ordering::Acquire)
    }

    /// This Thread's I/O channel for the bdev (SPDK `spdk_bdev_get_io_channel`); the same
    /// underlying channel for every descriptor of the bdev on this Thread.
    pub fn get_io_channel(&self) -> Result<BdevChannel, BdevError> {
        BdevChannel::get(self)
    }

    /// Closes the descriptor (same as dropping it).
    pub fn close(self) {}

    /// Claims the bdev for `module` through this descriptor (SPDK
    /// `spdk_bdev_module_claim_bdev_desc`); released when the descriptor closes.
    /// `ReadManyWriteShared` needs a key: use [`Desc::claim_shared`].
    ///
    /// Errors as SPDK: a conflicting claim or writer [`BdevError::ClaimConflict`] (EPERM); a
    /// descriptor of the wrong mode (read-only for `ReadManyWriteOne`, writable for
    /// `ReadManyWriteNone`) or a missing key [`BdevError::InvalidArgument`] (EINVAL).
    pub fn claim(&self, ty: ClaimType, module: &str) -> Result<(), BdevError> {
        self.claim_with_key(ty, 0, module)
    }

    /// Claims `ReadManyWriteShared` with a non-zero `key`; claimants with the same key share.
    pub fn claim_shared(&self, key: u64, module: &str) -> Result<(), BdevError> {
        self.claim_with_key(ClaimType::ReadManyWriteShared, key, module)
    }

    fn claim_with_key(&self, ty: ClaimType, key: u64, module: &str) -> Result<(), BdevError> {
        let name = &self.bdev.props.name;
        let conflict = |reason: &str| {
            tracing::error!(bdev = %name, module, reason, "claim refused");
            BdevError::ClaimConflict {
                bdev: name.clone(),
                reason: reason.to_owned(),
            }
        };
        let invalid = |reason: &str| BdevError::InvalidArgument(format!("bdev {name}: {reason}"));
        let my_id = self.shared.id;
        let mut st = lock(&self.bdev.state);
        if let ClaimState::V2 { holders, .. } = &st.claim
            && holders.iter().any(|(d, _)| *d == my_id)
        {
            return Err(conflict("descriptor already holds a claim"));
        }
        if (ty == ClaimType::ReadManyWriteShared) != (key != 0) {
            return Err(invalid(
                "a shared key is required for read_many_write_shared and only for it",
            ));
        }
        let write = self.is_writable();
        let other_writer = st
            .descs
            .iter()
            .any(|d| d.shared.id != my_id && d.shared.write.load(Ordering::Acquire));
        match ty {
            ClaimType::ExclusiveWrite => {
                if !matches!(st.claim, ClaimState::None) {
                    return Err(conflict("already claimed"));
                }
                // As SPDK: an exclusive-write claim promotes a read-only descriptor to writer.
                self.shared.write.store(true, Ordering::Release);
            }
            ClaimType::ReadManyWriteOne => {
                if !write {
                    return Err(invalid("read_many_write_one needs a writable descriptor"));
                }
                if !matches!(st.claim, ClaimState::None) {
                    return Err(conflict("already claimed"));
                }
                if other_writer {
                    return Err(conflict("another descriptor is open for writing"));
                }
            }
            ClaimType::ReadManyWriteNone => {
                if write {
                    return Err(invalid("read_many_write_none needs a read-only descriptor"));
                }
                match &st.claim {
                    ClaimState::None => {}
                    ClaimState::V2 {
                        ty: ClaimType::ReadManyWriteNone,
                        ..
                    } => {}
                    _ => return Err(conflict("already claimed")),
                }
                if other_writer {
                    return Err(conflict("a descriptor is open for writing"));
                }
            }
            ClaimType::ReadManyWriteShared => match &st.claim {
                ClaimState::None => {}
                ClaimState::V2 {
                    ty: ClaimType::ReadManyWriteShared,
                    key: k,
                    ..
                } if *k == key => {}
                _ => return Err(conflict("already claimed with another type or key")),
            },
        }
        match &mut st.claim {
            ClaimState::V2 { holders, .. } => holders.push((my_id, module.to_owned())),
            c => {
                *c = ClaimState::V2 {
                    ty,
                    key,
                    holders: vec![(my_id, module.to_owned())],
                }
            }
        }
        tracing::debug!(bdev = %name, module, claim = ty.name(), "bdev claimed");
        Ok(())
    }
}

impl Drop for Desc {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        let my_id = self.shared.id;
        {
            let mut st = lock(&self.bdev.state);
            st.descs.retain(|d| d.shared.id != my_id);
            let empty = if let ClaimState::V2 { holders, .. } = &mut st.claim {
                holders.retain(|(d, _)| *d != my_id);
                holders.is_empty()
            } else {
                false
            };
            if empty {
                st.claim = ClaimState::None;
            }
        }
        maybe_destruct(&self.bdev);
    }
}

/// SPDK's v1 `spdk_bdev_module_claim_bdev`: claims `bdev` for `module` until
/// [`release_bdev`]; a given read-only `desc` is promoted to writer. Fails with
/// [`BdevError::ClaimConflict`] (EPERM) if any claim exists.
pub fn claim_bdev(bdev: &Bdev, desc: Option<&Desc>, module: &str) -> Result<(), BdevError> {
    let mut st = lock(&bdev.0.state);
    if !matches!(st.claim, ClaimState::None) {
        tracing::error!(bdev = %bdev.name(), module, "bdev already claimed");
        return Err(BdevError::ClaimConflict {
            bdev: bdev.name().to_owned(),
            reason: "already claimed".into(),
        });
    }
    if let Some(d) = desc {
        d.shared.write.store(true, Ordering::Release);
    }
    st.claim = ClaimState::V1 {
        module: module.to_owned(),
    };
    Ok(())
}

/// Releases a v1 claim (SPDK `spdk_bdev_module_release_bdev`). Errors with
/// [`BdevError::InvalidArgument`] if the bdev holds no v1 claim.
pub fn release_bdev(bdev: &Bdev) -> Result<(), BdevError> {
    let mut st = lock(&bdev.0.state);
    match &st.claim {
        ClaimState::V1 { module } => {
            tracing::debug!(bdev = %bdev.name(), module = %module, "v1 claim released");
            st.claim = ClaimState::None;
            Ok(())
        }
        _ => Err(BdevError::InvalidArgument(format!(
            "bdev {} holds no module claim",
            bdev.name()
        ))),
    }
}
