//! One JSON-RPC call and the way back to its caller.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::RpcError;

/// What the answers of one connection may hold, shared by its [`Pending`] entries.
#[derive(Debug)]
pub(crate) struct Budget {
    /// Bytes of encoded answers held by pending entries (not yet moved to the output buffer).
    held: Cell<usize>,
    /// Largest answer: one JSON text with its newline (a response, or a batch's whole array).
    max_answer: usize,
}

impl Budget {
    /// A budget allowing answers of at most `max_answer` bytes.
    pub(crate) fn new(max_answer: usize) -> Rc<Budget> {
        Rc::new(Budget {
            held: Cell::new(0),
            max_answer,
        })
    }

    /// Bytes of encoded answers held by pending entries.
    pub(crate) fn held(&self) -> usize {
        self.held.get()
    }
}

/// The answers owed for one top-level JSON text received on a connection: one slot for a
/// single request, one slot per element for a batch. The connection keeps these in arrival
/// order and writes each out once it is complete, so one connection's answers keep their order.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Per call: `None` = not answered yet; `Some(None)` = answered with nothing to send
    /// (notification); `Some(Some(bytes))` = the encoded response object (no newline).
    parts: Vec<Option<Option<Vec<u8>>>>,
    remaining: usize,
    batch: bool,
    /// Bytes held in `parts`.
    bytes: usize,
    budget: Rc<Budget>,
}

/// Shared handle on a [`Pending`].
pub(crate) type PendingRef = Rc<RefCell<Pending>>;

impl Pending {
    /// Slots for `count` calls; `batch` selects the array form of the answer.
    pub(crate) fn new(count: usize, batch: bool, budget: &Rc<Budget>) -> PendingRef {
        Rc::new(RefCell::new(Pending {
            parts: vec![None; count],
            remaining: count,
            batch,
            bytes: 0,
            budget: budget.clone(),
        }))
    }

    /// A single, already-known answer (errors found while framing).
    pub(crate) fn ready(bytes: Vec<u8>, budget: &Rc<Budget>) -> PendingRef {
        let pending = Pending::new(1, false, budget);
        pending.borrow_mut().fill(0, Some(bytes));
        pending
    }

    /// Number of calls (slots).
    pub(crate) fn calls(&self) -> usize {
        self.parts.len()
    }

    /// Fills slot `index`; a slot is filled at most once.
    pub(crate) fn fill(&mut self, index: usize, bytes: Option<Vec<u8>>) {
        if let Some(slot) = self.parts.get_mut(index)
            && slot.is_none()
        {
            let len = bytes.as_ref().map_or(0, Vec::len);
            *slot = Some(bytes);
            self.remaining -= 1;
            self.bytes += len;
            self.budget.held.set(self.budget.held.get() + len);
        }
    }

    /// Encodes the answer of call `index` (nothing for a notification, `id` `None`) into its
    /// slot. An answer that would make this entry's output larger than the budget's
    /// `max_answer` is replaced by a `-32603` error naming the limit (SPDK's words); the
    /// encoder stops at the limit, so the oversize text is never built. Returns false then.
    pub(crate) fn answer(
        &mut self,
        index: usize,
        id: Option<&Value>,
        result: &Result<Value, RpcError>,
    ) -> bool {
        let Some(id) = id else {
            self.fill(index, None);
            return true;
        };
        // Room left: the whole output adds one separator per part, brackets and a newline.
        let room = self
            .budget
            .max_answer
            .saturating_sub(self.bytes + self.parts.len() + 2);
        match encode_capped(id, result, room) {
            Some(bytes) => {
                self.fill(index, Some(bytes));
                true
            }
            None => {
                let error = RpcError::internal(format!(
                    "Send buf exceeded maximum size ({})",
                    self.budget.max_answer
                ));
                self.fill(index, Some(encode_response(id, &Err(error))));
                false
            }
        }
    }

    /// True when every call has been answered.
    pub(crate) fn is_complete(&self) -> bool {
        self.remaining == 0
    }

