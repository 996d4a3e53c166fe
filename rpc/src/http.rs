//! The HTTP + WebSocket JSON-RPC server (jsonrpsee), bridged to the registry's thread.
//!
//! jsonrpsee runs on its own OS thread with a tokio runtime. Method names are dynamic (they
//! live in the [`RpcRegistry`](crate::RpcRegistry)), so instead of an `RpcModule` an RPC
//! middleware takes every call, forwards it through a `Send` channel to the app thread, and
//! awaits the answer on a oneshot channel. The app thread runs the queued calls in
//! [`HttpBridge::poll`].

use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use jsonrpsee::RpcModule;
use jsonrpsee::server::middleware::rpc::{
    Batch, BatchEntry, MethodResponse, Notification, RpcServiceBuilder, RpcServiceT,
};
use jsonrpsee::server::{BatchResponseBuilder, ResponsePayload, ServerConfig, ServerHandle};
use jsonrpsee::types::error::OVERSIZED_RESPONSE_CODE;
use jsonrpsee::types::{ErrorObject, Id, Request as JrRequest};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::{Error, RpcError, RpcRegistry};

/// Options of the HTTP/WebSocket server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOpts {
    /// Largest request body in bytes. Default 1 MiB.
    pub max_request_size: u32,
    /// Connections served at once. Default 128.
    pub max_connections: u32,
    /// Most calls in one batch array; a longer batch is answered `-32600` without running any.
    /// Default 1024 (as the Unix-socket server).
    pub max_batch_len: u32,
    /// Largest answer in bytes (a response, or a batch's whole array). A call whose answer
    /// would exceed it is answered `-32603 "Send buf exceeded maximum size (N)"` instead.
    /// Default 32 MiB (SPDK's send buffer limit).
    pub max_answer_size: u32,
    /// Serve on a non-loopback address. The HTTP RPC has no authentication, so
    /// [`HttpServer::start`] refuses any address but 127.0.0.0/8 and `::1` unless this is set.
    /// Default false.
    pub allow_remote: bool,
}

impl Default for HttpOpts {
    fn default() -> Self {
        Self {
            max_request_size: 1 << 20,
            max_connections: 128,
            max_batch_len: 1024,
            max_answer_size: 32 << 20,
            allow_remote: false,
        }
    }
}

/// Calls the app thread runs per [`HttpBridge::poll`] at most.
const BRIDGE_BUDGET: usize = 256;

/// One call forwarded from the jsonrpsee thread.
struct Job {
    method: String,
    params: Option<Value>,
    /// `None` for a notification.
    reply: Option<oneshot::Sender<Result<Value, RpcError>>>,
}

/// The HTTP/WebSocket server thread. It is `Send`; stopping it (or dropping it) stops the
/// server and joins its thread.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

/// The app-thread side of an [`HttpServer`]: runs forwarded calls on the registry.
#[derive(Debug)]
pub struct HttpBridge {
    jobs: mpsc::Receiver<Job>,
    wake: UnixStream,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("method", &self.method).finish()
    }
}

impl HttpServer {
    /// Starts serving JSON-RPC over HTTP and WebSocket on `addr` (use 127.0.0.1 and port 0 in
    /// tests; [`HttpServer::local_addr`] tells the port). A non-loopback `addr` is refused
    /// ([`Error::RemoteHttpRefused`]) unless [`HttpOpts::allow_remote`] is set.
    pub fn start(addr: SocketAddr, opts: HttpOpts) -> Result<(HttpServer, HttpBridge), Error> {
        if !opts.allow_remote && !addr.ip().to_canonical().is_loopback() {
            tracing::error!(
                %addr,
                "refusing to serve unauthenticated RPC over HTTP on a non-loopback address"
            );
            return Err(Error::RemoteHttpRefused(addr));
        }
        if !addr.ip().to_canonical().is_loopback() {
            tracing::warn!(%addr, "RPC over HTTP has no authentication and is reachable remotely");
        }
        let (job_tx, jobs) = mpsc::channel::<Job>();
        let (wake_tx, wake) = UnixStream::pair().map_err(|e| Error::io("socketpair", e))?;
        for s in [&wake_tx, &wake] {
            s.set_nonblocking(true)
                .map_err(|e| Error::io("cannot make the wake socket non-blocking", e))?;
        }
        let forward = Forward {
            jobs: job_tx,
            wake: Arc::new(wake_tx),
            max_batch_len: opts.max_batch_len as usize,
            max_answer_size: opts.max_answer_size as usize,
        };
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(SocketAddr, ServerHandle), Error>>();
        let thread = std::thread::Builder::new()
            .name("rpc-http".into())
            .spawn(move || serve(addr, opts, forward, ready_tx))
            .map_err(|e| Error::io("cannot spawn the HTTP RPC thread", e))?;
        let started = ready_rx
            .recv()
            .map_err(|_| Error::Http("server thread ended before starting".into()))
            .and_then(|r| r);
        match started {
            Ok((addr, handle)) => {
                tracing::info!(%addr, "HTTP/WebSocket RPC server listening");
                Ok((
                    HttpServer {
                        addr,
                        handle,
                        thread: Some(thread),
                    },
                    HttpBridge { jobs, wake },
                ))
            }
            Err(e) => {
                if thread.join().is_err() {
                    tracing::error!("HTTP RPC thread panicked");
                }
                Err(e)
            }
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server and joins its thread.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        // An error means it was already stopped.
        let _ = self.handle.stop();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("HTTP RPC thread panicked");
        }
    }
}

