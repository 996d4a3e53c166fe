//! The TCP transport: non-blocking listeners and the acceptor (SPDK `nvmf_tcp_listen`,
//! `nvmf_tcp_accept`).

use crate::poll_group::TcpPollGroup;
use crate::proto::ProtoConfig;
use nvmf::NvmfError;
use nvmf::transport::{
    DiscoverInfo, ListenAddr, PollGroupBuilder, TrType, Transport, TransportOpts,
};
use serde_json::{Map, Value};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// TCP-specific options SPDK accepts in `nvmf_create_transport`.
const KNOWN_OPTIONS: &[&str] = &["c2h_success", "sock_priority", "control_msg_num"];

/// An accepted socket on its way to a poll group.
#[derive(Debug)]
pub struct TcpConn {
    /// The socket (non-blocking).
    pub stream: TcpStream,
    /// The listener it came in on.
    pub addr: ListenAddr,
    /// Protocol limits for this connection.
    pub cfg: ProtoConfig,
}

/// The NVMe/TCP transport.
#[derive(Debug)]
pub struct TcpTransport {
    opts: TransportOpts,
    cfg: ProtoConfig,
    sock_priority: i64,
    listeners: Vec<(ListenAddr, TcpListener)>,
}

fn bool_opt(opts: &TransportOpts, k: &str, default: bool) -> Result<bool, NvmfError> {
    match opts.specific.get(k) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(NvmfError::InvalidParam(format!(
            "{k} must be a boolean, got {v}"
        ))),
    }
}

impl TcpTransport {
    /// Builds the transport from validated common options, checking the TCP-specific ones.
    pub fn new(opts: TransportOpts) -> Result<TcpTransport, NvmfError> {
        for k in opts.specific.keys() {
            match nvmf::transport::classify_specific_option(k, KNOWN_OPTIONS) {
                Ok(true) => {}
                Ok(false) => tracing::debug!(option = %k, "ignoring another transport's option"),
                Err(k) => {
                    return Err(NvmfError::InvalidParam(format!(
                        "unknown TCP transport option {k}"
                    )));
                }
            }
        }
        let c2h_success = bool_opt(&opts, "c2h_success", true)?;
        let sock_priority = match opts.specific.get("sock_priority") {
            None => 0,
            Some(v) => v.as_i64().filter(|p| (0..=6).contains(p)).ok_or_else(|| {
                NvmfError::InvalidParam(format!("sock_priority must be 0..=6, got {v}"))
            })?,
        };
        let cfg = ProtoConfig {
            in_capsule_data_size: opts.in_capsule_data_size,
            max_io_size: opts.max_io_size,
            maxh2cdata: opts.max_io_size.clamp(4096, 131_072),
            c2h_success,
            max_queue_depth: opts.max_queue_depth,
        };
        Ok(TcpTransport {
            opts,
            cfg,
            sock_priority,
            listeners: Vec::new(),
        })
    }

    /// The local address of a listener (useful with port "0").
    pub fn local_addr(&self, addr: &ListenAddr) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(a, _)| a.same_as(addr))
            .and_then(|(_, l)| l.local_addr().ok())
    }
}

impl Transport for TcpTransport {
    type PollGroup = TcpPollGroup;
    type Connection = TcpConn;

    fn name(&self) -> &str {
        "TCP"
    }
    fn trtype(&self) -> TrType {
        TrType::TCP
    }
    fn opts(&self) -> &TransportOpts {
        &self.opts
    }
    fn listen(&mut self, addr: &ListenAddr) -> Result<(), NvmfError> {
        if self.listeners.iter().any(|(a, _)| a.same_as(addr)) {
            return Ok(());
        }
        let sa = addr.socket_addr()?;
        let l = TcpListener::bind(sa)?;
        l.set_nonblocking(true)?;
        tracing::info!(%addr, "NVMe/TCP target listening");
        self.listeners.push((addr.clone(), l));
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
    fn accept(&mut self) -> Option<TcpConn> {
        for (addr, l) in &self.listeners {
            match l.accept() {
                Ok((stream, peer)) => {
                    if let Err(e) = stream
                        .set_nonblocking(true)
                        .and_then(|()| stream.set_nodelay(true))
                    {
                        tracing::error!(error = %e, %peer, "cannot configure accepted socket");
                        continue;
                    }
                    tracing::info!(%peer, listener = %addr, "NVMe/TCP connection accepted");
                    return Some(TcpConn {
                        stream,
                        addr: addr.clone(),
                        cfg: self.cfg,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => tracing::error!(error = %e, listener = %addr, "accept failed"),
            }
        }
        None
    }
    fn poll_group_builder(&self) -> PollGroupBuilder<TcpPollGroup> {
        Box::new(|| Ok(TcpPollGroup::new()))
    }
    fn dump_opts_json(&self, out: &mut Map<String, Value>) {
        out.insert("c2h_success".into(), Value::Bool(self.cfg.c2h_success));
        out.insert("sock_priority".into(), Value::from(self.sock_priority));
    }
    fn listener_discover(&self, addr: &ListenAddr) -> DiscoverInfo {
        DiscoverInfo {
            trtype: TrType::TCP,
            adrfam: addr.adrfam.wire(),
            treq: 0,
            traddr: addr.traddr.clone(),
            trsvcid: addr.trsvcid.clone(),
            tsas: [0; 256],
        }
    }
}
