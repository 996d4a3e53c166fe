//! Transport-side request states (SPDK `enum spdk_nvmf_tcp_req_state`, the part before and
//! after the target core owns the command).

/// Where one command is in the TCP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpRequestState {
    /// Capsule received, data (if any) still to receive in-capsule
    /// (`TCP_REQUEST_STATE_AWAITING_CAPSULE_DATA`-like).
    ReceivingCapsuleData,
    /// Waiting for a data buffer from the iobuf pool before its R2T
    /// (`TCP_REQUEST_STATE_NEED_BUFFER`).
    AwaitingBuffer,
    /// An R2T was sent; H2CData PDUs are expected
    /// (`TCP_REQUEST_STATE_TRANSFERRING_HOST_TO_CONTROLLER`).
    TransferringHostToController,
    /// Handed to the target core (`TCP_REQUEST_STATE_EXECUTING`).
    Executing,
    /// Its response is being written (`TCP_REQUEST_STATE_TRANSFERRING_CONTROLLER_TO_HOST`).
    TransferringControllerToHost,
}