/// Body of the server thread.
fn serve(
    addr: SocketAddr,
    opts: HttpOpts,
    forward: Forward,
    ready: mpsc::Sender<Result<(SocketAddr, ServerHandle), Error>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(Error::io("cannot build tokio runtime", e)));
            return;
        }
    };
    rt.block_on(async move {
        let config = ServerConfig::builder()
            .max_request_body_size(opts.max_request_size)
            .max_connections(opts.max_connections)
            .max_response_body_size(opts.max_answer_size)
            .build();
        let middleware = RpcServiceBuilder::new().layer_fn(move |_inner| forward.clone());
        let server = jsonrpsee::server::Server::builder()
            .set_config(config)
            .set_rpc_middleware(middleware)
            .build(addr)
            .await;
        let server = match server {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(Error::io(format!("cannot bind {addr}"), e)));
                return;
            }
        };
        let local = match server.local_addr() {
            Ok(a) => a,
            Err(e) => {
                let _ = ready.send(Err(Error::io("local_addr", e)));
                return;
            }
        };
        let handle = server.start(RpcModule::new(()));
        if ready.send(Ok((local, handle.clone()))).is_err() {
            let _ = handle.stop();
        }
        handle.stopped().await;
    });
}

/// The RPC middleware that forwards every call to the app thread.
#[derive(Clone)]
struct Forward {
    jobs: mpsc::Sender<Job>,
    wake: Arc<UnixStream>,
    max_batch_len: usize,
    max_answer_size: usize,
}

impl Forward {
    fn submit(&self, method: &str, raw: Option<&str>, want_reply: bool) -> SubmitResult {
        let params = match raw.map(serde_json::from_str::<Value>) {
            None => None,
            Some(Ok(Value::Null)) => None,
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => return SubmitResult::Failed(RpcError::parse_error()),
        };
        let (tx, rx) = if want_reply {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let job = Job {
            method: method.to_string(),
            params,
            reply: tx,
        };
        if self.jobs.send(job).is_err() {
            return SubmitResult::Failed(RpcError::internal("RPC bridge is closed"));
        }
        // Wake an app thread sleeping in interrupt mode; a full socket is already readable.
        match (&*self.wake).write(&[1]) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => tracing::debug!(error = %e, "RPC bridge wake failed"),
        }
        match rx {
            Some(rx) => SubmitResult::Waiting(rx),
            None => SubmitResult::Sent,
        }
    }

