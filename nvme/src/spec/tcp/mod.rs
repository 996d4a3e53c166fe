//! NVMe/TCP transport binding (NVMe/TCP Transport Specification 1.0; SPDK `nvme_tcp.h`):
//! PDU header structures ([`pdu`]), digests ([`digest`]) and the sans-IO framer ([`framer`])
//! shared by the target transport and the host.

pub mod digest;
pub mod framer;
pub mod pdu;

pub use framer::{
    Decoded, DecoderConfig, EncodedHeader, Negotiated, Pdu, PduDecoder, PduEncoder, PduEnd,
    PduReader, Role, term_req_for,
};
pub use pdu::{Fes, PduHeader, PduType};
