//! The RDMA transport: one RDMA CM listener per listen address, connect requests validated
//! and negotiated on the app thread (SPDK `nvmf_rdma_listen`, `nvmf_rdma_accept`,
//! `nvmf_rdma_connect`).

use crate::cm::{self, CmRequest, DepthLimits, Negotiated};
use crate::config::RdmaOpts;
use crate::error::RdmaError;
use crate::poll_group::RdmaPollGroup;
use crate::verbs::{CmEventKind, CmId, DeviceAttr, EventChannel};
use nvmf::NvmfError;
use nvmf::transport::{
    DiscoverInfo, ListenAddr, PollGroupBuilder, TrType, Transport, TransportOpts,
};
use serde_json::{Map, Value};
use std::net::SocketAddr;

/// An accepted (not yet established) connection on its way to a poll group.
#[derive(Debug)]
pub struct RdmaConn {
    pub(crate) id: CmId,
    pub(crate) addr: ListenAddr,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) negotiated: Negotiated,
    pub(crate) attr: DeviceAttr,
    pub(crate) qid: u16,
}

/// The NVMe/RDMA transport.
#[derive(Debug)]
pub struct RdmaTransport {
    opts: TransportOpts,
    ropts: RdmaOpts,
    // Field order: listener ids are destroyed before their event channel.
    listeners: Vec<(ListenAddr, CmId)>,
    chan: Option<EventChannel>,
}

impl RdmaTransport {
    /// Builds the transport from validated common options, checking the size limits
    /// ([`crate::config::check_size_limits`], against the env iobuf pool's `large_bufsize`)
    /// and the RDMA-specific options. No RDMA resource is opened until the first listen.
    pub fn new(mut opts: TransportOpts) -> Result<RdmaTransport, NvmfError> {
        crate::config::check_size_limits(&mut opts, env::iobuf::iobuf_get_options().large_bufsize)?;
        let ropts = RdmaOpts::from_transport_opts(&opts)?;
        Ok(RdmaTransport {
            opts,
            ropts,
            listeners: Vec::new(),
            chan: None,
        })
    }

    /// Validates a connect request; a rejected id comes back so the caller destroys it after
    /// acknowledging the event.
    fn connect_request(
        &self,
        id: CmId,
        private: &[u8],
        ird: u8,
        listen: usize,
    ) -> Result<RdmaConn, CmId> {
        let Some(addr) = self
            .listeners
            .iter()
            .find(|(_, l)| l.raw() == listen)
            .map(|(a, _)| a.clone())
        else {
            tracing::error!("connect request on an unknown listener");
            id.reject(&cm::reject_private_data(cm::RejectStatus::NO_RESOURCES));
            return Err(id);
        };
        let res = (|| -> Result<(CmRequest, Negotiated, DeviceAttr), RdmaError> {
            let req = CmRequest::parse(private)?;
            let attr = id.device_attr()?;
            let limits = DepthLimits {
                max_queue_depth: self.ropts.max_queue_depth,
                device_max_qp_wr: attr.max_qp_wr,
                device_max_init_rd_atom: attr.max_qp_init_rd_atom,
            };
            let n = cm::negotiate(limits, &req, ird)?;
            Ok((req, n, attr))
        })();
        match res {
            Ok((req, negotiated, attr)) => {
                let peer = id.peer_addr();
                tracing::info!(
                    listener = %addr, ?peer, qid = req.qid, hrqsize = req.hrqsize,
                    hsqsize = req.hsqsize, depth = negotiated.queue_depth,
                    read_depth = negotiated.read_depth, "NVMe/RDMA connect request"
                );
                Ok(RdmaConn {
                    id,
                    addr,
                    peer,
                    negotiated,
                    attr,
                    qid: req.qid,
                })
            }
            Err(e) => {
                let status = match &e {
                    RdmaError::Rejected { status, .. } => *status,
                    _ => cm::RejectStatus::NO_RESOURCES,
                };
                tracing::error!(listener = %addr, error = %e, "NVMe/RDMA connect request rejected");
                id.reject(&cm::reject_private_data(status));
                Err(id)
            }
        }
    }
}

impl Transport for RdmaTransport {
    type PollGroup = RdmaPollGroup;
    type Connection = RdmaConn;

