//! Scatter Gather List descriptors (NVMe Base 2.0, 4.1.8, Figures 117-126; NVMe-oF 1.1, 2.3.2
//! keyed and transport SGLs; SPDK `struct spdk_nvme_sgl_descriptor`).

use static_assertions::const_assert_eq;
use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::Error;

/// SGL descriptor type, byte 15 bits 7:4 (NVMe Base 2.0, Figure 118).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SglType(pub u8);

impl SglType {
    /// SGL Data Block.
    pub const DATA_BLOCK: SglType = SglType(0x0);
    /// SGL Bit Bucket.
    pub const BIT_BUCKET: SglType = SglType(0x1);
    /// SGL Segment.
    pub const SEGMENT: SglType = SglType(0x2);
    /// SGL Last Segment.
    pub const LAST_SEGMENT: SglType = SglType(0x3);
    /// Keyed SGL Data Block (fabrics, RDMA).
    pub const KEYED_DATA_BLOCK: SglType = SglType(0x4);
    /// Transport SGL Data Block (fabrics, e.g. NVMe/TCP data that is not in the capsule).
    pub const TRANSPORT_DATA_BLOCK: SglType = SglType(0x5);
}

/// SGL descriptor subtype, byte 15 bits 3:0 (NVMe Base 2.0, Figure 119).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SglSubtype(pub u8);

impl SglSubtype {
    /// The Address field is a memory address.
    pub const ADDRESS: SglSubtype = SglSubtype(0x0);
    /// The Address field is an offset (into in-capsule data for fabrics).
    pub const OFFSET: SglSubtype = SglSubtype(0x1);
    /// Transport specific (NVMe/TCP: data is transferred by H2CData/C2HData PDUs).
    pub const TRANSPORT: SglSubtype = SglSubtype(0xa);
    /// Keyed data block: invalidate the key after the transfer (NVMe-oF 1.1, Figure 5).
    pub const INVALIDATE_KEY: SglSubtype = SglSubtype(0xf);
}

/// Raw 16-byte SGL descriptor as it appears in an SQE's DPTR or in a segment.
///
/// Bytes 0..8 address; unkeyed forms use bytes 8..12 as length; keyed forms use bytes 8..11 as
/// a 24-bit length and 11..15 as the key; byte 15 is type (7:4) and subtype (3:0).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct SglDescriptor {
    /// Address or offset.
    pub address: U64,
    /// Length and (keyed) key bytes.
    pub body: [u8; 7],
    /// Type in bits 7:4, subtype in bits 3:0.
    pub id: u8,
}
const_assert_eq!(size_of::<SglDescriptor>(), 16);

/// Maximum length of a keyed data block (24-bit field).
pub const KEYED_MAX_LENGTH: u32 = 0x00ff_ffff;

/// A validated SGL descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sgl {
    /// Data Block at a memory address.
    DataBlock {
        /// Memory address.
        address: u64,
        /// Length in bytes.
        length: u32,
    },
    /// Data Block at an offset into in-capsule data (fabrics).
    DataBlockOffset {
        /// Offset into the capsule's data area.
        offset: u64,
        /// Length in bytes.
        length: u32,
    },
    /// Bit Bucket: `length` bytes to discard (reads only).
    BitBucket {
        /// Length in bytes.
        length: u32,
    },
    /// Segment: a list of further descriptors.
    Segment {
        /// Address, or in-capsule offset when `offset` is set.
        address: u64,
        /// Length of the segment in bytes (a multiple of 16).
        length: u32,
        /// True for the Offset subtype.
        offset: bool,
    },
    /// Last Segment.
    LastSegment {
        /// Address, or in-capsule offset when `offset` is set.
        address: u64,
        /// Length of the segment in bytes (a multiple of 16).
        length: u32,
        /// True for the Offset subtype.
        offset: bool,
    },
    /// Keyed SGL Data Block (RDMA remote buffer).
    KeyedDataBlock {
        /// Remote address.
        address: u64,
        /// Length (24 bits).
        length: u32,
        /// Remote key.
        key: u32,
        /// Subtype Invalidate Key.
        invalidate: bool,
    },
    /// Transport SGL Data Block (NVMe/TCP data transferred by R2T/H2CData or C2HData).
    TransportDataBlock {
        /// Length in bytes.
        length: u32,
    },
}

