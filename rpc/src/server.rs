//! The Unix-socket JSON-RPC server with SPDK's framing (SPDK `lib/jsonrpc/jsonrpc_server*.c`).
//!
//! A client writes JSON texts back to back (no delimiter); each is one request object or a batch
//! array. Each answer is written as one JSON text followed by `"\n"`. A connection's answers go
//! out in the order its requests came in, even when handlers answer later. A syntax error is
//! answered `-32700 "Parse error"` (id `null`) and the connection is closed after that answer,
//! since a JSON stream has no resync point (as SPDK does).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::request::{Budget, Pending, PendingRef, encode_response};
use crate::{Error, Request, RpcError, RpcRegistry};

/// Options of the Unix-socket server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOpts {
    /// Largest accepted JSON text (request or batch), in bytes. A bigger one is answered
    /// `-32600` and the connection is closed. Default 1 MiB.
    pub max_request_size: usize,
    /// A connection holding part of a request and sending nothing for this long is closed.
    /// Default 10 s.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog. Default 128.
    pub max_connections: usize,
    /// Most calls in one batch array. A bigger batch is answered `-32600` (before it is
    /// parsed) and the connection stays open. Default 1024 (SPDK's limit of JSON values in
    /// one request; SPDK refuses batches altogether).
    pub max_batch_len: usize,
    /// Largest answer in bytes: one response, or a batch's whole array, with its newline. A
    /// call whose answer would exceed it is answered `-32603 "Send buf exceeded maximum size
    /// (N)"` instead. Default 32 MiB (SPDK's `SPDK_JSONRPC_SEND_BUF_SIZE_MAX`).
    pub max_answer_size: usize,
    /// A connection's requests are not read or run while this many of its calls are
    /// unanswered or unsent; they resume as answers go out. Default 1024.
    pub max_pending_calls: usize,
    /// A connection's requests are not read or run while this many bytes of its answers wait
    /// for the client to read them; they resume when it reads. Default 4 MiB.
    pub max_unsent: usize,
}

impl Default for ServerOpts {
    fn default() -> Self {
        Self {
            max_request_size: 1 << 20,
            idle_timeout: Duration::from_secs(10),
            max_connections: 128,
            max_batch_len: 1024,
            max_answer_size: 32 << 20,
            max_pending_calls: 1024,
            max_unsent: 4 << 20,
        }
    }
}

/// Bytes read from one connection per `poll` at most, so one client cannot starve the others.
const READ_BUDGET: usize = 1 << 20;
/// Size of one `read` call.
const READ_CHUNK: usize = 64 * 1024;

/// A non-blocking JSON-RPC server on a Unix stream socket, driven by [`UnixServer::poll`].
///
/// `!Send`: it lives on the thread that owns the [`RpcRegistry`]. Call `poll` from a poller;
/// in interrupt mode, wait on [`UnixServer::fds`] and also call `poll` after any event that may
/// have completed a deferred answer.
pub struct UnixServer {
    path: PathBuf,
    lock_path: PathBuf,
    _lock: File,
    listener: UnixListener,
    registry: Rc<RpcRegistry>,
    opts: ServerOpts,
    conns: Vec<Conn>,
    next_conn_id: u64,
    open: bool,
    /// When an accept error was last logged and how many were not logged since: out of file
    /// descriptors, every poll fails the same way (one line a second, not 250).
    accept_errors: (Option<Instant>, u64),
}