    fn name(&self) -> &str {
        "RDMA"
    }
    fn trtype(&self) -> TrType {
        TrType::RDMA
    }
    fn opts(&self) -> &TransportOpts {
        &self.opts
    }
    fn listen(&mut self, addr: &ListenAddr) -> Result<(), NvmfError> {
        if self.listeners.iter().any(|(a, _)| a.same_as(addr)) {
            return Ok(());
        }
        let sa = addr.socket_addr()?;
        if self.chan.is_none() {
            self.chan = Some(EventChannel::new()?);
        }
        let Some(chan) = self.chan.as_ref() else {
            return Err(NvmfError::NotSupported("no RDMA CM event channel".into()));
        };
        let id = CmId::listen(chan, sa, self.ropts.acceptor_backlog)?;
        tracing::info!(%addr, "NVMe/RDMA target listening");
        self.listeners.push((addr.clone(), id));
        Ok(())
    }
    fn stop_listen(&mut self, addr: &ListenAddr) -> Result<(), NvmfError> {
        let before = self.listeners.len();
        self.listeners.retain(|(a, _)| !a.same_as(addr));
        if before == self.listeners.len() {
            return Err(NvmfError::NotFound(format!("not listening on {addr}")));
        }
        Ok(())
    }
    fn accept(&mut self) -> Option<RdmaConn> {
        loop {
            let ev = self.chan.as_ref()?.get_event()?;
            match ev.kind() {
                CmEventKind::ConnectRequest => {
                    let Some(id) = ev.take_conn_id() else {
                        continue;
                    };
                    let (private, ird) = ev.conn_param();
                    let listen = ev.listen_id();
                    let conn = self.connect_request(id, &private, ird, listen);
                    // The event is acknowledged (dropped) before a rejected id is destroyed.
                    drop(ev);
                    match conn {
                        Ok(c) => return Some(c),
                        Err(rejected) => drop(rejected),
                    }
                }
                CmEventKind::Gone => {
                    // Device removal or address change on a listener, or a connection that
                    // failed before reaching its poll group: the listener stays registered
                    // and new connect requests fail until the address is re-added.
                    tracing::warn!(
                        listen_id = ev.listen_id(),
                        "RDMA CM reports a lost device or connection"
                    );
                }
                other => {
                    tracing::debug!(?other, "CM event on the listener channel ignored");
                }
            }
        }
    }
    fn poll_group_builder(&self) -> PollGroupBuilder<RdmaPollGroup> {
        let ropts = self.ropts.clone();
        Box::new(move || RdmaPollGroup::new(ropts))
    }
    fn dump_opts_json(&self, out: &mut Map<String, Value>) {
        self.ropts.dump_json(out);
    }
    fn listener_discover(&self, addr: &ListenAddr) -> DiscoverInfo {
        let mut tsas = [0u8; 256];
        // NVMe-oF 1.1 Figure 38: RDMA_QPTYPE reliable connected, RDMA_PRTYPE none,
        // RDMA_CMS RDMA CM (SPDK nvmf_rdma_discover).
        tsas[0] = 0x1;
        tsas[1] = 0x1;
        tsas[2] = 0x1;
        DiscoverInfo {
            trtype: TrType::RDMA,
            adrfam: addr.adrfam.wire(),
            treq: 0,
            traddr: addr.traddr.clone(),
            trsvcid: addr.trsvcid.clone(),
            tsas,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn transport(v: Value) -> Result<RdmaTransport, NvmfError> {
        let mut o: TransportOpts = serde_json::from_value(v).unwrap();
        o.validate().unwrap();
        RdmaTransport::new(o)
    }

    #[test]
    fn creating_the_transport_opens_no_rdma_resource_and_dumps_rdma_options() {
        let t = transport(json!({"io_unit_size": 8192, "max_srq_depth": 1024})).unwrap();
        assert_eq!(Transport::name(&t), "RDMA");
        assert_eq!(Transport::trtype(&t), TrType::RDMA);
        assert!(t.chan.is_none());
        let mut m = Map::new();
        t.dump_opts_json(&mut m);
        assert_eq!(
            Value::Object(m),
            json!({"max_srq_depth": 1024, "no_srq": false, "acceptor_backlog": 100,
                   "no_wr_batching": false})
        );
    }

    #[test]
    fn unknown_option_fails_creation_with_einval() {
        let e = transport(json!({"srq_depth": 1})).unwrap_err();
        assert_eq!(e.errno(), -22);
        // Another SPDK transport's option (spdk-rpc sends TCP's flags too) is ignored, as SPDK does.
        assert!(transport(json!({"sock_priority": 1, "c2h_success": true})).is_ok());
    }

    /// The audit's request (io_unit_size = max_io_size = u32::MAX) fails before any
    /// poll group or buffer exists, with SPDK's message; clamped values are what the
    /// transport reports.
    #[test]
    fn unbounded_sizes_are_refused_at_creation() {
        let mut o = TransportOpts::defaults_for("RDMA");
        o.max_io_size = u32::MAX;
        o.io_unit_size = u32::MAX;
        o.in_capsule_data_size = u32::MAX;
        let e = RdmaTransport::new(o).unwrap_err();
        assert_eq!(e.errno(), -22);
        assert_eq!(
            e.to_string(),
            "invalid parameter: max_io_size 4294967295 must be a power of 2 and be greater than or equal 8KB"
        );
        let mut o = TransportOpts::defaults_for("RDMA");
        o.max_io_size = 1 << 30;
        o.io_unit_size = 1 << 30;
        let e = RdmaTransport::new(o).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid parameter: io_unit_size 1073741824 is larger than iobuf pool large buffer size 135168"
        );
        let mut o = TransportOpts::defaults_for("RDMA");
        o.in_capsule_data_size = 1 << 20;
        let t = RdmaTransport::new(o).unwrap();
        assert_eq!(t.opts().in_capsule_data_size, 131_072);
        assert_eq!(t.ropts.recv_size(), 131_072 + 64);
    }

    #[test]
    fn listen_rejects_bad_addresses_before_touching_rdma() {
        let mut t = transport(json!({})).unwrap();
        let mut a = ListenAddr::tcp("not-an-ip", "4420");
        a.trtype = "RDMA".into();
        assert_eq!(t.listen(&a).unwrap_err().errno(), -22);
        let mut a = ListenAddr::tcp("::1", "4420");
        a.trtype = "RDMA".into();
        assert_eq!(
            t.listen(&a).unwrap_err().errno(),
            -22,
            "IPv6 address with adrfam IPv4"
        );
        assert!(t.chan.is_none());
        assert_eq!(t.stop_listen(&a).unwrap_err().errno(), -19);
    }

    #[test]
    fn discovery_entry_names_rc_qp_no_provider_and_rdma_cm() {
        let t = transport(json!({})).unwrap();
        let mut a = ListenAddr::tcp("10.0.0.1", "4420");
        a.trtype = "RDMA".into();
        let d = t.listener_discover(&a);
        assert_eq!(d.trtype, TrType::RDMA);
        assert_eq!(d.adrfam, 1);
        assert_eq!(
            (d.traddr.as_str(), d.trsvcid.as_str()),
            ("10.0.0.1", "4420")
        );
        assert_eq!(&d.tsas[..4], &[1, 1, 1, 0]);
    }
}
