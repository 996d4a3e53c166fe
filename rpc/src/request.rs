//! One JSON-RPC call and the way back to its caller.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::RpcError;

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
}

/// Shared handle on a [`Pending`].
pub(crate) type PendingRef = Rc<RefCell<Pending>>;

impl Pending {
    /// Slots for `count` calls; `batch` selects the array form of the answer.
    pub(crate) fn new(count: usize, batch: bool) -> PendingRef {
        Rc::new(RefCell::new(Pending {
            parts: vec![None; count],
            remaining: count,
            batch,
        }))
    }

    /// A single, already-known answer (errors found while framing).
    pub(crate) fn ready(bytes: Vec<u8>) -> PendingRef {
        Rc::new(RefCell::new(Pending {
            parts: vec![Some(Some(bytes))],
            remaining: 0,
            batch: false,
        }))
    }

    /// Fills slot `index`; a slot is filled at most once.
    pub(crate) fn fill(&mut self, index: usize, bytes: Option<Vec<u8>>) {
        if let Some(slot) = self.parts.get_mut(index)
            && slot.is_none()
        {
            *slot = Some(bytes);
            self.remaining -= 1;
        }
    }

    /// True when every call has been answered.
    pub(crate) fn is_complete(&self) -> bool {
        self.remaining == 0
    }

    /// The bytes to write for a complete entry, with SPDK's trailing newline; empty when
    /// nothing is owed (notifications only).
    pub(crate) fn take_output(&mut self) -> Vec<u8> {
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

/// Encodes `{"jsonrpc":"2.0","id":..,"result":..}` or `{"jsonrpc":"2.0","id":..,"error":..}`.
pub(crate) fn encode_response(id: &Value, result: &Result<Value, RpcError>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Response<'a> {
        jsonrpc: &'static str,
        id: &'a Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<&'a Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a RpcError>,
    }
    let response = Response {
        jsonrpc: "2.0",
        id,
        result: result.as_ref().ok(),
        error: result.as_ref().err(),
    };
    match serde_json::to_vec(&response) {
        Ok(bytes) => bytes,
        Err(e) => {
            // Only possible for a Value holding a non-string map key, which Value cannot hold;
            // answer an internal error rather than nothing.
            tracing::error!(error = %e, "cannot encode RPC response");
            let fallback = Response {
                jsonrpc: "2.0",
                id,
                result: None,
                error: Some(&RpcError::internal("Internal error")),
            };
            serde_json::to_vec(&fallback).unwrap_or_default()
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
                let bytes = self.id.as_ref().map(|id| encode_response(id, &result));
                pending.borrow_mut().fill(index, bytes);
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
        let pending = Pending::new(3, true);
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
        let pending = Pending::new(1, false);
        Request::remote("a".into(), None, None, pending.clone(), 0).ok(1);
        assert!(pending.borrow().is_complete());
        assert!(pending.borrow_mut().take_output().is_empty());
    }
}