impl UnixServer {
    /// Listens on `path`. As SPDK, it takes an exclusive lock on `path + ".lock"` first and
    /// refuses ([`Error::AddressInUse`]) when another live process holds it or answers on the
    /// socket; a stale socket file is removed. Unlike SPDK, anything else at `path` (a regular
    /// file, a directory, a symlink) is refused ([`Error::NotASocket`]) and left in place.
    pub fn listen(
        path: &Path,
        registry: Rc<RpcRegistry>,
        opts: ServerOpts,
    ) -> Result<UnixServer, Error> {
        // Never create the lock file beside, nor later remove, something that is not a socket.
        existing_socket(path)?;
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("cannot open lock file {}", lock_path.display()), e))?;
        // File::try_lock is flock(LOCK_EX | LOCK_NB), what SPDK takes on the same file.
        #[allow(clippy::incompatible_msrv)]
        if lock.try_lock().is_err() {
            tracing::error!(path = %path.display(), "RPC socket in use");
            return Err(Error::AddressInUse(path.to_path_buf()));
        }
        if existing_socket(path)? {
            if UnixStream::connect(path).is_ok() {
                tracing::error!(path = %path.display(), "RPC socket served by another process");
                return Err(Error::AddressInUse(path.to_path_buf()));
            }
            std::fs::remove_file(path)
                .map_err(|e| Error::io(format!("cannot remove stale {}", path.display()), e))?;
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| Error::io(format!("cannot bind {}", path.display()), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("cannot make the RPC listener non-blocking", e))?;
        tracing::info!(path = %path.display(), "RPC server listening");
        Ok(UnixServer {
            path: path.to_path_buf(),
            lock_path,
            _lock: lock,
            listener,
            registry,
            opts,
            conns: Vec::new(),
            next_conn_id: 0,
            accept_errors: (None, 0),
            open: true,
        })
    }

    /// Does all the work that is ready without blocking: accepts connections, reads, frames and
    /// dispatches requests, writes finished answers, closes finished or idle connections.
    /// Returns true when anything was done.
    pub fn poll(&mut self) -> bool {
        let now = Instant::now();
        let mut busy = self.accept(now);
        for conn in &mut self.conns {
            busy |= conn.poll(&self.registry, &self.opts, now);
        }
        let before = self.conns.len();
        self.conns.retain(|c| !c.finished());
        busy | (self.conns.len() != before)
    }

    /// The file descriptors to wait on in interrupt mode: the listener, then each connection.
    pub fn fds(&self) -> Vec<RawFd> {
        std::iter::once(self.listener.as_raw_fd())
            .chain(self.conns.iter().map(|c| c.stream.as_raw_fd()))
            .collect()
    }

    /// Number of open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection and the listener, removes the socket and lock files.
    pub fn close(self) {
        drop(self);
    }

    fn accept(&mut self, now: Instant) -> bool {
        let mut busy = false;
        while self.conns.len() < self.opts.max_connections {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    busy = true;
                    if let Err(e) = stream.set_nonblocking(true) {
                        tracing::error!(error = %e, "cannot make RPC connection non-blocking");
                        continue;
                    }
                    self.next_conn_id += 1;
                    tracing::debug!(conn = self.next_conn_id, "RPC connection accepted");
                    self.conns
                        .push(Conn::new(self.next_conn_id, stream, now, &self.opts));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    let (last, unlogged) = &mut self.accept_errors;
                    if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                        tracing::error!(error = %e, repeated = *unlogged, "RPC accept failed");
                        *last = Some(now);
                        *unlogged = 0;
                    } else {
                        *unlogged += 1;
                    }
                    break;
                }
            }
        }
        busy
    }
}

impl Drop for UnixServer {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        self.open = false;
        self.conns.clear();
        for p in [&self.path, &self.lock_path] {
            if let Err(e) = std::fs::remove_file(p)
                && e.kind() != ErrorKind::NotFound
            {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove RPC file");
            }
        }
        tracing::info!(path = %self.path.display(), "RPC server closed");
    }
}

impl std::fmt::Debug for UnixServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixServer")
            .field("path", &self.path)
            .field("connections", &self.conns.len())
            .field("opts", &self.opts)
            .finish()
    }
}

/// True when a socket exists at `path`, false when nothing does; an error (logged) when
/// something else is there.
fn existing_socket(path: &Path) -> Result<bool, Error> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => Ok(true),
        Ok(meta) => {
            tracing::error!(
                path = %path.display(),
                file_type = ?meta.file_type(),
                "RPC socket path exists and is not a socket; not removing it"
            );
            Err(Error::NotASocket(path.to_path_buf()))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!("cannot inspect {}", path.display()), e)),
    }
}

/// Finds where the next top-level JSON text in a byte stream ends, scanning each byte once.
#[derive(Debug, Default)]
struct Scanner {
    /// Bytes of the receive buffer already scanned.
    pos: usize,
    /// Where the current text starts (first non-blank byte), once seen.
    start: Option<usize>,
    depth: usize,
    in_string: bool,
    escape: bool,
    /// Commas directly inside the top-level array or object: a batch has one fewer than its
    /// elements.
    top_commas: usize,
}

/// What the scanner found.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// Need more bytes.
    Incomplete,
    /// Only blanks so far: they can be dropped.
    Blank,
    /// An object or array spans `start..end`.
    Complete { start: usize, end: usize },
    /// The text at `start` is not an object or array: let serde read it.
    Scalar { start: usize },
}

