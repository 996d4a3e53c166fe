//! Sans-IO NVMe/TCP connection state machine of the target (SPDK `nvmf_tcp_sock_process`,
//! `nvmf_tcp_req_process`).
//!
//! Feed received bytes with [`TcpConnection::receive`]; take commands ready for the target
//! core with [`TcpConnection::take_request`]; give completions back with
//! [`TcpConnection::send_response`]; write what [`TcpConnection::out_queue`] holds to the
//! socket ([`OutQueue::write_to`]). No I/O happens here. C2HData payloads stay in the
//! response's data buffers until written (no copy into a staging buffer).
//!
//! ```text
//!  AwaitIcReq --ICReq--> Running --fatal error--> Terminating (C2HTermReq queued, close)
//!                          \--H2CTermReq--> Terminating (nothing sent, close)
//! ```
//!
//! Limits enforced per connection: the queue size from the Connect command (SQSIZE + 1
//! commands outstanding; one more is a PDU sequence error), in-capsule data (8 KiB on the
//! admin queue, the transport's ICD on I/O queues), `max_io_size` per command, MAXH2CDATA per
//! H2CData PDU and the R2T window. Writes get their data buffer from the env iobuf pool before
//! the R2T goes out; when the pool is empty they wait ([`TcpConnection::retry_buffers`]).

use crate::error::TcpError;
use crate::outbound::OutQueue;
use crate::request::TcpRequestState;
use nvme::spec::sgl::{Sgl, SglDescriptor};
use nvme::spec::tcp::digest::DigestState;
use nvme::spec::tcp::pdu::{C2hData, CapsuleResp, IcResp, MAXH2CDATA_MIN, R2t, TermReq, offset};
use nvme::spec::tcp::{
    Decoded, DecoderConfig, Fes, Negotiated, PduDecoder, PduEncoder, PduEnd, PduHeader, PduType,
    Role,
};
use nvme::spec::{GenericStatus, Sqe, Status};
use nvmf::request::{DataBuf, IoVec, Request, Response};
use std::collections::{HashMap, VecDeque};

/// Largest data of one C2HData PDU the target sends (SPDK `NVMF_TCP_PDU_MAX_C2H_DATA_SIZE`).
pub const MAX_C2H_DATA: u32 = 131_072;
/// In-capsule data admin and fabrics commands may always carry (NVMe/TCP 1.0, 3.3.2.2).
pub const ADMIN_IN_CAPSULE_DATA: u32 = 8192;

/// In-capsule data reserved when a capsule header arrives; larger data grows the buffer as it
/// is received.
const CAPSULE_RESERVE: usize = 16 * 1024;

/// Per-connection limits, from the transport options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtoConfig {
    /// In-capsule data size (IOCCSZ).
    pub in_capsule_data_size: u32,
    /// Largest transfer of one command.
    pub max_io_size: u32,
    /// MAXH2CDATA announced in the ICResp.
    pub maxh2cdata: u32,
    /// Send the completion of successful reads as the SUCCESS flag of the last C2HData.
    pub c2h_success: bool,
    /// Most commands that may wait for H2C data at once (the queue depth).
    pub max_queue_depth: u16,
}

impl Default for ProtoConfig {
    fn default() -> Self {
        ProtoConfig {
            in_capsule_data_size: 4096,
            max_io_size: 131_072,
            maxh2cdata: 131_072,
            c2h_success: true,
            max_queue_depth: 128,
        }
    }
}

/// Connection phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Waiting for the ICReq.
    AwaitIcReq,
    /// IC exchange done; commands flow.
    Running,
    /// A fatal error happened: flush [`TcpConnection::outbound`] then close.
    Terminating,
}

/// A command the host is still sending data for (R2T outstanding).
#[derive(Debug)]
struct Pending {
    sqe: Sqe,
    ttag: u16,
    state: TcpRequestState,
    /// Where the data goes; `None` while the command waits for a buffer (no R2T sent yet).
    buf: Option<DataBuf>,
    /// Transfer length (the SGL length).
    len: u32,
    /// Next expected data offset.
    received: u32,
    /// End of the range asked for by the last R2T.
    r2t_end: u32,
    digest_error: bool,
}

