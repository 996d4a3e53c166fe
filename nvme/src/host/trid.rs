//! Transport IDs: where a controller lives (SPDK `struct spdk_nvme_transport_id` and
//! `spdk_nvme_transport_id_parse`).

use super::HostError;
use crate::spec::nqn::validate_nqn;

/// The well-known discovery subsystem NQN (NVMe Base 2.0, 4.5).
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";
/// Default NVMe/TCP port (IANA: 4420).
pub const DEFAULT_TRSVCID: &str = "4420";

/// Transport type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TrType {
    /// NVMe/TCP.
    Tcp,
    /// NVMe/RDMA (not built into this driver yet).
    Rdma,
    /// Local PCIe (not built into this driver yet).
    Pcie,
}

impl TrType {
    /// SPDK's spelling ("TCP", "RDMA", "PCIe").
    pub fn as_str(self) -> &'static str {
        match self {
            TrType::Tcp => "TCP",
            TrType::Rdma => "RDMA",
            TrType::Pcie => "PCIe",
        }
    }

    /// Parse case-insensitively.
    pub fn parse(s: &str) -> Result<Self, HostError> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(TrType::Tcp),
            "rdma" => Ok(TrType::Rdma),
            "pcie" => Ok(TrType::Pcie),
            _ => Err(HostError::InvalidTrid(format!("unknown trtype {s:?}"))),
        }
    }
}

/// Address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdrFam {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl AdrFam {
    /// SPDK's spelling ("IPv4", "IPv6").
    pub fn as_str(self) -> &'static str {
        match self {
            AdrFam::Ipv4 => "IPv4",
            AdrFam::Ipv6 => "IPv6",
        }
    }

    /// Parse case-insensitively.
    pub fn parse(s: &str) -> Result<Self, HostError> {
        match s.to_ascii_lowercase().as_str() {
            "ipv4" => Ok(AdrFam::Ipv4),
            "ipv6" => Ok(AdrFam::Ipv6),
            _ => Err(HostError::InvalidTrid(format!("unknown adrfam {s:?}"))),
        }
    }
}

/// Where a controller lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransportId {
    /// Transport type.
    pub trtype: TrType,
    /// Address family.
    pub adrfam: AdrFam,
    /// Transport address (IP address).
    pub traddr: String,
    /// Transport service ID (TCP port).
    pub trsvcid: String,
    /// Subsystem NQN.
    pub subnqn: String,
    /// Host NQN given in the string (`hostnqn:`), if any.
    pub hostnqn: Option<String>,
    /// Namespace restriction given in the string (`ns:`), as SPDK's perf accepts.
    pub nsid: Option<u32>,
}

impl TransportId {
    /// A TCP transport ID; `subnqn` defaults to the discovery NQN when `None`.
    pub fn tcp(traddr: &str, trsvcid: &str, subnqn: Option<&str>) -> Result<Self, HostError> {
        let adrfam = if traddr.contains(':') {
            AdrFam::Ipv6
        } else {
            AdrFam::Ipv4
        };
        let t = TransportId {
            trtype: TrType::Tcp,
            adrfam,
            traddr: traddr.to_owned(),
            trsvcid: trsvcid.to_owned(),
            subnqn: subnqn.unwrap_or(DISCOVERY_NQN).to_owned(),
            hostnqn: None,
            nsid: None,
        };
        t.validate()?;
        Ok(t)
    }

    /// Parse SPDK's `key:value` (or `key=value`) list separated by white space, e.g.
    /// `trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 subnqn:nqn.2016-06.io.spdk:cnode1`.
    /// Keys are case-insensitive; `trtype` and `traddr` are required; `adrfam` defaults to
    /// IPv4, `trsvcid` to 4420 and `subnqn` to the discovery NQN.
    pub fn parse(s: &str) -> Result<Self, HostError> {
        let mut trtype = None;
        let mut adrfam = None;
        let mut traddr = None;
        let mut trsvcid = None;
        let mut subnqn = None;
        let mut hostnqn = None;
        let mut nsid = None;
        for tok in s.split_whitespace() {
            let split = tok
                .find([':', '='])
                .ok_or_else(|| HostError::InvalidTrid(format!("{tok:?} is not key:value")))?;
            let (key, val) = (&tok[..split], &tok[split + 1..]);
            if val.is_empty() {
                return Err(HostError::InvalidTrid(format!("empty value for {key:?}")));
            }
            let dup = |k: &str| HostError::InvalidTrid(format!("{k} given twice"));
            match key.to_ascii_lowercase().as_str() {
                "trtype" => {
                    if trtype.replace(TrType::parse(val)?).is_some() {
                        return Err(dup("trtype"));
                    }
                }
                "adrfam" => {
                    if adrfam.replace(AdrFam::parse(val)?).is_some() {
                        return Err(dup("adrfam"));
                    }
                }
                "traddr" => {
                    if traddr.replace(val.to_owned()).is_some() {
                        return Err(dup("traddr"));
                    }
                }
                "trsvcid" => {
                    if trsvcid.replace(val.to_owned()).is_some() {
                        return Err(dup("trsvcid"));
                    }
                }
                "subnqn" => {
                    if subnqn.replace(val.to_owned()).is_some() {
                        return Err(dup("subnqn"));
                    }
                }
                "hostnqn" => {
                    if hostnqn.replace(val.to_owned()).is_some() {
                        return Err(dup("hostnqn"));
                    }
                }
                "ns" => {
                    let n: u32 = val
                        .parse()
                        .ok()
                        .filter(|&n| n != 0 && n != u32::MAX)
                        .ok_or_else(|| HostError::InvalidTrid(format!("invalid ns {val:?}")))?;
                    if nsid.replace(n).is_some() {
                        return Err(dup("ns"));
                    }
                }
                other => {
                    return Err(HostError::InvalidTrid(format!(
                        "unknown transport ID key {other:?}"
                    )));
                }
            }
        }
        let t = TransportId {
            trtype: trtype.ok_or_else(|| HostError::InvalidTrid("trtype missing".into()))?,
            adrfam: adrfam.unwrap_or(AdrFam::Ipv4),
            traddr: traddr.ok_or_else(|| HostError::InvalidTrid("traddr missing".into()))?,
            trsvcid: trsvcid.unwrap_or_else(|| DEFAULT_TRSVCID.to_owned()),
            subnqn: subnqn.unwrap_or_else(|| DISCOVERY_NQN.to_owned()),
            hostnqn,
            nsid,
        };
        t.validate()?;
        Ok(t)
    }

