//! NVMe/TCP transport binding (NVMe/TCP Transport Specification 1.0; SPDK `nvme_tcp.h`):
//! PDU header structures and the sans-IO framer shared by the target transport and the host.

pub mod pdu;
