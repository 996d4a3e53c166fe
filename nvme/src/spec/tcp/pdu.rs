//! NVMe/TCP PDU headers (NVMe/TCP 1.0, 3.6 "PDU Definitions").

/// Fatal Error Status of a H2CTermReq/C2HTermReq (NVMe/TCP 1.0, Figures 21 and 22).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Fes(pub u16);

impl Fes {
    /// Invalid PDU Header Field; FEI holds the byte offset of the field.
    pub const INVALID_HEADER_FIELD: Fes = Fes(0x01);
    /// PDU Sequence Error.
    pub const PDU_SEQUENCE_ERROR: Fes = Fes(0x02);
    /// Header Digest Error.
    pub const HDGST_ERROR: Fes = Fes(0x03);
    /// Data Transfer Out of Range.
    pub const DATA_TRANSFER_OUT_OF_RANGE: Fes = Fes(0x04);
    /// Data Transfer Limit Exceeded (R2T Limit Exceeded in NVMe/TCP 1.0).
    pub const DATA_TRANSFER_LIMIT_EXCEEDED: Fes = Fes(0x05);
    /// Unsupported Parameter; FEI holds the byte offset of the field.
    pub const UNSUPPORTED_PARAMETER: Fes = Fes(0x06);
}