    /// Check the fields: NQNs valid, service ID a port number, address of the family.
    pub fn validate(&self) -> Result<(), HostError> {
        validate_nqn(&self.subnqn).map_err(|e| HostError::InvalidTrid(e.to_string()))?;
        if let Some(h) = &self.hostnqn {
            validate_nqn(h).map_err(|e| HostError::InvalidTrid(e.to_string()))?;
        }
        if self.trtype == TrType::Tcp || self.trtype == TrType::Rdma {
            self.trsvcid
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| {
                    HostError::InvalidTrid(format!("trsvcid {:?} is not a port", self.trsvcid))
                })?;
            let ok = match self.adrfam {
                AdrFam::Ipv4 => self.traddr.parse::<std::net::Ipv4Addr>().is_ok(),
                AdrFam::Ipv6 => self.traddr.parse::<std::net::Ipv6Addr>().is_ok(),
            };
            if !ok {
                return Err(HostError::InvalidTrid(format!(
                    "traddr {:?} is not an {} address",
                    self.traddr,
                    self.adrfam.as_str()
                )));
            }
        }
        Ok(())
    }

    /// True when `subnqn` is the discovery NQN.
    pub fn is_discovery(&self) -> bool {
        self.subnqn == DISCOVERY_NQN
    }

    /// The socket address (TCP/RDMA), once [`TransportId::validate`] passed.
    pub fn socket_addr(&self) -> Result<std::net::SocketAddr, HostError> {
        let port: u16 = self
            .trsvcid
            .parse()
            .map_err(|_| HostError::InvalidTrid(format!("bad trsvcid {:?}", self.trsvcid)))?;
        let ip: std::net::IpAddr = self
            .traddr
            .parse()
            .map_err(|_| HostError::InvalidTrid(format!("bad traddr {:?}", self.traddr)))?;
        Ok(std::net::SocketAddr::new(ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spdk_style_string_with_defaults() {
        let t = TransportId::parse(
            "trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4421 subnqn:nqn.2016-06.io.spdk:cnode1",
        )
        .unwrap();
        assert_eq!(t.trtype, TrType::Tcp);
        assert_eq!(t.adrfam, AdrFam::Ipv4);
        assert_eq!(t.traddr, "127.0.0.1");
        assert_eq!(t.trsvcid, "4421");
        assert_eq!(t.subnqn, "nqn.2016-06.io.spdk:cnode1");
        let d = TransportId::parse("trtype=tcp traddr=::1 adrfam=ipv6").unwrap();
        assert_eq!(d.trsvcid, "4420");
        assert_eq!(d.subnqn, DISCOVERY_NQN);
        assert!(d.is_discovery());
        assert_eq!(d.socket_addr().unwrap().to_string(), "[::1]:4420");
    }

    #[test]
    fn rejects_bad_strings_with_reason() {
        let cases = [
            ("traddr:127.0.0.1", "trtype missing"),
            ("trtype:TCP", "traddr missing"),
            ("trtype:FOO traddr:127.0.0.1", "unknown trtype"),
            (
                "trtype:TCP traddr:127.0.0.1 bogus:1",
                "unknown transport ID key",
            ),
            ("trtype:TCP traddr:127.0.0.1 trsvcid:99999", "not a port"),
            ("trtype:TCP traddr:not-an-ip", "not an IPv4 address"),
            ("trtype:TCP trtype:TCP traddr:1.2.3.4", "trtype given twice"),
            ("trtype:TCP traddr:1.2.3.4 subnqn:bad", "invalid NQN"),
            ("trtype:TCP traddr", "not key:value"),
        ];
        for (s, want) in cases {
            let e = TransportId::parse(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
