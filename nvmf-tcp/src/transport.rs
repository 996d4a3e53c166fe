//! The TCP transport: non-blocking listeners and the acceptor (SPDK `nvmf_tcp_listen`,
//! `nvmf_tcp_accept`).
//!
//! Sockets get the options of the default socket implementation ([`env::sock`], set by the
//! `sock_impl_set_options` RPC) that map to Linux socket options, as SPDK's posix sock module
//! does: SO_RCVBUF/SO_SNDBUF when non-zero (on the listener before `listen`, so accepted
//! sockets start with them and the TCP window scale fits, and again on each accepted socket),
//! TCP_QUICKACK when `enable_quickack`, and SO_PRIORITY from the transport's `sock_priority`
//! (not inherited by accepted sockets). TCP_NODELAY is always set. The options that are not
//! socket options are not applied: `enable_recv_pipe` (user-space receive buffering; the poll
//! group reads into its own 64 KiB buffer), `enable_zerocopy_send_server` (MSG_ZEROCOPY; SPDK
//! itself skips it on loopback), `enable_placement_id`, and the TLS ones.

use crate::poll_group::TcpPollGroup;
use crate::proto::ProtoConfig;
use env::sock::SockImplOpts;
use nvmf::NvmfError;
use nvmf::transport::{
    DiscoverInfo, ListenAddr, PollGroupBuilder, TrType, Transport, TransportOpts,
};
use serde_json::{Map, Value};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Highest `sock_priority` (SPDK `SPDK_NVMF_TCP_DEFAULT_MAX_SOCK_PRIORITY`); Linux needs
/// CAP_NET_ADMIN for SO_PRIORITY above 6, so such a socket may fail to configure.
const MAX_SOCK_PRIORITY: i64 = 16;

/// Listen backlog (SPDK's posix `listen(fd, 512)`).
const LISTEN_BACKLOG: i32 = 512;

/// Sets SO_RCVBUF and SO_SNDBUF from `opts` (those that are non-zero). Linux doubles the
/// value it stores and caps it at `net.core.rmem_max`/`wmem_max`.
pub fn apply_buffer_sizes(sock: &SockRef<'_>, opts: &SockImplOpts) -> std::io::Result<()> {
    if opts.recv_buf_size > 0 {
        sock.set_recv_buffer_size(opts.recv_buf_size as usize)?;
    }
    if opts.send_buf_size > 0 {
        sock.set_send_buffer_size(opts.send_buf_size as usize)?;
    }
    Ok(())
}

/// Configures an accepted NVMe/TCP socket: non-blocking, TCP_NODELAY, the buffer sizes of
/// `opts`, TCP_QUICKACK if `opts.enable_quickack`, and SO_PRIORITY when `priority` is not 0.
pub fn configure_accepted(
    stream: &TcpStream,
    opts: &SockImplOpts,
    priority: u32,
) -> std::io::Result<()> {
    stream.set_nonblocking(true)?;
    stream.set_nodelay(true)?;
    let sock = SockRef::from(stream);
    apply_buffer_sizes(&sock, opts)?;
    if opts.enable_quickack {
        sock.set_tcp_quickack(true)?;
    }
    if priority != 0 {
        sock.set_priority(priority)?;
    }
    Ok(())
}

/// A non-blocking listener on `sa` with SO_REUSEADDR and the buffer sizes of `opts` set before
/// `listen`.
fn bind_listener(sa: SocketAddr, opts: &SockImplOpts) -> std::io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(sa), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    apply_buffer_sizes(&SockRef::from(&sock), opts)?;
    sock.bind(&sa.into())?;
    sock.listen(LISTEN_BACKLOG)?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

/// Most data buffers (SGL entries) one command's data may span (SPDK
/// `SPDK_NVMF_MAX_SGL_ENTRIES`): `max_io_size / io_unit_size` must not exceed it.
pub const MAX_SGL_ENTRIES: u32 = 16;