/// What the PDU being received is for.
#[derive(Debug)]
enum Incoming {
    None,
    Ic,
    Capsule { sqe: Sqe, data: Vec<u8> },
    H2c { cid: u16 },
    TermReq { fes: u16 },
}

/// The NVMe/TCP protocol engine of one connection.
#[derive(Debug)]
pub struct TcpConnection {
    cfg: ProtoConfig,
    decoder: PduDecoder,
    encoder: PduEncoder,
    state: ConnState,
    incoming: Incoming,
    pending: HashMap<u16, Pending>,
    next_ttag: u16,
    ready: VecDeque<Request>,
    out: OutQueue,
    /// Bytes handed out gathered by [`TcpConnection::outbound`]; they go before `out`.
    flat: Vec<u8>,
    error: Option<TcpError>,
    /// Queue ID from the Connect command (0 until then: admin limits apply).
    qid: u16,
    /// Most commands the host may have outstanding: SQSIZE + 1 from the Connect command,
    /// the transport's queue depth before it.
    queue_limit: u32,
    /// Commands received whose completion has not been encoded yet.
    inflight: u32,
    /// A Connect command was seen (later ones do not change the queue limits).
    connected: bool,
    /// Commands waiting for a data buffer before their R2T, oldest first.
    buf_waiters: VecDeque<u16>,
}

/// Memory for one command's host-to-controller data: env iobuf large buffers (a bounded
/// pool; a command that cannot get all it needs waits, like SPDK's requests waiting for
/// buffers). A transfer longer than one large buffer spans several (at most
/// `max_io_size / large_bufsize` rounded up, which the transport's size checks keep at 17).
/// Only when the pools cannot be created at all does the data go on the heap; its length is
/// still bounded by `max_io_size`.
fn alloc_data(len: u32) -> Option<DataBuf> {
    let n = len as usize;
    let pool = match env::iobuf::iobuf_initialize() {
        Ok(p) => p,
        Err(e) => {
            // Logged once: every write would fail the same way.
            static LOGGED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if !LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(error = %e, len, "no iobuf pool: H2C data on the heap");
            }
            return Some(DataBuf::from_vec(vec![0; n]));
        }
    };
    let unit = (pool.opts().large_bufsize as usize).max(1);
    let mut data = DataBuf::new();
    let mut left = n;
    while left > 0 {
        let take = left.min(unit);
        // Buffers taken so far go back to the pool when `data` is dropped.
        let b = env::iobuf_get(take)?;
        match IoVec::new(b, 0, take) {
            Ok(v) => data.push(v),
            // Unreachable: the pool gave a buffer of at least `take` bytes.
            Err(e) => {
                tracing::error!(error = %e, take, "iobuf window");
                return None;
            }
        }
        left -= take;
    }
    Some(data)
}

/// Data transfer direction of a command (opcode bits 1:0, fabrics: FCTYPE bits 1:0).
fn xfer_dir(sqe: &Sqe) -> u8 {
    if sqe.is_fabrics() {
        sqe.fctype().0 & 3
    } else {
        sqe.opc & 3
    }
}

impl TcpConnection {
    /// A new connection waiting for its ICReq.
    pub fn new(cfg: ProtoConfig) -> TcpConnection {
        let dcfg = DecoderConfig {
            role: Role::Controller,
            max_capsule_data: cfg.in_capsule_data_size.max(ADMIN_IN_CAPSULE_DATA),
            max_data_pdu: cfg.maxh2cdata.max(MAXH2CDATA_MIN),
        };
        TcpConnection {
            cfg,
            decoder: PduDecoder::new(dcfg),
            encoder: PduEncoder::new(),
            state: ConnState::AwaitIcReq,
            incoming: Incoming::None,
            pending: HashMap::new(),
            next_ttag: 1,
            ready: VecDeque::new(),
            out: OutQueue::new(),
            flat: Vec::new(),
            error: None,
            qid: 0,
            queue_limit: u32::from(cfg.max_queue_depth),
            inflight: 0,
            connected: false,
            buf_waiters: VecDeque::new(),
        }
    }