    fn answer(&self, req: JrRequest<'_>) -> impl Future<Output = MethodResponse> + Send + 'static {
        let id: Id<'static> = req.id().into_owned();
        let method = req.method_name().to_string();
        let max_answer = self.max_answer_size;
        let submitted = self.submit(
            req.method_name(),
            req.params.as_deref().map(|r| r.get()),
            true,
        );
        async move {
            let result = match submitted {
                SubmitResult::Waiting(rx) => rx
                    .await
                    .unwrap_or_else(|_| Err(RpcError::internal("RPC bridge is closed"))),
                SubmitResult::Failed(e) => Err(e),
                SubmitResult::Sent => Err(RpcError::internal("no answer expected")),
            };
            match result {
                Ok(v) => {
                    let rp = MethodResponse::response(
                        id.clone(),
                        ResponsePayload::success(v),
                        max_answer,
                    );
                    if rp.as_error_code() == Some(OVERSIZED_RESPONSE_CODE) {
                        tracing::error!(
                            %method,
                            limit = max_answer,
                            "RPC answer larger than max_answer_size; answering an error instead"
                        );
                        too_big_answer(id, max_answer)
                    } else {
                        rp
                    }
                }
                Err(e) => {
                    MethodResponse::error(id, ErrorObject::owned(e.code, e.message, None::<()>))
                }
            }
        }
    }
}

enum SubmitResult {
    Waiting(oneshot::Receiver<Result<Value, RpcError>>),
    Sent,
    Failed(RpcError),
}

impl RpcServiceT for Forward {
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, req: JrRequest<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.answer(req)
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let max_answer = self.max_answer_size;
        let mut waits = Vec::new();
        if batch.len() > self.max_batch_len {
            tracing::warn!(
                elements = batch.len(),
                limit = self.max_batch_len,
                "RPC batch longer than max_batch_len; refused"
            );
            let error = ErrorObject::owned(
                RpcError::INVALID_REQUEST,
                format!(
                    "Invalid request: batch longer than max_batch_len ({} calls)",
                    self.max_batch_len
                ),
                None::<()>,
            );
            return futures_answer(std::future::ready(MethodResponse::error(Id::Null, error)));
        }
        // Submit every call first so deferred methods proceed together, then collect in order.
        for entry in batch {
            match entry {
                Ok(BatchEntry::Call(req)) => {
                    let id = req.id().into_owned();
                    waits.push((id, Some(futures_answer(self.answer(req)))));
                }
                Ok(BatchEntry::Notification(n)) => {
                    self.notify(&n);
                }
                Err(err) => {
                    let (err, id) = err.into_parts();
                    let rp = MethodResponse::error(id.clone().into_owned(), err.into_owned());
                    waits.push((
                        id.into_owned(),
                        Some(futures_answer(std::future::ready(rp))),
                    ));
                }
            }
        }
        futures_answer(async move {
            // As the Unix-socket server: an element that no longer fits in the array's limit is
            // answered an error (only when even those do not fit is the whole batch refused).
            let mut builder = BatchResponseBuilder::new_with_limit(max_answer);
            let mut used = 1;
            for (id, wait) in waits {
                let Some(wait) = wait else { continue };
                let mut rp = wait.await;
                if used + rp.as_json().get().len() + 1 > max_answer {
                    tracing::error!(
                        limit = max_answer,
                        "RPC batch answer larger than max_answer_size; answering an error instead"
                    );
                    rp = too_big_answer(id, max_answer);
                }
                used += rp.as_json().get().len() + 1;
                if let Err(too_big) = builder.append(rp) {
                    tracing::error!(limit = max_answer, "RPC batch answer refused as too large");
                    return too_big;
                }
            }
            if builder.is_empty() {
                MethodResponse::notification()
            } else {
                MethodResponse::from_batch(builder.finish())
            }
        })
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.notify(&n);
        std::future::ready(MethodResponse::notification())
    }
}

impl Forward {
    fn notify(&self, n: &Notification<'_>) {
        if let SubmitResult::Failed(e) =
            self.submit(n.method_name(), n.params.as_deref().map(|r| r.get()), false)
        {
            tracing::warn!(method = n.method_name(), error = %e, "RPC notification not delivered");
        }
    }
}

/// The error answered for a call whose answer is larger than `limit` bytes (SPDK's words).
fn too_big_answer(id: Id<'static>, limit: usize) -> MethodResponse {
    MethodResponse::error(
        id,
        ErrorObject::owned(
            RpcError::INTERNAL_ERROR,
            format!("Send buf exceeded maximum size ({limit})"),
            None::<()>,
        ),
    )
}

/// Boxes an answer future so a batch can hold answers of different origins.
fn futures_answer(
    f: impl Future<Output = MethodResponse> + Send + 'static,
) -> std::pin::Pin<Box<dyn Future<Output = MethodResponse> + Send>> {
    Box::pin(f)
}

impl HttpBridge {
    /// Runs the calls forwarded by the HTTP server (at most a bounded number per call) on
    /// `registry`; their answers go back when the handlers answer. Returns true when any ran.
    pub fn poll(&self, registry: &RpcRegistry) -> bool {
        let mut drain = [0u8; 64];
        while matches!((&self.wake).read(&mut drain), Ok(n) if n > 0) {}
        let mut ran = 0;
        while ran < BRIDGE_BUDGET {
            let Ok(job) = self.jobs.try_recv() else {
                break;
            };
            ran += 1;
            let Job {
                method,
                params,
                reply,
            } = job;
            registry.call_local(&method, params, move |result| {
                if let Some(tx) = reply {
                    // The HTTP client may have gone; nothing to do then.
                    let _ = tx.send(result);
                }
            });
        }
        ran > 0
    }

    /// A file descriptor that becomes readable when calls are waiting (for interrupt mode).
    pub fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }
}