/// Smallest `max_io_size` (8 KiB, checked by SPDK `nvmf_transport_create`).
pub const MIN_MAX_IO_SIZE: u32 = nvmf::transport::MIN_MAX_IO_SIZE;

/// Bounds the size options as SPDK does before a TCP transport exists (`nvmf_transport_create`
/// then `nvmf_tcp_create`), so that no PDU makes the target allocate more than these limits:
/// `max_io_size` a power of 2 of at least 8 KiB; `io_unit_size` at most `large_bufsize` (the
/// env iobuf pool's large buffer size, where write data lives) and clamped to `max_io_size`;
/// `in_capsule_data_size` clamped to `max_io_size`; and one command's data at most
/// [`MAX_SGL_ENTRIES`] I/O units. Refusals are logged with SPDK's message and returned as
/// [`NvmfError::InvalidParam`] with the same text; clamps are logged as warnings.
pub fn check_size_limits(opts: &mut TransportOpts, large_bufsize: u32) -> Result<(), NvmfError> {
    let refuse = |msg: String| {
        tracing::error!("{msg}");
        Err(NvmfError::InvalidParam(msg))
    };
    if let Err(msg) =
        nvmf::transport::check_io_sizes(opts.max_io_size, opts.io_unit_size, large_bufsize)
    {
        return refuse(msg);
    }
    if opts.io_unit_size > opts.max_io_size {
        tracing::warn!(
            "TCP param io_unit_size {} can't be larger than max_io_size {}. Using max_io_size as io_unit_size",
            opts.io_unit_size,
            opts.max_io_size
        );
        opts.io_unit_size = opts.max_io_size;
    }
    if opts.in_capsule_data_size > opts.max_io_size {
        tracing::warn!(
            "TCP param ICD size {} can't be larger than max_io_size {}. Using max_io_size as ICD size",
            opts.in_capsule_data_size,
            opts.max_io_size
        );
        opts.in_capsule_data_size = opts.max_io_size;
    }
    if opts.max_io_size / opts.io_unit_size > MAX_SGL_ENTRIES {
        return refuse(format!(
            "Unsupported IO Unit size specified, {} bytes",
            opts.io_unit_size
        ));
    }
    Ok(())
}

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
    /// When an accept error was last logged and how many were not logged since: out of file
    /// descriptors, every acceptor poll fails the same way (one line a second, not 100).
    accept_errors: (Option<std::time::Instant>, u64),
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
    /// Builds the transport from validated common options, checking the TCP-specific ones
    /// and the size limits of [`check_size_limits`] (against the env iobuf pool's
    /// `large_bufsize`).
    pub fn new(mut opts: TransportOpts) -> Result<TcpTransport, NvmfError> {
        check_size_limits(&mut opts, env::iobuf::iobuf_get_options().large_bufsize)?;
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
            // SPDK_NVMF_TCP_DEFAULT_MAX_SOCK_PRIORITY.
            Some(v) => v
                .as_i64()
                .filter(|p| (0..=MAX_SOCK_PRIORITY).contains(p))
                .ok_or_else(|| {
                    NvmfError::InvalidParam(format!(
                        "sock_priority must be 0..={MAX_SOCK_PRIORITY}, got {v}"
                    ))
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
            accept_errors: (None, 0),
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
        let l = bind_listener(sa, &env::sock::default_sock_opts())?;
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
                    let opts = env::sock::default_sock_opts();
                    // sock_priority was checked to be 0..=6 when the transport was created.
                    let priority = u32::try_from(self.sock_priority).unwrap_or(0);
                    if let Err(e) = configure_accepted(&stream, &opts, priority) {
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
                Err(e) => {
                    let now = std::time::Instant::now();
                    let (last, unlogged) = &mut self.accept_errors;
                    if last.is_none_or(|t| now.duration_since(t).as_secs() >= 1) {
                        tracing::error!(error = %e, listener = %addr, repeated = *unlogged, "accept failed");
                        *last = Some(now);
                        *unlogged = 0;
                    } else {
                        *unlogged += 1;
                    }
                }
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
