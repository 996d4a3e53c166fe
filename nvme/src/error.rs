//! The crate error type.

use crate::spec::status::{CommandSpecificStatus, GenericStatus, Status};
use crate::spec::tcp::pdu::Fes;

/// Every error this crate reports. Errors caused by a peer map to the wire: a command error to
/// an NVMe [`Status`] ([`Error::status`]), an NVMe/TCP framing error to a TermReq fatal error
/// status and offset ([`Error::term_req`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A buffer is shorter (or longer) than the wire structure it must hold.
    #[error("{what}: expected {need} bytes, got {got}")]
    Length {
        /// The structure being decoded.
        what: &'static str,
        /// Bytes the structure needs.
        need: usize,
        /// Bytes supplied.
        got: usize,
    },
    /// An SGL descriptor has a type/subtype combination that is not defined or not supported
    /// (NVMe Base 2.0, 4.1.8, Figure 118/119).
    #[error("invalid SGL descriptor type {sgl_type:#x} subtype {subtype:#x}")]
    InvalidSglType {
        /// The descriptor type (byte 15 bits 7:4).
        sgl_type: u8,
        /// The descriptor subtype (byte 15 bits 3:0).
        subtype: u8,
    },
    /// The SQE's PSDT field holds the reserved value 3 (NVMe Base 2.0, Figure 88).
    #[error("reserved PSDT value {0}")]
    ReservedPsdt(u8),
    /// A fixed-size, NUL-padded string field has no NUL terminator.
    #[error("{field}: no NUL terminator within {len} bytes")]
    UnterminatedString {
        /// Name of the field.
        field: &'static str,
        /// Size of the field.
        len: usize,
    },
    /// A string field is not valid UTF-8.
    #[error("{field}: not valid UTF-8")]
    InvalidUtf8 {
        /// Name of the field.
        field: &'static str,
    },
    /// A string is longer than its field allows.
    #[error("{field}: {len} bytes is longer than the maximum {max}")]
    StringTooLong {
        /// Name of the field.
        field: &'static str,
        /// Length of the string.
        len: usize,
        /// Maximum allowed length.
        max: usize,
    },
    /// An NVMe Qualified Name breaks the rules of NVMe Base 2.0, 4.5.
    #[error("invalid NQN {nqn:?}: {reason}")]
    InvalidNqn {
        /// The offending NQN (lossily decoded, truncated to 256 bytes).
        nqn: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A Property Get/Set command uses a reserved ATTRIB size (NVMe-oF 1.1, 3.4/3.5).
    #[error("invalid property attribute size {0}")]
    InvalidPropertySize(u8),
    /// A command field holds a value the specification reserves.
    #[error("invalid field {field}: {value:#x}")]
    InvalidField {
        /// Name of the field.
        field: &'static str,
        /// Raw value found.
        value: u64,
    },
    /// NVMe/TCP: a PDU header field is invalid (FES 01h). `fei` is the byte offset of the
    /// field in the PDU header.
    #[error("NVMe/TCP invalid PDU header field at byte {fei}: {reason}")]
    PduInvalidHeaderField {
        /// Byte offset of the offending field in the header.
        fei: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// NVMe/TCP: a PDU arrived that is not allowed in the current state (FES 02h).
    #[error("NVMe/TCP PDU sequence error (type {pdu_type:#x}): {reason}")]
    PduSequence {
        /// Type of the PDU.
        pdu_type: u8,
        /// What is wrong.
        reason: &'static str,
    },
    /// NVMe/TCP: header digest mismatch (FES 03h).
    #[error(
        "NVMe/TCP header digest mismatch: received {received:#010x}, computed {computed:#010x}"
    )]
    HeaderDigest {
        /// Digest on the wire.
        received: u32,
        /// Digest computed over the header.
        computed: u32,
    },
    /// NVMe/TCP: data digest mismatch. Not fatal for the connection: the affected command is
    /// completed with Transient Transport Error; the decoder stays in sync.
    #[error("NVMe/TCP data digest mismatch: received {received:#010x}, computed {computed:#010x}")]
    DataDigest {
        /// Digest on the wire.
        received: u32,
        /// Digest computed over the data.
        computed: u32,
    },
    /// NVMe/TCP: data offset/length outside the command's transfer (FES 04h).
    #[error("NVMe/TCP data transfer out of range at byte {fei}: {reason}")]
    DataTransferOutOfRange {
        /// Byte offset of the offending field in the header.
        fei: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// NVMe/TCP: a data PDU carries more than the negotiated maximum (FES 05h).
    #[error("NVMe/TCP data transfer limit exceeded: {len} bytes > {max}")]
    DataTransferLimitExceeded {
        /// Byte offset of the offending field in the header.
        fei: u32,
        /// Data length of the PDU.
        len: u32,
        /// Negotiated maximum.
        max: u32,
    },
    /// NVMe/TCP: a parameter (e.g. PFV) is not supported (FES 06h).
    #[error("NVMe/TCP unsupported parameter at byte {fei}: {reason}")]
    UnsupportedParameter {
        /// Byte offset of the offending field in the header.
        fei: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// NVMe/TCP: the decoder already reported a fatal error; the stream cannot be resynchronised.
    #[error("NVMe/TCP stream failed earlier; no further PDUs can be decoded")]
    DecoderFailed,
    /// NVMe/TCP: an encoder was asked to build a PDU that cannot be represented.
    #[error("NVMe/TCP cannot encode PDU: {0}")]
    Encode(&'static str),
}

impl Error {
    /// The NVMe/TCP TermReq fatal error status and error information (FEI) for a framing
    /// error, or `None` when the error is not a fatal transport error.
    pub fn term_req(&self) -> Option<(Fes, u32)> {
        match *self {
            Error::PduInvalidHeaderField { fei, .. } => Some((Fes::INVALID_HEADER_FIELD, fei)),
            Error::PduSequence { .. } => Some((Fes::PDU_SEQUENCE_ERROR, 0)),
            Error::HeaderDigest { .. } => Some((Fes::HDGST_ERROR, 0)),
            Error::DataTransferOutOfRange { fei, .. } => {
                Some((Fes::DATA_TRANSFER_OUT_OF_RANGE, fei))
            }
            Error::DataTransferLimitExceeded { fei, .. } => {
                Some((Fes::DATA_TRANSFER_LIMIT_EXCEEDED, fei))
            }
            Error::UnsupportedParameter { fei, .. } => Some((Fes::UNSUPPORTED_PARAMETER, fei)),
            _ => None,
        }
    }

    /// The NVMe completion status a controller returns for a command that failed with this
    /// error, or `None` when the error does not come from a command.
    pub fn status(&self) -> Option<Status> {
        let status = match self {
            Error::InvalidSglType { .. } => GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID.into(),
            Error::ReservedPsdt(_)
            | Error::InvalidPropertySize(_)
            | Error::InvalidField { .. }
            | Error::UnterminatedString { .. }
            | Error::InvalidUtf8 { .. }
            | Error::StringTooLong { .. } => GenericStatus::INVALID_FIELD.into(),
            Error::InvalidNqn { .. } => CommandSpecificStatus::CONNECT_INVALID_PARAMETERS.into(),
            Error::DataDigest { .. } => GenericStatus::TRANSIENT_TRANSPORT_ERROR.into(),
            _ => return None,
        };
        Some(status)
    }
}