    /// Gives data buffers to commands waiting for one, oldest first, and sends their R2Ts;
    /// stops at the first that still cannot get one. The poll group calls it on every poll.
    /// Returns true if a buffer was handed out.
    pub fn retry_buffers(&mut self) -> bool {
        if self.state == ConnState::Terminating {
            return false;
        }
        let mut progress = false;
        while let Some(&cid) = self.buf_waiters.front() {
            let Some(len) = self.pending.get(&cid).map(|p| p.len) else {
                self.buf_waiters.pop_front();
                continue;
            };
            let Some(mem) = alloc_data(len) else {
                break;
            };
            self.buf_waiters.pop_front();
            if let Some(p) = self.pending.get_mut(&cid) {
                p.buf = Some(mem);
                p.state = TcpRequestState::TransferringHostToController;
            }
            self.send_r2t(cid);
            progress = true;
        }
        progress
    }

    /// Commands waiting for a data buffer.
    pub fn waiting_for_buffers(&self) -> usize {
        self.buf_waiters.len()
    }

    /// Queue ID given by the host's Connect command (0 before it).
    pub fn qid(&self) -> u16 {
        self.qid
    }

    /// Commands received whose completion has not been sent yet.
    pub fn inflight(&self) -> u32 {
        self.inflight
    }

    /// Current phase.
    pub fn state(&self) -> ConnState {
        self.state
    }

    /// The fatal error that ended the connection, if any.
    pub fn error(&self) -> Option<&TcpError> {
        self.error.as_ref()
    }

    /// What to write to the socket, data buffers included; write it with
    /// [`OutQueue::write_to`].
    pub fn out_queue(&mut self) -> &mut OutQueue {
        if !self.flat.is_empty() {
            self.out.prepend_bytes(&self.flat);
            self.flat.clear();
        }
        &mut self.out
    }

    /// Everything queued for the socket gathered into one buffer the caller drains (copies
    /// the data; for tests and fuzzing, the poll group uses [`TcpConnection::out_queue`]).
    /// Bytes left in it are sent before anything queued later.
    pub fn outbound(&mut self) -> &mut Vec<u8> {
        if !self.out.is_empty() {
            let v = self.out.to_vec();
            self.flat.extend_from_slice(&v);
        }
        self.out.clear();
        &mut self.flat
    }

    /// Queues a PDU without data.
    fn push_pdu(&mut self, h: &PduHeader) -> Result<(), nvme::Error> {
        let hdr = self.encoder.header(h, 0)?;
        self.out.push_bytes(hdr.as_bytes());
        Ok(())
    }

    /// Next command fully received (with its data), for `Qpair::handle_request`.
    pub fn take_request(&mut self) -> Option<Request> {
        self.ready.pop_front()
    }

    /// Commands still receiving data from the host.
    pub fn transfers_in_progress(&self) -> usize {
        self.pending.len()
    }

    /// Consumes received bytes. Returns how many were consumed (all of them unless the
    /// connection is terminating). After a fatal error the C2HTermReq is in
    /// [`TcpConnection::outbound`] and [`TcpConnection::state`] is `Terminating`.
    pub fn receive(&mut self, mut input: &[u8]) -> usize {
        let total = input.len();
        // Events may follow without more input (End after a header without data), so
        // decode until the decoder asks for more bytes.
        while self.state != ConnState::Terminating {
            match self.decoder.decode(input) {
                Ok((n, ev)) => {
                    input = input.get(n..).unwrap_or_default();
                    let Some(ev) = ev else { break };
                    if let Err(e) = self.on_event(ev) {
                        self.fail(e);
                    }
                }
                Err(e) => {
                    let (fes, fei) = e.term_req().unwrap_or((Fes::INVALID_HEADER_FIELD, 0));
                    let err = TcpError::protocol(fes, fei, e.to_string());
                    self.fail(err);
                }
            }
        }
        total - input.len()
    }

