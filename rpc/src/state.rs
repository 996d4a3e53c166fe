//! RPC states and state masks (SPDK `SPDK_RPC_STARTUP` / `SPDK_RPC_RUNTIME`).

use std::ops::{BitOr, BitOrAssign};

/// The set of states in which a method may be called (SPDK's `state_mask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateMask(u32);

impl StateMask {
    /// Before subsystems are initialised (`--wait-for-rpc`), SPDK_RPC_STARTUP.
    pub const STARTUP: StateMask = StateMask(0x1);
    /// After `framework_start_init`, SPDK_RPC_RUNTIME.
    pub const RUNTIME: StateMask = StateMask(0x2);
    /// Both states.
    pub const BOTH: StateMask = StateMask(0x1 | 0x2);

    /// The raw bits (SPDK's `uint32_t state_mask`).
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// A mask from raw bits.
    pub const fn from_bits(bits: u32) -> Self {
        StateMask(bits)
    }

    /// True when every bit of `other` is set in `self`.
    pub const fn contains(self, other: StateMask) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when a method with this mask may run in `state` (SPDK:
    /// `(m->state_mask & g_rpc_state) == g_rpc_state`).
    pub const fn allows(self, state: RpcState) -> bool {
        self.contains(state.mask())
    }
}

impl BitOr for StateMask {
    type Output = StateMask;
    fn bitor(self, rhs: StateMask) -> StateMask {
        StateMask(self.0 | rhs.0)
    }
}

impl BitOrAssign for StateMask {
    fn bitor_assign(&mut self, rhs: StateMask) {
        self.0 |= rhs.0;
    }
}

/// The current state of the RPC layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RpcState {
    /// Subsystems are not initialised yet; only STARTUP methods run.
    #[default]
    Startup,
    /// Subsystems are initialised; only RUNTIME methods run.
    Runtime,
}

impl RpcState {
    /// The single-bit mask of this state.
    pub const fn mask(self) -> StateMask {
        match self {
            RpcState::Startup => StateMask::STARTUP,
            RpcState::Runtime => StateMask::RUNTIME,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_allow_their_states_only() {
        assert!(StateMask::STARTUP.allows(RpcState::Startup));
        assert!(!StateMask::STARTUP.allows(RpcState::Runtime));
        assert!(!StateMask::RUNTIME.allows(RpcState::Startup));
        assert!(StateMask::RUNTIME.allows(RpcState::Runtime));
        let both = StateMask::STARTUP | StateMask::RUNTIME;
        assert_eq!(both, StateMask::BOTH);
        assert_eq!(both.bits(), 0x3);
        assert!(both.allows(RpcState::Startup) && both.allows(RpcState::Runtime));
    }
}