/// JSON insignificant whitespace (RFC 8259, 2).
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl Scanner {
    fn scan(&mut self, buf: &[u8]) -> Scan {
        while self.pos < buf.len() {
            let b = buf[self.pos];
            self.pos += 1;
            let Some(start) = self.start else {
                match b {
                    _ if is_blank(b) => continue,
                    b'{' | b'[' => {
                        self.start = Some(self.pos - 1);
                        self.depth = 1;
                        continue;
                    }
                    _ => {
                        return Scan::Scalar {
                            start: self.pos - 1,
                        };
                    }
                }
            };
            if self.in_string {
                match b {
                    _ if self.escape => self.escape = false,
                    b'\\' => self.escape = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b',' if self.depth == 1 => self.top_commas += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Scan::Complete {
                            start,
                            end: self.pos,
                        };
                    }
                }
                _ => {}
            }
        }
        if self.start.is_none() {
            Scan::Blank
        } else {
            Scan::Incomplete
        }
    }

    /// Length of the text being scanned so far.
    fn partial_len(&self) -> usize {
        self.start.map_or(0, |s| self.pos - s)
    }
}

/// One client connection.
struct Conn {
    id: u64,
    stream: UnixStream,
    rx: Vec<u8>,
    scanner: Scanner,
    last_rx: Instant,
    /// Answers owed, in request order.
    queue: VecDeque<PendingRef>,
    /// Calls in `queue` (a batch counts each element).
    queued_calls: usize,
    /// Answer bytes held by `queue`, and the largest answer.
    budget: Rc<Budget>,
    out: Vec<u8>,
    out_pos: usize,
    /// `rx` holds requests not run yet because the connection reached its bounds: run them
    /// (and read nothing more) when answers have gone out.
    backlog: bool,
    /// The peer shut its write side: answer what is owed, then close.
    eof: bool,
    /// A fatal framing error was answered: flush, then close.
    closing: bool,
    /// Close now (I/O error, idle timeout).
    dead: bool,
}

impl Conn {
    fn new(id: u64, stream: UnixStream, now: Instant, opts: &ServerOpts) -> Conn {
        Conn {
            id,
            stream,
            rx: Vec::new(),
            scanner: Scanner::default(),
            last_rx: now,
            queue: VecDeque::new(),
            queued_calls: 0,
            budget: Budget::new(opts.max_answer_size),
            out: Vec::new(),
            out_pos: 0,
            backlog: false,
            eof: false,
            closing: false,
            dead: false,
        }
    }

    fn finished(&self) -> bool {
        self.dead
            || ((self.eof || self.closing)
                && !self.backlog
                && self.queue.is_empty()
                && self.unsent() == 0)
    }