    fn fail(&mut self, e: TcpError) {
        tracing::error!(error = %e, "NVMe/TCP connection failed");
        if let TcpError::Protocol { fes, fei, .. } = &e {
            let hdr = self.decoder.received_header().to_vec();
            let t = TermReq::new(PduType::C2H_TERM_REQ, Fes(*fes), *fei);
            // TermReqs are sent without digests.
            let mut pdu = Vec::new();
            match PduEncoder::new().encode(&PduHeader::C2hTermReq(t), &hdr, &mut pdu) {
                Ok(()) => self.out.push_bytes(&pdu),
                Err(err) => tracing::error!(error = %err, "cannot encode C2HTermReq"),
            }
        }
        self.state = ConnState::Terminating;
        self.error = Some(e);
    }

    fn on_event(&mut self, ev: Decoded<'_>) -> Result<(), TcpError> {
        match ev {
            Decoded::Header { header, data_len } => self.on_header(header, data_len),
            Decoded::Data(chunk) => {
                match &mut self.incoming {
                    Incoming::Capsule { data, .. } => data.extend_from_slice(chunk),
                    Incoming::H2c { cid } => {
                        if let Some(p) = self.pending.get_mut(cid) {
                            let at = p.received as usize;
                            if let Some(b) = p.buf.as_mut() {
                                b.copy_from_slice_at(at, chunk);
                            }
                            p.received += chunk.len() as u32;
                        }
                    }
                    _ => {}
                }
                Ok(())
            }
            Decoded::End(end) => self.on_end(end),
        }
    }

    fn on_header(&mut self, header: PduHeader, data_len: u32) -> Result<(), TcpError> {
        match header {
            PduHeader::IcReq(r) => {
                let hdgst = r.dgst & nvme::spec::tcp::pdu::DGST_HDGST_ENABLE != 0;
                let ddgst = r.dgst & nvme::spec::tcp::pdu::DGST_DDGST_ENABLE != 0;
                let resp = IcResp::new(0, hdgst, ddgst, self.cfg.maxh2cdata);
                self.push_pdu(&PduHeader::IcResp(resp))
                    .map_err(|e| TcpError::protocol(Fes::INVALID_HEADER_FIELD, 0, e.to_string()))?;
                self.decoder.set_negotiated(Negotiated {
                    hdgst,
                    ddgst,
                    rx_pda: 0,
                });
                self.encoder.set_negotiated(Negotiated {
                    hdgst,
                    ddgst,
                    rx_pda: r.hpda,
                });
                tracing::debug!(hdgst, ddgst, hpda = r.hpda, "NVMe/TCP ICReq accepted");
                self.state = ConnState::Running;
                self.incoming = Incoming::Ic;
                Ok(())
            }
            PduHeader::H2cTermReq(t) => {
                tracing::warn!(fes = t.fes.get(), fei = t.fei.get(), "H2CTermReq received");
                self.incoming = Incoming::TermReq { fes: t.fes.get() };
                Ok(())
            }
            PduHeader::CapsuleCmd(c) => {
                // The decoder bounded data_len by the in-capsule data size; still reserve
                // at most CAPSULE_RESERVE up front and grow as bytes arrive, so a header
                // alone never costs more than that.
                self.incoming = Incoming::Capsule {
                    sqe: c.sqe,
                    data: Vec::with_capacity((data_len as usize).min(CAPSULE_RESERVE)),
                };
                Ok(())
            }
            PduHeader::H2cData(h) => {
                let cid = h.cccid.get();
                let ttag = h.ttag.get();
                let datao = h.datao.get();
                let datal = h.datal.get();
                let Some(p) = self.pending.get(&cid).filter(|p| p.ttag == ttag) else {
                    return Err(TcpError::protocol(
                        Fes::INVALID_HEADER_FIELD,
                        offset::TTAG,
                        format!("H2CData for unknown transfer tag {ttag} (cid {cid})"),
                    ));
                };
                if datao != p.received {
                    return Err(TcpError::protocol(
                        Fes::DATA_TRANSFER_OUT_OF_RANGE,
                        offset::DATAO,
                        format!("H2CData offset {datao}, expected {}", p.received),
                    ));
                }
                if datal != data_len || datao.saturating_add(datal) > p.r2t_end {
                    return Err(TcpError::protocol(
                        Fes::DATA_TRANSFER_OUT_OF_RANGE,
                        offset::DATAL,
                        format!("H2CData length {datal} beyond the requested range"),
                    ));
                }
                self.incoming = Incoming::H2c { cid };
                Ok(())
            }
            other => Err(TcpError::protocol(
                Fes::INVALID_HEADER_FIELD,
                0,
                format!("unexpected PDU type {:#x}", other.pdu_type().0),
            )),
        }
    }