impl SglDescriptor {
    /// Descriptor type (byte 15 bits 7:4).
    pub const fn sgl_type(&self) -> SglType {
        SglType(self.id >> 4)
    }

    /// Descriptor subtype (byte 15 bits 3:0).
    pub const fn subtype(&self) -> SglSubtype {
        SglSubtype(self.id & 0xf)
    }

    /// Unkeyed length (bytes 8..12).
    pub fn unkeyed_length(&self) -> u32 {
        u32::from_le_bytes([self.body[0], self.body[1], self.body[2], self.body[3]])
    }

    /// Keyed length (bytes 8..11, 24 bits).
    pub fn keyed_length(&self) -> u32 {
        u32::from_le_bytes([self.body[0], self.body[1], self.body[2], 0])
    }

    /// Keyed key (bytes 11..15).
    pub fn key(&self) -> u32 {
        u32::from_le_bytes([self.body[3], self.body[4], self.body[5], self.body[6]])
    }

    /// Validate and decode. Undefined type/subtype combinations are rejected with
    /// [`Error::InvalidSglType`] (which maps to SGL Descriptor Type Invalid).
    pub fn decode(&self) -> Result<Sgl, Error> {
        let address = self.address.get();
        let (t, st) = (self.sgl_type(), self.subtype());
        let len = self.unkeyed_length();
        let sgl = match (t, st) {
            (SglType::DATA_BLOCK, SglSubtype::ADDRESS) => Sgl::DataBlock {
                address,
                length: len,
            },
            (SglType::DATA_BLOCK, SglSubtype::OFFSET) => Sgl::DataBlockOffset {
                offset: address,
                length: len,
            },
            (SglType::BIT_BUCKET, SglSubtype::ADDRESS) => Sgl::BitBucket { length: len },
            (SglType::SEGMENT, SglSubtype::ADDRESS | SglSubtype::OFFSET) => Sgl::Segment {
                address,
                length: len,
                offset: st == SglSubtype::OFFSET,
            },
            (SglType::LAST_SEGMENT, SglSubtype::ADDRESS | SglSubtype::OFFSET) => Sgl::LastSegment {
                address,
                length: len,
                offset: st == SglSubtype::OFFSET,
            },
            (SglType::KEYED_DATA_BLOCK, SglSubtype::ADDRESS | SglSubtype::INVALIDATE_KEY) => {
                Sgl::KeyedDataBlock {
                    address,
                    length: self.keyed_length(),
                    key: self.key(),
                    invalidate: st == SglSubtype::INVALIDATE_KEY,
                }
            }
            (SglType::TRANSPORT_DATA_BLOCK, SglSubtype::TRANSPORT) => {
                Sgl::TransportDataBlock { length: len }
            }
            _ => {
                return Err(Error::InvalidSglType {
                    sgl_type: t.0,
                    subtype: st.0,
                });
            }
        };
        Ok(sgl)
    }

    fn unkeyed(t: SglType, st: SglSubtype, address: u64, length: u32) -> Self {
        let l = length.to_le_bytes();
        SglDescriptor {
            address: U64::new(address),
            body: [l[0], l[1], l[2], l[3], 0, 0, 0],
            id: (t.0 << 4) | (st.0 & 0xf),
        }
    }
}

