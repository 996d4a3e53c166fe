//! RDMA CM private data of the NVMe/RDMA transport binding (NVMe-oF 1.1, 7.3.2 "RDMA_CM_REQUEST",
//! "RDMA_CM_ACCEPT", "RDMA_CM_REJECT"; SPDK `struct spdk_nvmf_rdma_request_private_data` and
//! friends in `nvmf_spec.h`) and the queue depth negotiation of SPDK `nvmf_rdma_connect`.

use crate::error::RdmaError;
use static_assertions::const_assert_eq;
use zerocopy::little_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Record format the binding defines (RECFMT 0).
pub const RECFMT: u16 = 0;
/// Size of the RDMA_CM_REQUEST and RDMA_CM_ACCEPT private data.
pub const PRIVATE_DATA_LEN: usize = 32;

/// RDMA_CM_REQUEST private data, sent by the host in `rdma_connect`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct CmRequestRaw {
    /// Record format (0).
    pub recfmt: U16,
    /// Queue ID the host connects (0 = admin).
    pub qid: U16,
    /// Host receive queue size (responses it can take).
    pub hrqsize: U16,
    /// Host send queue size, 0's based (HSQSIZE = SQSIZE of Connect).
    pub hsqsize: U16,
    /// Controller ID (0xffff for the dynamic model), informational.
    pub cntlid: U16,
    /// Reserved.
    pub reserved: [u8; 22],
}
const_assert_eq!(size_of::<CmRequestRaw>(), PRIVATE_DATA_LEN);

/// RDMA_CM_ACCEPT private data, sent by the target in `rdma_accept`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct CmAcceptRaw {
    /// Record format (0).
    pub recfmt: U16,
    /// Controller receive queue size (the negotiated queue depth).
    pub crqsize: U16,
    /// Reserved.
    pub reserved: [u8; 28],
}
const_assert_eq!(size_of::<CmAcceptRaw>(), PRIVATE_DATA_LEN);

/// RDMA_CM_REJECT private data, sent by the target in `rdma_reject`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct CmRejectRaw {
    /// Record format (0).
    pub recfmt: U16,
    /// Status ([`RejectStatus`]).
    pub sts: U16,
}
const_assert_eq!(size_of::<CmRejectRaw>(), 4);

/// Status of an RDMA_CM_REJECT (SPDK `enum spdk_nvmf_rdma_transport_error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RejectStatus(pub u16);

impl RejectStatus {
    /// Private data missing or shorter than 32 bytes.
    pub const INVALID_PRIVATE_DATA_LENGTH: RejectStatus = RejectStatus(0x1);
    /// RECFMT is not 0.
    pub const INVALID_RECFMT: RejectStatus = RejectStatus(0x2);
    /// QID is invalid.
    pub const INVALID_QID: RejectStatus = RejectStatus(0x3);
    /// HSQSIZE is invalid.
    pub const INVALID_HSQSIZE: RejectStatus = RejectStatus(0x4);
    /// HRQSIZE is invalid.
    pub const INVALID_HRQSIZE: RejectStatus = RejectStatus(0x5);
    /// The target has no resources for the queue.
    pub const NO_RESOURCES: RejectStatus = RejectStatus(0x6);
    /// The host offers no RDMA READ resources (initiator depth 0).
    pub const INVALID_IRD: RejectStatus = RejectStatus(0x7);
    /// Invalid outbound RDMA READ depth.
    pub const INVALID_ORD: RejectStatus = RejectStatus(0x8);
}

/// A validated RDMA_CM_REQUEST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmRequest {
    /// Queue ID.
    pub qid: u16,
    /// Host receive queue size.
    pub hrqsize: u16,
    /// Host send queue size (0's based).
    pub hsqsize: u16,
    /// Controller ID.
    pub cntlid: u16,
}

fn reject(status: RejectStatus, reason: impl Into<String>) -> RdmaError {
    RdmaError::Rejected {
        status,
        reason: reason.into(),
    }
}

