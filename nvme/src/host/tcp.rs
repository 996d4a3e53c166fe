//! NVMe/TCP host transport (SPDK `lib/nvme/nvme_tcp.c`).
//!
//! [`TcpProto`] is the sans-IO core of one host queue pair: [`TcpProto::handle_bytes`] takes
//! what the socket delivered, [`TcpProto::poll_transmit`] / [`TcpProto::advance_transmit`]
//! give what to send, [`TcpProto::submit`] queues a command and [`TcpProto::take_completions`]
//! hands back finished ones. [`TcpQpair`] glues it to a non-blocking `TcpStream`; the
//! framing itself is `nvme::spec::tcp` (shared with the target).
//!
//! ```text
//! submit(sqe, payload) --> CapsuleCmd [+ in-capsule data] --> tx
//! rx --> ICResp | CapsuleResp | C2HData (copied into the command's buffer) | R2T (-> H2CData) | C2HTermReq
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use super::transport::{Payload, QpairParams, RawCompletion, Transport, TransportQpair};
use super::{HostError, TransportId};
use crate::spec::cqe::Cqe;
use crate::spec::sgl::Sgl;
use crate::spec::sqe::{Psdt, Sqe};
use crate::spec::status::{GenericStatus, Status};
use crate::spec::tcp::pdu::{
    C2hData, CapsuleCmd, DGST_DDGST_ENABLE, DGST_HDGST_ENABLE, FLAG_LAST_PDU, FLAG_SUCCESS,
    H2cData, IcReq, MAXH2CDATA_MIN, PDA_MAX, PFV_1_0, R2t,
};
use crate::spec::tcp::{
    Decoded, DecoderConfig, Negotiated, PduDecoder, PduEncoder, PduEnd, PduHeader, Role,
    term_req_for,
};

/// In-capsule data limit of admin and fabrics commands (NVMe/TCP 1.0, 3.3.2.2).
pub const ADMIN_MAX_IN_CAPSULE: u32 = 8192;
/// Largest C2HData PDU this host accepts.
pub const HOST_MAX_C2H_DATA: u32 = 1 << 20;
/// MAXR2T this host asks for (0-based: one outstanding R2T per command).
const HOST_MAXR2T: u32 = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    AwaitIcResp,
    Running,
    Failed,
}

#[derive(Debug)]
enum Dir {
    None,
    ToCtrl,
    FromCtrl,
}

#[derive(Debug)]
struct Req {
    dir: Dir,
    buf: Vec<u8>,
    /// Bytes received by C2HData (reads) or sent by H2CData/in-capsule (writes).
    done_bytes: u32,
    /// A data digest error was seen: the command completes with Transient Transport Error.
    digest_error: bool,
}

#[derive(Debug)]
enum Rx {
    None,
    C2h { cid: u16, off: usize, flags: u8 },
    Other(PduHeader),
}

/// Sans-IO NVMe/TCP host queue pair. See the module documentation.
#[derive(Debug)]
pub struct TcpProto {
    state: State,
    error: Option<HostError>,
    decoder: PduDecoder,
    encoder: PduEncoder,
    want_hdgst: bool,
    want_ddgst: bool,
    maxh2cdata: u32,
    max_icd: u32,
    tx: Vec<u8>,
    tx_off: usize,
    reqs: Vec<Option<Req>>,
    done: Vec<RawCompletion>,
    rx: Rx,
}

impl TcpProto {
    /// A new connection for `queue_size` commands; queues the ICReq.
    pub fn new(queue_size: u16, hdgst: bool, ddgst: bool) -> Self {
        let mut p = TcpProto {
            state: State::AwaitIcResp,
            error: None,
            decoder: PduDecoder::new(DecoderConfig {
                role: Role::Host,
                max_capsule_data: 0,
                max_data_pdu: HOST_MAX_C2H_DATA,
            }),
            encoder: PduEncoder::new(),
            want_hdgst: hdgst,
            want_ddgst: ddgst,
            maxh2cdata: MAXH2CDATA_MIN,
            max_icd: ADMIN_MAX_IN_CAPSULE,
            tx: Vec::with_capacity(4096),
            tx_off: 0,
            reqs: (0..queue_size.max(1)).map(|_| None).collect(),
            done: Vec::new(),
            rx: Rx::None,
        };
        let ic = IcReq::new(0, hdgst, ddgst, HOST_MAXR2T);
        // An ICReq always encodes (fixed size, no data).
        if let Err(e) = p.encoder.encode(&PduHeader::IcReq(ic), &[], &mut p.tx) {
            p.fail(e.into());
        }
        p
    }