    fn unsent(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// True while the connection owes too many answers (or answer bytes) to take another
    /// request: requests wait in `rx`, and nothing more is read.
    fn stalled(&self, opts: &ServerOpts) -> bool {
        self.queued_calls >= opts.max_pending_calls
            || self.budget.held() + self.unsent() >= opts.max_unsent
    }

    fn poll(&mut self, registry: &RpcRegistry, opts: &ServerOpts, now: Instant) -> bool {
        let mut busy = self.flush();
        if self.backlog && !self.closing && !self.dead && !self.stalled(opts) {
            // The client read some answers: run the requests that waited.
            if self.frame(registry, opts) {
                busy = true;
                self.last_rx = now;
            }
        }
        if !self.eof && !self.closing && !self.dead && !self.backlog && !self.stalled(opts) {
            let got = self.read();
            if got > 0 {
                busy = true;
                self.last_rx = now;
                self.frame(registry, opts);
            }
        }
        busy |= self.flush();
        if self.stalled(opts) {
            // Not reading because the client has not read its answers yet: its silence is
            // ours, and the half request in `rx` waits for us, not for the client.
            self.last_rx = now;
        }
        if !self.dead
            && !self.closing
            && !self.backlog
            && !self.rx.is_empty()
            && now.duration_since(self.last_rx) >= opts.idle_timeout
        {
            tracing::warn!(
                conn = self.id,
                bytes = self.rx.len(),
                "RPC client sent part of a request and went silent; closing"
            );
            self.dead = true;
            busy = true;
        }
        busy
    }

    /// Reads what is available; returns the number of bytes read.
    fn read(&mut self) -> usize {
        let mut total = 0;
        let mut chunk = [0u8; READ_CHUNK];
        while total < READ_BUDGET {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    tracing::debug!(conn = self.id, "RPC client closed its side");
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.rx.extend_from_slice(&chunk[..n]);
                    total += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(conn = self.id, error = %e, "RPC read failed");
                    self.dead = true;
                    break;
                }
            }
        }
        total
    }

    /// Splits the receive buffer into JSON texts and dispatches each, until only part of a
    /// text is left or the connection reaches its bounds (`backlog` is set then). Returns
    /// true when it consumed anything.
    fn frame(&mut self, registry: &RpcRegistry, opts: &ServerOpts) -> bool {
        let mut consumed = 0;
        self.backlog = false;
        while !self.closing {
            if self.stalled(opts) {
                if consumed < self.rx.len() {
                    tracing::debug!(
                        conn = self.id,
                        calls = self.queued_calls,
                        bytes = self.budget.held() + self.unsent(),
                        "RPC client is not reading its answers; waiting before running more"
                    );
                    self.backlog = true;
                }
                break;
            }
            let found = self.scanner.scan(&self.rx);
            match found {
                Scan::Blank => {
                    consumed = self.rx.len();
                    break;
                }
                Scan::Incomplete => {
                    if self.scanner.partial_len() > opts.max_request_size {
                        self.too_big(opts);
                    }
                    break;
                }
                Scan::Complete { start, end } => {
                    if end - start > opts.max_request_size {
                        self.too_big(opts);
                        break;
                    }
                    consumed = end;
                    if self.rx[start] == b'[' && self.scanner.top_commas >= opts.max_batch_len {
                        self.batch_too_long(opts);
                    } else {
                        match serde_json::from_slice::<Value>(&self.rx[start..end]) {
                            Ok(v) => self.dispatch(v, registry),
                            Err(e) => self.parse_error(&e),
                        }
                    }
                }
                Scan::Scalar { start } => {
                    let mut values = serde_json::Deserializer::from_slice(&self.rx[start..])
                        .into_iter::<Value>();
                    match values.next() {
                        Some(Ok(_)) => {
                            consumed = start + values.byte_offset();
                            tracing::warn!(
                                conn = self.id,
                                "RPC: top-level JSON value is not an object or array"
                            );
                            self.queue_error(RpcError::invalid_request());
                        }
                        Some(Err(e)) if e.is_eof() => {
                            // Re-read this scalar from its start when more bytes come.
                            self.scanner.pos = start;
                            if self.rx.len() - start > opts.max_request_size {
                                self.too_big(opts);
                            }
                            break;
                        }
                        Some(Err(e)) => self.parse_error(&e),
                        None => {
                            consumed = self.rx.len();
                            break;
                        }
                    }
                }
            }
            self.scanner = Scanner {
                pos: consumed,
                ..Scanner::default()
            };
        }
        self.rx.drain(..consumed);
        self.scanner.pos -= consumed.min(self.scanner.pos);
        if let Some(s) = self.scanner.start.as_mut() {
            *s -= consumed;
        }
        if self.closing {
            self.rx.clear();
            self.backlog = false;
        }
        consumed > 0
    }

    fn too_big(&mut self, opts: &ServerOpts) {
        tracing::warn!(
            conn = self.id,
            limit = opts.max_request_size,
            "RPC request larger than max_request_size; closing"
        );
        self.queue_error(RpcError::new(
            RpcError::INVALID_REQUEST,
            format!(
                "Invalid request: larger than max_request_size ({} bytes)",
                opts.max_request_size
            ),
        ));
        self.closing = true;
    }

    fn batch_too_long(&mut self, opts: &ServerOpts) {
        tracing::warn!(
            conn = self.id,
            elements = self.scanner.top_commas.saturating_add(1),
            limit = opts.max_batch_len,
            "RPC batch longer than max_batch_len; refused"
        );
        self.queue_error(RpcError::new(
            RpcError::INVALID_REQUEST,
            format!(
                "Invalid request: batch longer than max_batch_len ({} calls)",
                opts.max_batch_len
            ),
        ));
    }

    fn parse_error(&mut self, e: &serde_json::Error) {
        tracing::warn!(conn = self.id, error = %e, "RPC request is not valid JSON; closing");
        self.queue_error(RpcError::parse_error());
        self.closing = true;
    }

    fn queue_error(&mut self, e: RpcError) {
        let bytes = encode_response(&Value::Null, &Err(e));
        self.push(Pending::ready(bytes, &self.budget));
    }

    fn push(&mut self, pending: PendingRef) {
        self.queued_calls += pending.borrow().calls();
        self.queue.push_back(pending);
    }

    /// Dispatches one JSON text: a request object or a batch array.
    fn dispatch(&mut self, value: Value, registry: &RpcRegistry) {
        match value {
            Value::Object(map) => {
                let pending = Pending::new(1, false, &self.budget);
                self.push(pending.clone());
                dispatch_one(self.id, map, &pending, 0, registry);
            }
            Value::Array(items) if !items.is_empty() => {
                let pending = Pending::new(items.len(), true, &self.budget);
                self.push(pending.clone());
                for (index, item) in items.into_iter().enumerate() {
                    match item {
                        Value::Object(map) => dispatch_one(self.id, map, &pending, index, registry),
                        _ => {
                            tracing::warn!(conn = self.id, "RPC batch element is not an object");
                            let bytes =
                                encode_response(&Value::Null, &Err(RpcError::invalid_request()));
                            pending.borrow_mut().fill(index, Some(bytes));
                        }
                    }
                }
            }
            _ => {
                tracing::warn!(conn = self.id, "RPC: empty batch or non-object request");
                self.queue_error(RpcError::invalid_request());
            }
        }
    }

    /// Moves finished answers to the output buffer and writes what the socket takes.
    fn flush(&mut self) -> bool {
        let mut busy = false;
        while let Some(front) = self.queue.front() {
            if !front.borrow().is_complete() {
                break;
            }
            let (calls, bytes) = {
                let mut front = front.borrow_mut();
                (front.calls(), front.take_output())
            };
            self.queue.pop_front();
            self.queued_calls -= calls;
            self.out.extend_from_slice(&bytes);
        }
        while self.unsent() > 0 && !self.dead {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => {
                    self.dead = true;
                }
                Ok(n) => {
                    self.out_pos += n;
                    busy = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(conn = self.id, error = %e, "RPC write failed");
                    self.dead = true;
                }
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos >= self.out.len() / 2 {
            // Keep the buffer from growing while a slow client reads.
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        busy
    }
}

/// Validates one request object as SPDK's `parse_single_request` does and hands it to the
/// registry; anything malformed is answered `-32600 "Invalid request"` with id `null`.
fn dispatch_one(
    conn: u64,
    mut map: Map<String, Value>,
    pending: &PendingRef,
    index: usize,
    registry: &RpcRegistry,
) {
    const KEYS: [&str; 4] = ["jsonrpc", "method", "params", "id"];
    let valid = map.keys().all(|k| KEYS.contains(&k.as_str()))
        && map.get("jsonrpc").is_none_or(|v| v == "2.0")
        && map.get("method").is_some_and(Value::is_string)
        && map
            .get("id")
            .is_none_or(|id| id.is_string() || id.is_number() || id.is_null())
        && map
            .get("params")
            .is_none_or(|p| p.is_null() || p.is_array() || p.is_object());
    if !valid {
        tracing::warn!(conn, "RPC invalid request object");
        let bytes = encode_response(&Value::Null, &Err(RpcError::invalid_request()));
        pending.borrow_mut().fill(index, Some(bytes));
        return;
    }
    let method = match map.remove("method") {
        Some(Value::String(m)) => m,
        _ => String::new(),
    };
    let params = map.remove("params").filter(|p| !p.is_null());
    let id = map.remove("id");
    tracing::debug!(conn, method = %method, "RPC request");
    registry.call(Request::remote(method, params, id, pending.clone(), index));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8]) -> Vec<Scan> {
        let mut s = Scanner::default();
        let mut out = Vec::new();
        loop {
            let r = s.scan(input);
            let stop = matches!(r, Scan::Incomplete | Scan::Blank | Scan::Scalar { .. });
            if let Scan::Complete { end, .. } = r {
                s = Scanner {
                    pos: end,
                    ..Scanner::default()
                };
            }
            out.push(r);
            if stop {
                return out;
            }
        }
    }

    #[test]
    fn scanner_splits_back_to_back_texts_and_ignores_brackets_in_strings() {
        let input = br#" {"a":"}]\"{"} [1,[2]]{"b""#;
        assert_eq!(
            scan_all(input),
            vec![
                Scan::Complete { start: 1, end: 14 },
                Scan::Complete { start: 15, end: 22 },
                Scan::Incomplete
            ]
        );
    }

    #[test]
    fn scanner_reports_blank_and_scalar() {
        assert_eq!(scan_all(b" \r\n\t"), vec![Scan::Blank]);
        assert_eq!(scan_all(b"  nope"), vec![Scan::Scalar { start: 2 }]);
    }
}