impl CmRequest {
    /// Parses the private data of a connect request as SPDK does: at least 32 bytes (longer
    /// private data, e.g. padded by the CM, is accepted), RECFMT 0, and non-zero queue sizes.
    pub fn parse(private_data: &[u8]) -> Result<CmRequest, RdmaError> {
        let Some(bytes) = private_data.get(..PRIVATE_DATA_LEN) else {
            return Err(reject(
                RejectStatus::INVALID_PRIVATE_DATA_LENGTH,
                format!("private data is {} bytes, need 32", private_data.len()),
            ));
        };
        let raw = CmRequestRaw::read_from_bytes(bytes).map_err(|_| {
            reject(
                RejectStatus::INVALID_PRIVATE_DATA_LENGTH,
                "private data does not parse",
            )
        })?;
        if raw.recfmt.get() != RECFMT {
            return Err(reject(
                RejectStatus::INVALID_RECFMT,
                format!("RECFMT {} is not 0", raw.recfmt.get()),
            ));
        }
        if raw.hrqsize.get() == 0 {
            return Err(reject(RejectStatus::INVALID_HRQSIZE, "HRQSIZE is 0"));
        }
        Ok(CmRequest {
            qid: raw.qid.get(),
            hrqsize: raw.hrqsize.get(),
            hsqsize: raw.hsqsize.get(),
            cntlid: raw.cntlid.get(),
        })
    }

    /// The 32 bytes a host sends (used by tests and a host implementation).
    pub fn to_bytes(&self) -> [u8; PRIVATE_DATA_LEN] {
        let raw = CmRequestRaw {
            recfmt: U16::new(RECFMT),
            qid: U16::new(self.qid),
            hrqsize: U16::new(self.hrqsize),
            hsqsize: U16::new(self.hsqsize),
            cntlid: U16::new(self.cntlid),
            reserved: [0; 22],
        };
        let mut out = [0; PRIVATE_DATA_LEN];
        out.copy_from_slice(raw.as_bytes());
        out
    }
}

/// The RDMA_CM_ACCEPT private data announcing `crqsize`.
pub fn accept_private_data(crqsize: u16) -> [u8; PRIVATE_DATA_LEN] {
    let raw = CmAcceptRaw {
        recfmt: U16::new(RECFMT),
        crqsize: U16::new(crqsize),
        reserved: [0; 28],
    };
    let mut out = [0; PRIVATE_DATA_LEN];
    out.copy_from_slice(raw.as_bytes());
    out
}

/// The RDMA_CM_REJECT private data for `status`.
pub fn reject_private_data(status: RejectStatus) -> [u8; 4] {
    let raw = CmRejectRaw {
        recfmt: U16::new(RECFMT),
        sts: U16::new(status.0),
    };
    let mut out = [0; 4];
    out.copy_from_slice(raw.as_bytes());
    out
}

/// Limits that bound a new queue pair (SPDK `nvmf_rdma_connect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthLimits {
    /// The transport's `max_queue_depth`.
    pub max_queue_depth: u16,
    /// The device's `max_qp_wr`.
    pub device_max_qp_wr: u32,
    /// The device's `max_qp_init_rd_atom` (outstanding RDMA READs we may issue).
    pub device_max_init_rd_atom: u32,
}

/// What a queue pair negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Commands in flight (CRQSIZE sent back in the accept).
    pub queue_depth: u16,
    /// RDMA READs in flight (initiator depth of the accept).
    pub read_depth: u16,
}