    /// True once the ICResp was accepted.
    pub fn is_connected(&self) -> bool {
        self.state == State::Running
    }

    /// The error that failed this connection, if any.
    pub fn error(&self) -> Option<&HostError> {
        self.error.as_ref()
    }

    /// Digests in force (after the IC exchange).
    pub fn digests(&self) -> (bool, bool) {
        let n = self.decoder.negotiated();
        (n.hdgst, n.ddgst)
    }

    /// MAXH2CDATA granted by the controller.
    pub fn maxh2cdata(&self) -> u32 {
        self.maxh2cdata
    }

    /// Largest in-capsule data.
    pub fn max_in_capsule(&self) -> u32 {
        self.max_icd
    }

    /// Set the largest in-capsule data (I/O queues: IOCCSZ x 16 - 64).
    pub fn set_max_in_capsule(&mut self, bytes: u32) {
        self.max_icd = bytes;
    }

    /// Bytes waiting to be sent.
    pub fn poll_transmit(&self) -> &[u8] {
        self.tx.get(self.tx_off..).unwrap_or_default()
    }

    /// `n` bytes of [`TcpProto::poll_transmit`] were sent.
    pub fn advance_transmit(&mut self, n: usize) {
        self.tx_off = (self.tx_off + n).min(self.tx.len());
        if self.tx_off == self.tx.len() {
            self.tx.clear();
            self.tx_off = 0;
        }
    }

    /// Finished commands since the last call.
    pub fn take_completions(&mut self, out: &mut Vec<RawCompletion>) {
        out.append(&mut self.done);
    }

    /// Number of commands outstanding.
    pub fn outstanding(&self) -> usize {
        self.reqs.iter().filter(|r| r.is_some()).count()
    }