    fn on_end(&mut self, end: PduEnd) -> Result<(), TcpError> {
        let incoming = std::mem::replace(&mut self.incoming, Incoming::None);
        match incoming {
            Incoming::None | Incoming::Ic => Ok(()),
            Incoming::TermReq { fes } => {
                self.state = ConnState::Terminating;
                self.error = Some(TcpError::HostTerminated(fes));
                Ok(())
            }
            Incoming::Capsule { sqe, data } => self.on_capsule(sqe, data, end),
            Incoming::H2c { cid } => {
                let done = match self.pending.get_mut(&cid) {
                    Some(p) => {
                        if end != PduEnd::Ok {
                            p.digest_error = true;
                        }
                        p.received == p.len
                    }
                    None => false,
                };
                if done {
                    if let Some(p) = self.pending.remove(&cid) {
                        if p.digest_error {
                            self.respond_status(
                                cid,
                                GenericStatus::TRANSIENT_TRANSPORT_ERROR.into(),
                            );
                        } else {
                            self.ready
                                .push_back(Request::with_data(p.sqe, p.buf.unwrap_or_default()));
                        }
                    }
                } else if self
                    .pending
                    .get(&cid)
                    .is_some_and(|p| p.received == p.r2t_end)
                {
                    self.send_r2t(cid);
                }
                Ok(())
            }
        }
    }

    fn on_capsule(&mut self, sqe: Sqe, data: Vec<u8>, end: PduEnd) -> Result<(), TcpError> {
        let cid = sqe.cid();
        if self.inflight >= self.queue_limit {
            return Err(TcpError::protocol(
                Fes::PDU_SEQUENCE_ERROR,
                0,
                format!(
                    "command {cid} beyond the queue size: {} commands outstanding",
                    self.inflight
                ),
            ));
        }
        // Every capsule from here on is answered exactly once (send_response).
        self.inflight += 1;
        if !self.connected
            && sqe.is_fabrics()
            && sqe.fctype() == nvme::spec::FabricsCommandType::CONNECT
        {
            let c = nvme::spec::fabrics::ConnectCmd::from_sqe(&sqe);
            self.connected = true;
            self.qid = c.qid.get();
            self.queue_limit = u32::from(c.sqsize.get()) + 1;
        }
        if end != PduEnd::Ok {
            tracing::error!(cid, "data digest error in a command capsule");
            self.respond_status(cid, GenericStatus::TRANSIENT_TRANSPORT_ERROR.into());
            return Ok(());
        }
        if self.pending.contains_key(&cid) {
            tracing::error!(cid, "command ID already waiting for H2C data");
            self.respond_status(cid, GenericStatus::CID_CONFLICT.into());
            return Ok(());
        }
        // I/O queues take at most the transport's in-capsule data size; admin and fabrics
        // commands up to 8 KiB (NVMe/TCP 1.0, 3.3.2.2).
        let icd_max = if self.qid == 0 {
            self.cfg.in_capsule_data_size.max(ADMIN_IN_CAPSULE_DATA)
        } else {
            self.cfg.in_capsule_data_size
        };
        if data.len() > icd_max as usize {
            tracing::error!(
                cid,
                len = data.len(),
                max = icd_max,
                "in-capsule data too long"
            );
            self.respond_status(cid, GenericStatus::DATA_SGL_LENGTH_INVALID.into());
            return Ok(());
        }
        let dir = xfer_dir(&sqe);
        let sgl: SglDescriptor = *sqe.sgl();
        match sgl.decode() {
            Ok(Sgl::DataBlockOffset { offset, length }) => {
                if offset != 0 || length as usize != data.len() || dir != 1 {
                    tracing::error!(cid, offset, length, got = data.len(), "bad in-capsule SGL");
                    self.respond_status(cid, GenericStatus::DATA_SGL_LENGTH_INVALID.into());
                    return Ok(());
                }
                self.ready
                    .push_back(Request::with_data(sqe, DataBuf::from_vec(data)));
            }
            Ok(Sgl::TransportDataBlock { length }) => {
                if !data.is_empty() {
                    self.respond_status(cid, GenericStatus::INVALID_FIELD.into());
                    return Ok(());
                }
                if length > self.cfg.max_io_size {
                    tracing::error!(cid, length, "transfer longer than max_io_size");
                    self.respond_status(cid, GenericStatus::DATA_SGL_LENGTH_INVALID.into());
                    return Ok(());
                }
                if dir == 1 && length > 0 {
                    let ttag = self.next_ttag;
                    self.next_ttag = self.next_ttag.wrapping_add(1).max(1);
                    self.pending.insert(
                        cid,
                        Pending {
                            sqe,
                            ttag,
                            state: TcpRequestState::AwaitingBuffer,
                            buf: None,
                            len: length,
                            received: 0,
                            r2t_end: 0,
                            digest_error: false,
                        },
                    );
                    self.buf_waiters.push_back(cid);
                    self.retry_buffers();
                } else {
                    self.ready.push_back(Request::new(sqe, length));
                }
            }
            Ok(Sgl::DataBlock { length: 0, .. }) => {
                self.ready.push_back(Request::new(sqe, 0));
            }
            Ok(other) => {
                tracing::error!(cid, ?other, "SGL type not supported on TCP");
                self.respond_status(cid, GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID.into());
            }
            Err(e) => {
                tracing::error!(cid, error = %e, "invalid SGL");
                self.respond_status(cid, GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID.into());
            }
        }
        Ok(())
    }