/// Negotiates the queue depth as SPDK: the minimum of the transport's maximum, the device's
/// work request limit, HRQSIZE and HSQSIZE + 1; the READ depth is bounded by the device and
/// the host's `initiator_depth` (0 rejects with [`RejectStatus::INVALID_IRD`]).
pub fn negotiate(
    limits: DepthLimits,
    req: &CmRequest,
    host_initiator_depth: u8,
) -> Result<Negotiated, RdmaError> {
    if host_initiator_depth == 0 {
        return Err(reject(
            RejectStatus::INVALID_IRD,
            "host does not support RDMA READ (initiator_depth 0)",
        ));
    }
    let cap = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
    let depth = limits
        .max_queue_depth
        .min(cap(limits.device_max_qp_wr))
        .min(req.hrqsize)
        .min(req.hsqsize.saturating_add(1));
    let read_depth = limits
        .max_queue_depth
        .min(cap(limits.device_max_init_rd_atom))
        .min(u16::from(host_initiator_depth));
    if depth == 0 || read_depth == 0 {
        return Err(reject(
            RejectStatus::NO_RESOURCES,
            format!("negotiated queue depth {depth}, read depth {read_depth}"),
        ));
    }
    Ok(Negotiated {
        queue_depth: depth,
        read_depth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> DepthLimits {
        DepthLimits {
            max_queue_depth: 128,
            device_max_qp_wr: 16_384,
            device_max_init_rd_atom: 128,
        }
    }

    #[test]
    fn request_private_data_round_trips_with_offsets() {
        let r = CmRequest {
            qid: 3,
            hrqsize: 32,
            hsqsize: 31,
            cntlid: 0xffff,
        };
        let b = r.to_bytes();
        assert_eq!(&b[..10], &[0, 0, 3, 0, 32, 0, 31, 0, 0xff, 0xff]);
        assert_eq!(CmRequest::parse(&b).unwrap(), r);
    }

    #[test]
    fn short_private_data_is_rejected_with_length_status() {
        let e = CmRequest::parse(&[0; 31]).unwrap_err();
        assert!(matches!(
            e,
            RdmaError::Rejected { status, .. } if status == RejectStatus::INVALID_PRIVATE_DATA_LENGTH
        ));
        let e = CmRequest::parse(&[]).unwrap_err();
        assert!(matches!(
            e,
            RdmaError::Rejected { status, .. } if status == RejectStatus::INVALID_PRIVATE_DATA_LENGTH
        ));
    }

    #[test]
    fn longer_private_data_is_accepted() {
        let mut b = CmRequest {
            qid: 0,
            hrqsize: 32,
            hsqsize: 31,
            cntlid: 0xffff,
        }
        .to_bytes()
        .to_vec();
        b.extend_from_slice(&[0xaa; 24]);
        assert_eq!(CmRequest::parse(&b).unwrap().hrqsize, 32);
    }

    #[test]
    fn nonzero_recfmt_is_rejected() {
        let mut b = [0u8; 32];
        b[0] = 1;
        b[4] = 8;
        let e = CmRequest::parse(&b).unwrap_err();
        assert!(
            matches!(e, RdmaError::Rejected { status, .. } if status == RejectStatus::INVALID_RECFMT)
        );
    }

    #[test]
    fn zero_hrqsize_is_rejected() {
        let b = [0u8; 32];
        let e = CmRequest::parse(&b).unwrap_err();
        assert!(
            matches!(e, RdmaError::Rejected { status, .. } if status == RejectStatus::INVALID_HRQSIZE)
        );
    }

    #[test]
    fn depth_is_min_of_target_device_hrqsize_and_hsqsize_plus_one() {
        let req = |hrq, hsq| CmRequest {
            qid: 1,
            hrqsize: hrq,
            hsqsize: hsq,
            cntlid: 0xffff,
        };
        let n = negotiate(limits(), &req(32, 31), 16).unwrap();
        assert_eq!(
            n,
            Negotiated {
                queue_depth: 32,
                read_depth: 16
            }
        );
        let n = negotiate(limits(), &req(256, 255), 255).unwrap();
        assert_eq!(
            n,
            Negotiated {
                queue_depth: 128,
                read_depth: 128
            }
        );
        let n = negotiate(limits(), &req(64, 15), 4).unwrap();
        assert_eq!(n.queue_depth, 16);
        let small = DepthLimits {
            device_max_qp_wr: 8,
            device_max_init_rd_atom: 2,
            ..limits()
        };
        let n = negotiate(small, &req(64, 63), 16).unwrap();
        assert_eq!(
            n,
            Negotiated {
                queue_depth: 8,
                read_depth: 2
            }
        );
        // HSQSIZE 0xffff must not overflow.
        assert_eq!(
            negotiate(limits(), &req(64, 0xffff), 1)
                .unwrap()
                .queue_depth,
            64
        );
    }

    #[test]
    fn host_without_read_resources_is_rejected_with_invalid_ird() {
        let r = CmRequest {
            qid: 1,
            hrqsize: 32,
            hsqsize: 31,
            cntlid: 0xffff,
        };
        let e = negotiate(limits(), &r, 0).unwrap_err();
        assert!(
            matches!(e, RdmaError::Rejected { status, .. } if status == RejectStatus::INVALID_IRD)
        );
    }

    #[test]
    fn accept_and_reject_private_data_layout() {
        let a = accept_private_data(0x0102);
        assert_eq!(&a[..4], &[0, 0, 0x02, 0x01]);
        assert!(a[4..].iter().all(|b| *b == 0));
        assert_eq!(reject_private_data(RejectStatus::INVALID_IRD), [0, 0, 7, 0]);
    }
}