    /// The bytes to write for a complete entry, with SPDK's trailing newline; empty when
    /// nothing is owed (notifications only).
    pub(crate) fn take_output(&mut self) -> Vec<u8> {
        self.budget
            .held
            .set(self.budget.held.get().saturating_sub(self.bytes));
        self.bytes = 0;
        let mut bodies = self.parts.iter_mut().filter_map(|p| p.take().flatten());
        let mut out = Vec::new();
        if self.batch {
            let mut first = true;
            for body in bodies {
                out.push(if first { b'[' } else { b',' });
                first = false;
                out.extend_from_slice(&body);
            }
            if !first {
                out.extend_from_slice(b"]\n");
            }
        } else if let Some(body) = bodies.next() {
            out = body;
            out.push(b'\n');
        }
        out
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // A connection closed with answers still held gives their bytes back.
        self.budget
            .held
            .set(self.budget.held.get().saturating_sub(self.bytes));
    }
}

/// A `Write` into memory that fails instead of growing past `cap` bytes.
struct CappedWriter {
    buf: Vec<u8>,
    cap: usize,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.cap {
            return Err(std::io::Error::other("answer larger than the limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The wire form of a response.
#[derive(Serialize)]
struct Response<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a RpcError>,
}

impl<'a> Response<'a> {
    fn new(id: &'a Value, result: &'a Result<Value, RpcError>) -> Self {
        Response {
            jsonrpc: "2.0",
            id,
            result: result.as_ref().ok(),
            error: result.as_ref().err(),
        }
    }
}

/// Encodes a response if it fits in `cap` bytes; `None` when it does not (encoding stops at
/// the limit).
fn encode_capped(id: &Value, result: &Result<Value, RpcError>, cap: usize) -> Option<Vec<u8>> {
    let mut w = CappedWriter {
        buf: Vec::new(),
        cap,
    };
    match serde_json::to_writer(&mut w, &Response::new(id, result)) {
        Ok(()) => Some(w.buf),
        Err(e) if e.is_io() => None,
        // Not an I/O error: the full encoder reports and falls back.
        Err(_) => Some(encode_response(id, result)),
    }
}

/// Encodes `{"jsonrpc":"2.0","id":..,"result":..}` or `{"jsonrpc":"2.0","id":..,"error":..}`.
pub(crate) fn encode_response(id: &Value, result: &Result<Value, RpcError>) -> Vec<u8> {
    match serde_json::to_vec(&Response::new(id, result)) {
        Ok(bytes) => bytes,
        Err(e) => {
            // Only possible for a Value holding a non-string map key, which Value cannot hold;
            // answer an internal error rather than nothing.
            tracing::error!(error = %e, "cannot encode RPC response");
            let fallback = Err(RpcError::internal("Internal error"));
            serde_json::to_vec(&Response::new(id, &fallback)).unwrap_or_default()
        }
    }
}

/// Where the answer of a [`Request`] goes.
enum Responder {
    /// Into slot `index` of a connection's pending entry.
    Conn { pending: PendingRef, index: usize },
    /// To a callback in this process (config replay, the HTTP bridge, tests).
    Local(Box<dyn FnOnce(Result<Value, RpcError>)>),
}

/// One JSON-RPC call, handed to a method handler.
///
/// It owns the way back to its client: answer it exactly once with [`Request::respond`],
/// [`Request::ok`] or [`Request::err`], now or later (keep it and answer from a completion
/// callback on the same OS thread). A `Request` is `!Send` on purpose: it lives on the thread
/// that owns the registry. Dropping it unanswered answers `-32603` and logs an error, so a
/// client never waits forever.
///
/// ```compile_fail
/// fn needs_send<T: Send>() {}
/// needs_send::<rpc::Request>();
/// ```
pub struct Request {
    method: String,
    params: Option<Value>,
    id: Option<Value>,
    responder: Option<Responder>,
}

impl Request {
    /// A call whose answer goes to `done` (used for config replay, the HTTP bridge and tests).
    /// It is never a notification.
    pub fn local(
        method: impl Into<String>,
        params: Option<Value>,
        done: impl FnOnce(Result<Value, RpcError>) + 'static,
    ) -> Request {
        Request {
            method: method.into(),
            params,
            id: Some(Value::Null),
            responder: Some(Responder::Local(Box::new(done))),
        }
    }

    /// A call received on a connection; its answer fills `pending[index]`.
    pub(crate) fn remote(
        method: String,
        params: Option<Value>,
        id: Option<Value>,
        pending: PendingRef,
        index: usize,
    ) -> Request {
        Request {
            method,
            params,
            id,
            responder: Some(Responder::Conn { pending, index }),
        }
    }

    /// The method name.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The parameters; `None` when absent or `null` (SPDK treats both alike).
    pub fn params(&self) -> Option<&Value> {
        self.params.as_ref()
    }

    /// The request id; `None` for a notification.
    pub fn id(&self) -> Option<&Value> {
        self.id.as_ref()
    }

    /// True for a notification (no `id`): whatever the handler answers is not sent.
    pub fn is_notification(&self) -> bool {
        self.id.is_none()
    }

    /// Deserializes the parameters. Missing parameters are read as `{}` (so a struct whose
    /// fields are all optional parses), then as `null` (for `()` and `Option`). A failure is
    /// `-32602` with `"Invalid parameters: "` followed by serde's message.
    pub fn parse<P: DeserializeOwned>(&self) -> Result<P, RpcError> {
        match &self.params {
            Some(v) => P::deserialize(v).map_err(RpcError::from),
            None => match P::deserialize(&Value::Object(serde_json::Map::new())) {
                Ok(p) => Ok(p),
                Err(e) => P::deserialize(&Value::Null).map_err(|_| RpcError::from(e)),
            },
        }
    }

    /// Answers the call. For a notification nothing is sent.
    pub fn respond(mut self, result: Result<Value, RpcError>) {
        self.finish(result);
    }

    /// Answers with `result`, serialized; a serialization failure answers `-32603`.
    pub fn ok(self, result: impl Serialize) {
        let result = serde_json::to_value(result).map_err(|e| {
            tracing::error!(method = %self.method, error = %e, "cannot serialize RPC result");
            RpcError::internal("Internal error")
        });
        self.respond(result);
    }

    /// Answers with an error.
    pub fn err(self, error: RpcError) {
        self.respond(Err(error));
    }

    fn finish(&mut self, result: Result<Value, RpcError>) {
        let Some(responder) = self.responder.take() else {
            return;
        };
        if let Err(e) = &result {
            tracing::debug!(method = %self.method, code = e.code, message = %e.message, "RPC error");
        }
        match responder {
            Responder::Local(done) => done(result),
            Responder::Conn { pending, index } => {
                let mut pending = pending.borrow_mut();
                if !pending.answer(index, self.id.as_ref(), &result) {
                    tracing::error!(
                        method = %self.method,
                        limit = pending.budget.max_answer,
                        "RPC answer larger than max_answer_size; answering an error instead"
                    );
                }
            }
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.responder.is_some() {
            tracing::error!(method = %self.method, "RPC request dropped without an answer");
            self.finish(Err(RpcError::internal(
                "Internal error: the method dropped the request without answering",
            )));
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("params", &self.params)
            .field("id", &self.id)
            .field("answered", &self.responder.is_none())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;
    use std::cell::RefCell;

    type Slot = Rc<RefCell<Option<Result<Value, RpcError>>>>;

    fn capture() -> (Slot, impl FnOnce(Result<Value, RpcError>) + 'static) {
        let slot = Rc::new(RefCell::new(None));
        let s = slot.clone();
        (slot, move |r| *s.borrow_mut() = Some(r))
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct P {
        name: String,
        #[serde(default)]
        size: u64,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    struct AllOptional {
        current: Option<bool>,
    }

    #[test]
    fn parse_reads_params_and_names_the_problem() {
        let r = Request::local("m", Some(json!({"name": "a", "size": 4})), |_| {});
        assert_eq!(
            r.parse::<P>().unwrap(),
            P {
                name: "a".into(),
                size: 4
            }
        );
        let r = Request::local("m", Some(json!({"name": "a", "bogus": 1})), |_| {});
        let e = r.parse::<P>().unwrap_err();
        assert_eq!(e.code, -32602);
        assert_eq!(
            e.message,
            "Invalid parameters: unknown field `bogus`, expected `name` or `size`"
        );
    }

    #[test]
    fn missing_params_read_as_empty_object_then_null() {
        let r = Request::local("m", None, |_| {});
        assert_eq!(r.parse::<AllOptional>().unwrap(), AllOptional::default());
        r.parse::<()>().unwrap();
        assert_eq!(r.parse::<Option<P>>().unwrap(), None);
        let e = r.parse::<P>().unwrap_err();
        assert_eq!(e.message, "Invalid parameters: missing field `name`");
    }

    #[test]
    fn dropping_an_unanswered_request_answers_internal_error() {
        let (slot, done) = capture();
        drop(Request::local("m", None, done));
        let e = slot.borrow_mut().take().unwrap().unwrap_err();
        assert_eq!(e.code, -32603);
    }

    #[test]
    fn batch_output_skips_notifications_and_keeps_order() {
        let pending = Pending::new(3, true, &Budget::new(1 << 20));
        let a = Request::remote("a".into(), None, Some(json!(1)), pending.clone(), 0);
        let b = Request::remote("b".into(), None, None, pending.clone(), 1);
        let c = Request::remote("c".into(), None, Some(json!("x")), pending.clone(), 2);
        c.ok(7);
        assert!(!pending.borrow().is_complete());
        b.ok(true);
        a.err(RpcError::errno(libc::EEXIST));
        assert!(pending.borrow().is_complete());
        let out = String::from_utf8(pending.borrow_mut().take_output()).unwrap();
        assert_eq!(
            out,
            "[{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-17,\"message\":\"File exists\"}},\
             {\"jsonrpc\":\"2.0\",\"id\":\"x\",\"result\":7}]\n"
        );
    }

    #[test]
    fn notification_answer_produces_no_bytes() {
        let pending = Pending::new(1, false, &Budget::new(1 << 20));
        Request::remote("a".into(), None, None, pending.clone(), 0).ok(1);
        assert!(pending.borrow().is_complete());
        assert!(pending.borrow_mut().take_output().is_empty());
    }

    #[test]
    fn answer_larger_than_max_answer_becomes_error_and_is_not_held() {
        let budget = Budget::new(64);
        let pending = Pending::new(1, false, &budget);
        let big = "x".repeat(100);
        Request::remote("big".into(), None, Some(json!(9)), pending.clone(), 0).ok(&big);
        let error = "{\"jsonrpc\":\"2.0\",\"id\":9,\"error\":{\"code\":-32603,\
                     \"message\":\"Send buf exceeded maximum size (64)\"}}";
        assert_eq!(budget.held(), error.len());
        let out = String::from_utf8(pending.borrow_mut().take_output()).unwrap();
        assert_eq!(out, format!("{error}\n"));
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn batch_answers_past_max_answer_become_errors_in_order() {
        let budget = Budget::new(100);
        let pending = Pending::new(3, true, &budget);
        // Each answer is 56 bytes: the first fits in 100, a second one no longer does.
        let small = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"aaaaaaaaaaaaaaaaaaaa\"}";
        for i in 0..3 {
            let r = Request::remote("m".into(), None, Some(json!(i + 1)), pending.clone(), i);
            r.ok("a".repeat(20));
        }
        let out = String::from_utf8(pending.borrow_mut().take_output()).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(small.len(), 56);
        assert!(out.starts_with(&format!("[{small},")));
        assert_eq!(
            v[0],
            json!({"jsonrpc": "2.0", "id": 1, "result": "a".repeat(20)})
        );
        for (i, id) in [(1, 2), (2, 3)] {
            assert_eq!(
                v[i],
                json!({"jsonrpc": "2.0", "id": id, "error":
                    {"code": -32603, "message": "Send buf exceeded maximum size (100)"}})
            );
        }
        assert_eq!(budget.held(), 0);
    }
}
