//! Transport-side request states (SPDK `enum spdk_nvmf_rdma_request_state`).
//!
//! ```text
//!  Free ─recv─▶ New ─┬─ no data / in-capsule ──────────────────────────▶ ReadyToExecute
//!                    └─ keyed SGL ─▶ NeedBuffer ─▶ HaveBuffer ─┬─ host→ctrl ─▶ DataTransferToControllerPending
//!                                                              │              ─▶ TransferringHostToController ─┐
//!                                                              └─ ctrl→host ──────────────────────────────────┤
//!  ReadyToExecute ◀───────────────────────────────────────────────────────────────────────────────────────────┘
//!  ReadyToExecute ─▶ Executing ─bdev done─▶ Executed ─┬─ data ─▶ DataTransferToHostPending ─▶ TransferringControllerToHost ─┐
//!                                                     └─ none ─▶ ReadyToCompletePending ─▶ ReadyToComplete ─▶ Completing ───┤
//!  Completed ◀─ SEND done ───────────────────────────────────────────────────────────────────────────────────────────────────┘
//!  Completed ─▶ Free
//! ```
//!
//! SPDK's `NEED_DATA_WR` state does not exist here: a transfer is always one work request
//! (one remote keyed SGL, up to [`crate::config::MAX_SGE`] local entries), accounted against
//! the send queue depth in the `*Pending` states.

/// Where one command is in the RDMA transport (SPDK `RDMA_REQUEST_STATE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RdmaRequestState {
    /// Not in use.
    Free,
    /// Capsule just received.
    New,
    /// Waiting for data buffer units from the poll group's pool.
    NeedBuffer,
    /// Buffer units assigned.
    HaveBuffer,
    /// Waiting for RDMA READ credit (read depth or send queue depth) to fetch host data.
    DataTransferToControllerPending,
    /// RDMA READ of the host's data posted.
    TransferringHostToController,
    /// Data (if any) in place; about to be handed to the target core.
    ReadyToExecute,
    /// Handed to the target core ([`nvmf::Qpair::handle_request`]).
    Executing,
    /// The target core answered.
    Executed,
    /// Waiting for send queue room to RDMA WRITE data and SEND the response.
    DataTransferToHostPending,
    /// Waiting for send queue room to SEND the response.
    ReadyToCompletePending,
    /// Response ready to be sent.
    ReadyToComplete,
    /// RDMA WRITE of the data and SEND of the response posted.
    TransferringControllerToHost,
    /// SEND of the response (no data) posted.
    Completing,
    /// SEND completed; the request is released.
    Completed,
}