    /// Queue a command. Its CID must be below the queue size and not outstanding.
    pub fn submit(&mut self, mut sqe: Sqe, payload: Payload) -> Result<(), HostError> {
        if let Some(e) = &self.error {
            return Err(HostError::Failed(e.to_string()));
        }
        if self.state != State::Running {
            return Err(HostError::Failed("connection not initialised".into()));
        }
        let cid = sqe.cid();
        let slot = self
            .reqs
            .get_mut(usize::from(cid))
            .ok_or_else(|| HostError::InvalidRequest(format!("CID {cid} beyond queue size")))?;
        if slot.is_some() {
            return Err(HostError::InvalidRequest(format!(
                "CID {cid} already in use"
            )));
        }
        let len = u32::try_from(payload.len())
            .map_err(|_| HostError::InvalidRequest("transfer longer than 4 GiB".into()))?;
        sqe.set_psdt(Psdt::SglMptrContig);
        let (dir, buf, in_capsule) = match payload {
            Payload::None => (Dir::None, Vec::new(), false),
            Payload::FromCtrl(b) => (Dir::FromCtrl, b, false),
            Payload::ToCtrl(b) => {
                let icd = len <= self.max_icd;
                (Dir::ToCtrl, b, icd)
            }
        };
        sqe.dptr = if in_capsule {
            Sgl::DataBlockOffset {
                offset: 0,
                length: len,
            }
            .into()
        } else {
            Sgl::TransportDataBlock { length: len }.into()
        };
        let data: &[u8] = if in_capsule { &buf } else { &[] };
        self.encoder.encode(
            &PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)),
            data,
            &mut self.tx,
        )?;
        *slot = Some(Req {
            dir,
            done_bytes: if in_capsule { len } else { 0 },
            buf,
            digest_error: false,
        });
        Ok(())
    }

    /// Feed received bytes. Returns an error (and stays failed) when the target breaks the
    /// protocol; the caller then closes the socket.
    pub fn handle_bytes(&mut self, mut input: &[u8]) -> Result<(), HostError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        loop {
            let r = self.decoder.decode(input);
            let (n, ev) = match r {
                Ok(v) => v,
                Err(e) => {
                    if let Some(h) = term_req_for(Role::Host, &e) {
                        let hdr = self.decoder.received_header().to_vec();
                        let _ = self.encoder.encode(&h, &hdr, &mut self.tx);
                    }
                    return Err(self.fail(e.into()));
                }
            };
            input = input.get(n..).unwrap_or_default();
            // `None` means every byte was consumed and more are needed.
            let Some(ev) = ev else { break };
            if let Err(e) = self.on_event(ev) {
                return Err(self.fail(e));
            }
        }
        Ok(())
    }

    fn fail(&mut self, e: HostError) -> HostError {
        tracing::error!(error = %e, "NVMe/TCP qpair failed");
        self.state = State::Failed;
        if self.error.is_none() {
            self.error = Some(e.clone());
        }
        e
    }

    /// Take back every outstanding command's buffer.
    pub fn abort_all(&mut self) -> Vec<(u16, Vec<u8>)> {
        let mut v = Vec::new();
        for (cid, r) in self.reqs.iter_mut().enumerate() {
            if let Some(r) = r.take() {
                v.push((cid as u16, r.buf));
            }
        }
        v
    }

    fn req_mut(&mut self, cid: u16, what: &str) -> Result<&mut Req, HostError> {
        self.reqs
            .get_mut(usize::from(cid))
            .and_then(|r| r.as_mut())
            .ok_or_else(|| HostError::Protocol(format!("{what} for unknown CID {cid}")))
    }

    fn on_event(&mut self, ev: Decoded<'_>) -> Result<(), HostError> {
        match ev {
            Decoded::Header { header, data_len } => self.on_header(header, data_len),
            Decoded::Data(chunk) => {
                if let Rx::C2h { cid, off, .. } = &mut self.rx {
                    let (cid, start) = (*cid, *off);
                    *off += chunk.len();
                    let req = self.req_mut(cid, "C2HData")?;
                    let dst = req
                        .buf
                        .get_mut(start..start + chunk.len())
                        .ok_or_else(|| HostError::Protocol("C2HData beyond buffer".into()))?;
                    dst.copy_from_slice(chunk);
                }
                Ok(())
            }
            Decoded::End(end) => {
                let rx = std::mem::replace(&mut self.rx, Rx::None);
                self.on_end(rx, end)
            }
        }
    }

    fn on_header(&mut self, header: PduHeader, data_len: u32) -> Result<(), HostError> {
        let running = self.state == State::Running;
        self.rx = match header {
            PduHeader::IcResp(_) if running => {
                return Err(HostError::Protocol("second ICResp".into()));
            }
            PduHeader::C2hTermReq(_) => Rx::Other(header),
            _ if !running && !matches!(header, PduHeader::IcResp(_)) => {
                return Err(HostError::Protocol(format!(
                    "PDU type {:#x} before ICResp",
                    header.pdu_type().0
                )));
            }
            PduHeader::C2hData(h) => {
                self.check_c2h(&h, data_len)?;
                Rx::C2h {
                    cid: h.cccid.get(),
                    off: h.datao.get() as usize,
                    flags: h.ch.flags,
                }
            }
            PduHeader::IcResp(_) | PduHeader::CapsuleResp(_) | PduHeader::R2t(_) => {
                Rx::Other(header)
            }
            other => {
                return Err(HostError::Protocol(format!(
                    "unexpected PDU type {:#x} at host",
                    other.pdu_type().0
                )));
            }
        };
        if data_len == 0 && matches!(self.rx, Rx::C2h { .. }) {
            return Err(HostError::Protocol("C2HData without data".into()));
        }
        Ok(())
    }

    fn check_c2h(&mut self, h: &C2hData, data_len: u32) -> Result<(), HostError> {
        let cid = h.cccid.get();
        let (datao, datal) = (h.datao.get(), h.datal.get());
        let req = self.req_mut(cid, "C2HData")?;
        if !matches!(req.dir, Dir::FromCtrl) {
            return Err(HostError::Protocol(format!(
                "C2HData for CID {cid}, which reads no data"
            )));
        }
        if datal != data_len {
            return Err(HostError::Protocol(format!(
                "C2HData DATAL {datal} but PDU carries {data_len} bytes"
            )));
        }
        if datao != req.done_bytes {
            return Err(HostError::Protocol(format!(
                "C2HData DATAO {datao}, expected {}",
                req.done_bytes
            )));
        }
        let end = u64::from(datao) + u64::from(datal);
        if end > req.buf.len() as u64 {
            return Err(HostError::Protocol(format!(
                "C2HData ends at {end}, beyond the {}-byte transfer",
                req.buf.len()
            )));
        }
        let last = h.ch.flags & FLAG_LAST_PDU != 0;
        if last && end != req.buf.len() as u64 {
            return Err(HostError::Protocol(format!(
                "short C2HData: last PDU ends at {end} of {}",
                req.buf.len()
            )));
        }
        if h.ch.flags & FLAG_SUCCESS != 0 && !last {
            return Err(HostError::Protocol(
                "C2HData SUCCESS without LAST_PDU".into(),
            ));
        }
        req.done_bytes = end as u32;
        Ok(())
    }

    fn on_end(&mut self, rx: Rx, end: PduEnd) -> Result<(), HostError> {
        match rx {
            Rx::None => Ok(()),
            Rx::C2h { cid, flags, .. } => {
                let req = self.req_mut(cid, "C2HData")?;
                if end != PduEnd::Ok {
                    tracing::warn!(cid, "NVMe/TCP data digest mismatch on C2HData");
                    req.digest_error = true;
                }
                if flags & FLAG_SUCCESS != 0 {
                    let mut cqe = Cqe::new(cid, Status::SUCCESS);
                    cqe.cid = cid.into();
                    self.complete(cid, cqe);
                }
                Ok(())
            }
            Rx::Other(PduHeader::C2hTermReq(t)) => {
                tracing::error!(fes = t.fes().0, "target sent C2HTermReq");
                Err(HostError::term_req(t.fes()))
            }
            Rx::Other(PduHeader::IcResp(r)) => {
                if r.pfv.get() != PFV_1_0 {
                    return Err(HostError::Protocol(format!("ICResp PFV {}", r.pfv.get())));
                }
                if r.cpda > PDA_MAX {
                    return Err(HostError::Protocol(format!("ICResp CPDA {}", r.cpda)));
                }
                let maxh2c = r.maxh2cdata.get();
                if maxh2c < MAXH2CDATA_MIN || maxh2c % 4 != 0 {
                    return Err(HostError::Protocol(format!("ICResp MAXH2CDATA {maxh2c}")));
                }
                let hd = r.dgst & DGST_HDGST_ENABLE != 0;
                let dd = r.dgst & DGST_DDGST_ENABLE != 0;
                if (hd && !self.want_hdgst) || (dd && !self.want_ddgst) {
                    return Err(HostError::Protocol(
                        "ICResp enables unrequested digest".into(),
                    ));
                }
                self.decoder.set_negotiated(Negotiated {
                    hdgst: hd,
                    ddgst: dd,
                    rx_pda: 0,
                });
                self.encoder.set_negotiated(Negotiated {
                    hdgst: hd,
                    ddgst: dd,
                    rx_pda: r.cpda,
                });
                self.maxh2cdata = maxh2c;
                self.state = State::Running;
                Ok(())
            }
            Rx::Other(PduHeader::CapsuleResp(r)) => {
                let cid = r.cqe.cid();
                let req = self.req_mut(cid, "CapsuleResp")?;
                if r.cqe.status().is_success()
                    && matches!(req.dir, Dir::FromCtrl)
                    && (req.done_bytes as usize) < req.buf.len()
                {
                    return Err(HostError::Protocol(format!(
                        "CID {cid} completed after {} of {} bytes",
                        req.done_bytes,
                        req.buf.len()
                    )));
                }
                self.complete(cid, r.cqe);
                Ok(())
            }
            Rx::Other(PduHeader::R2t(r)) => self.on_r2t(&r),
            Rx::Other(_) => Ok(()),
        }
    }

    fn complete(&mut self, cid: u16, mut cqe: Cqe) {
        if let Some(req) = self.reqs.get_mut(usize::from(cid)).and_then(|r| r.take()) {
            if req.digest_error {
                cqe.set_status(GenericStatus::TRANSIENT_TRANSPORT_ERROR.into());
            }
            self.done.push(RawCompletion { cqe, buf: req.buf });
        }
    }

    fn on_r2t(&mut self, r: &R2t) -> Result<(), HostError> {
        let cid = r.cccid.get();
        let (r2to, r2tl, ttag) = (r.r2to.get(), r.r2tl.get(), r.ttag.get());
        let maxh2c = self.maxh2cdata;
        let req = self.req_mut(cid, "R2T")?;
        if !matches!(req.dir, Dir::ToCtrl) {
            return Err(HostError::Protocol(format!(
                "R2T for CID {cid}, not a write"
            )));
        }
        let end = u64::from(r2to) + u64::from(r2tl);
        if r2tl == 0 || r2to != req.done_bytes || end > req.buf.len() as u64 {
            return Err(HostError::Protocol(format!(
                "R2T offset {r2to} length {r2tl} does not fit (sent {}, transfer {})",
                req.done_bytes,
                req.buf.len()
            )));
        }
        req.done_bytes = end as u32;
        let mut off = r2to;
        while off < end as u32 {
            let n = (end as u32 - off).min(maxh2c);
            let last = off + n == end as u32;
            let h = H2cData::new(cid, ttag, off, n, last);
            let data = self
                .reqs
                .get(usize::from(cid))
                .and_then(|r| r.as_ref())
                .and_then(|r| r.buf.get(off as usize..(off + n) as usize))
                .ok_or_else(|| HostError::Protocol("R2T beyond buffer".into()))?;
            self.encoder
                .encode(&PduHeader::H2cData(h), data, &mut self.tx)?;
            off += n;
        }
        Ok(())
    }
}