impl From<Sgl> for SglDescriptor {
    /// Encode. Keyed lengths are truncated to 24 bits; callers check [`KEYED_MAX_LENGTH`].
    fn from(sgl: Sgl) -> Self {
        let sub = |offset: bool| {
            if offset {
                SglSubtype::OFFSET
            } else {
                SglSubtype::ADDRESS
            }
        };
        match sgl {
            Sgl::DataBlock { address, length } => {
                Self::unkeyed(SglType::DATA_BLOCK, SglSubtype::ADDRESS, address, length)
            }
            Sgl::DataBlockOffset { offset, length } => {
                Self::unkeyed(SglType::DATA_BLOCK, SglSubtype::OFFSET, offset, length)
            }
            Sgl::BitBucket { length } => {
                Self::unkeyed(SglType::BIT_BUCKET, SglSubtype::ADDRESS, 0, length)
            }
            Sgl::Segment {
                address,
                length,
                offset,
            } => Self::unkeyed(SglType::SEGMENT, sub(offset), address, length),
            Sgl::LastSegment {
                address,
                length,
                offset,
            } => Self::unkeyed(SglType::LAST_SEGMENT, sub(offset), address, length),
            Sgl::KeyedDataBlock {
                address,
                length,
                key,
                invalidate,
            } => {
                let l = length.to_le_bytes();
                let k = key.to_le_bytes();
                let st = if invalidate {
                    SglSubtype::INVALIDATE_KEY
                } else {
                    SglSubtype::ADDRESS
                };
                SglDescriptor {
                    address: U64::new(address),
                    body: [l[0], l[1], l[2], k[0], k[1], k[2], k[3]],
                    id: (SglType::KEYED_DATA_BLOCK.0 << 4) | st.0,
                }
            }
            Sgl::TransportDataBlock { length } => Self::unkeyed(
                SglType::TRANSPORT_DATA_BLOCK,
                SglSubtype::TRANSPORT,
                0,
                length,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_descriptor_places_length_and_key_per_nvmf_figure_5() {
        let d = SglDescriptor::from(Sgl::KeyedDataBlock {
            address: 0x1122_3344_5566_7788,
            length: 0x00ab_cdef,
            key: 0xdead_beef,
            invalidate: false,
        });
        let b = d.as_bytes();
        assert_eq!(&b[0..8], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&b[8..11], &[0xef, 0xcd, 0xab]);
        assert_eq!(&b[11..15], &[0xef, 0xbe, 0xad, 0xde]);
        assert_eq!(b[15], 0x40);
        assert_eq!(
            d.decode().unwrap(),
            Sgl::KeyedDataBlock {
                address: 0x1122_3344_5566_7788,
                length: 0x00ab_cdef,
                key: 0xdead_beef,
                invalidate: false
            }
        );
    }

    #[test]
    fn tcp_in_capsule_and_transport_descriptors_round_trip() {
        let icd = SglDescriptor::from(Sgl::DataBlockOffset {
            offset: 0,
            length: 4096,
        });
        assert_eq!(icd.id, 0x01);
        assert_eq!(
            icd.decode().unwrap(),
            Sgl::DataBlockOffset {
                offset: 0,
                length: 4096
            }
        );
        let t = SglDescriptor::from(Sgl::TransportDataBlock { length: 131072 });
        assert_eq!(t.id, 0x5a);
        assert_eq!(
            t.decode().unwrap(),
            Sgl::TransportDataBlock { length: 131072 }
        );
    }

    #[test]
    fn undefined_type_is_rejected_with_sgl_type_invalid_status() {
        let mut d = SglDescriptor::from(Sgl::DataBlock {
            address: 0,
            length: 1,
        });
        d.id = 0x60;
        let err = d.decode().unwrap_err();
        assert_eq!(
            err,
            Error::InvalidSglType {
                sgl_type: 6,
                subtype: 0
            }
        );
        assert_eq!(
            err.status(),
            Some(crate::spec::status::GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID.into())
        );
        d.id = 0x0a; // data block with transport subtype
        assert!(d.decode().is_err());
    }
}