    fn send_r2t(&mut self, cid: u16) {
        let Some(p) = self.pending.get_mut(&cid) else {
            return;
        };
        let len = p.len;
        let r2tl = (len - p.received).min(self.cfg.maxh2cdata);
        let r2t = R2t::new(cid, p.ttag, p.received, r2tl);
        p.r2t_end = p.received + r2tl;
        debug_assert_eq!(p.state, TcpRequestState::TransferringHostToController);
        if let Err(e) = self.push_pdu(&PduHeader::R2t(r2t)) {
            tracing::error!(error = %e, "cannot encode R2T");
        }
    }

    fn respond_status(&mut self, cid: u16, status: Status) {
        self.send_response(Response::status(cid, status));
    }

    /// Encodes a completion: C2HData PDUs for its data, then a CapsuleResp unless
    /// `c2h_success` let the last C2HData carry the SUCCESS flag.
    pub fn send_response(&mut self, rsp: Response) {
        self.inflight = self.inflight.saturating_sub(1);
        if self.state == ConnState::Terminating {
            return;
        }
        let cid = rsp.cqe.cid();
        let success = rsp.cqe.status().is_success();
        let mut skip_resp = false;
        if let Some(data) = rsp.data.filter(|d| d.total_len() > 0) {
            // The data is not copied: the queue keeps the buffer and writes its segments
            // between the PDU headers (and digests, computed over the segments here).
            let total = data.total_len();
            let ddgst = self.encoder.data_digest_len(PduType::C2H_DATA, 1) > 0;
            let mut push = self.out.push_data(data);
            let mut off = 0usize;
            while off < total {
                let n = (total - off).min(MAX_C2H_DATA as usize);
                let last = off + n == total;
                let succ = last && success && self.cfg.c2h_success;
                let h = C2hData::new(cid, off as u32, n as u32, last, succ);
                match self.encoder.header(&PduHeader::C2hData(h), n as u32) {
                    Ok(hdr) => push.bytes(hdr.as_bytes()),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode C2HData");
                        break;
                    }
                }
                let mut digest = DigestState::new();
                push.range(off, n, ddgst.then_some(&mut digest));
                if ddgst {
                    push.bytes(&digest.finish());
                }
                off += n;
                skip_resp = succ;
            }
        }
        if !skip_resp {
            let r = CapsuleResp::new(rsp.cqe);
            if let Err(e) = self.push_pdu(&PduHeader::CapsuleResp(r)) {
                tracing::error!(error = %e, "cannot encode CapsuleResp");
            }
        }
    }
}

#[cfg(test)]
mod tests;