/// A [`TcpProto`] over a non-blocking byte stream (a `TcpStream`, or a scripted fake in
/// tests).
pub struct TcpQpair<S> {
    proto: TcpProto,
    stream: S,
    rx: Box<[u8]>,
    /// The socket's descriptor (set for real sockets by [`TcpTransport`]).
    fd: Option<RawFd>,
}

impl<S: Read + Write + Send> TcpQpair<S> {
    /// Wrap a connected, non-blocking stream; the ICReq is queued.
    pub fn new(stream: S, queue_size: u16, hdgst: bool, ddgst: bool) -> Self {
        TcpQpair {
            proto: TcpProto::new(queue_size, hdgst, ddgst),
            stream,
            rx: vec![0u8; 256 * 1024].into_boxed_slice(),
            fd: None,
        }
    }

    /// The protocol state.
    pub fn proto(&self) -> &TcpProto {
        &self.proto
    }

    /// Poll until the IC exchange is done or `deadline` passes.
    pub fn wait_connected(&mut self, deadline: Instant) -> Result<(), HostError> {
        let mut sink = Vec::new();
        loop {
            self.drive(&mut sink)?;
            if self.proto.is_connected() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HostError::Timeout("ICResp"));
            }
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }

    fn drive(&mut self, done: &mut Vec<RawCompletion>) -> Result<(), HostError> {
        if let Some(e) = self.proto.error() {
            return Err(e.clone());
        }
        self.flush()?;
        for _ in 0..4 {
            match self.stream.read(&mut self.rx) {
                Ok(0) => return Err(self.proto.fail(HostError::Closed)),
                Ok(n) => {
                    let r = self
                        .proto
                        .handle_bytes(self.rx.get(..n).unwrap_or_default());
                    if r.is_err() {
                        // Best effort: send the H2CTermReq the protocol queued.
                        let _ = self.flush();
                    }
                    r?;
                    if n < self.rx.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.proto.fail(HostError::io("recv", &e))),
            }
        }
        self.flush()?;
        self.proto.take_completions(done);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), HostError> {
        loop {
            let pending = self.proto.poll_transmit();
            if pending.is_empty() {
                return Ok(());
            }
            match self.stream.write(pending) {
                Ok(0) => return Err(self.proto.fail(HostError::Closed)),
                Ok(n) => self.proto.advance_transmit(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.proto.fail(HostError::io("send", &e))),
            }
        }
    }
}

impl<S: Read + Write + Send> TransportQpair for TcpQpair<S> {
    fn submit(&mut self, sqe: Sqe, payload: Payload) -> Result<(), HostError> {
        self.proto.submit(sqe, payload)
    }

    fn poll(&mut self, done: &mut Vec<RawCompletion>) -> Result<(), HostError> {
        self.drive(done)
    }

    fn raw_fd(&self) -> Option<RawFd> {
        self.fd
    }

    fn has_unsent(&self) -> bool {
        !self.proto.poll_transmit().is_empty()
    }

    fn max_in_capsule(&self) -> u32 {
        self.proto.max_in_capsule()
    }

    fn set_max_in_capsule(&mut self, bytes: u32) {
        self.proto.set_max_in_capsule(bytes);
    }

    fn abort_all(&mut self) -> Vec<(u16, Vec<u8>)> {
        self.proto.abort_all()
    }
}

/// The NVMe/TCP transport.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpTransport;

impl Transport for TcpTransport {
    fn name(&self) -> &'static str {
        "TCP"
    }

    fn connect_qpair(
        &self,
        trid: &TransportId,
        params: &QpairParams,
    ) -> Result<Box<dyn TransportQpair>, HostError> {
        let addr = trid.socket_addr()?;
        let deadline = super::qpair::deadline_after(params.connect_timeout);
        let stream = TcpStream::connect_timeout(&addr, params.connect_timeout)
            .map_err(|e| HostError::io("connect", &e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| HostError::io("setsockopt TCP_NODELAY", &e))?;
        stream
            .set_nonblocking(true)
            .map_err(|e| HostError::io("set non-blocking", &e))?;
        let fd = stream.as_raw_fd();
        let mut q = TcpQpair::new(stream, params.queue_size, params.hdgst, params.ddgst);
        q.fd = Some(fd);
        q.wait_connected(deadline)?;
        tracing::debug!(%addr, qid = params.qid, "NVMe/TCP qpair connected");
        Ok(Box::new(q))
    }
}
