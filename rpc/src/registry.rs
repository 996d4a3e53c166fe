//! The method registry and dispatcher (SPDK `lib/rpc/rpc.c`).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::rc::{Rc, Weak};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Request, RpcError, RpcState, StateMask};

type Handler = Rc<dyn Fn(Request)>;

struct Method {
    name: String,
    mask: StateMask,
    handler: Handler,
    /// For a deprecated alias: the name of the method it stands for.
    alias_of: Option<String>,
    warned: Cell<bool>,
}

#[derive(Default)]
struct Inner {
    /// Registration order (what `rpc_get_methods` lists).
    methods: Vec<Method>,
    by_name: HashMap<String, usize>,
    allowlist: Option<HashSet<String>>,
}

/// The RPC methods of one application and the current RPC state.
///
/// Lives on the app thread, shared by `Rc` (it is `!Send`). Handlers run on that thread and
/// may use the registry again (register methods, change state, call other methods): no borrow
/// is held while a handler runs. `rpc_get_methods` is registered by [`RpcRegistry::new`].
pub struct RpcRegistry {
    inner: RefCell<Inner>,
    state: Cell<RpcState>,
    correct: Cell<bool>,
}

/// Parameters of `rpc_get_methods` (SPDK `rpc_rpc_get_methods_ctx`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetMethodsParams {
    /// `null` is read as false (jsonrpsee clients send it for an unset option).
    #[serde(default)]
    current: Option<bool>,
    #[serde(default)]
    include_aliases: Option<bool>,
}

impl RpcRegistry {
    /// An empty registry in the STARTUP state, with `rpc_get_methods` registered.
    pub fn new() -> Rc<Self> {
        Rc::new_cyclic(|weak: &Weak<RpcRegistry>| {
            let registry = RpcRegistry {
                inner: RefCell::new(Inner::default()),
                state: Cell::new(RpcState::Startup),
                correct: Cell::new(true),
            };
            let weak = weak.clone();
            registry.register_typed(
                "rpc_get_methods",
                StateMask::BOTH,
                move |p: GetMethodsParams, req: Request| match weak.upgrade() {
                    Some(reg) => req.ok(reg.list(
                        p.current.unwrap_or(false),
                        p.include_aliases.unwrap_or(false),
                    )),
                    None => req.err(RpcError::internal("RPC registry is gone")),
                },
            );
            registry
        })
    }

    /// Registers `name`, callable in the states of `mask`. A duplicate name is refused with an
    /// error log (SPDK: "duplicate RPC ... registered") and makes [`Self::verify_methods`] false.
    pub fn register(&self, name: &str, mask: StateMask, handler: impl Fn(Request) + 'static) {
        self.insert(name, mask, Rc::new(handler), None);
    }

    /// Registers `name` with typed parameters: the registry parses them with
    /// [`Request::parse`] first and answers `-32602` itself when they do not parse.
    pub fn register_typed<P: DeserializeOwned + 'static>(
        &self,
        name: &str,
        mask: StateMask,
        handler: impl Fn(P, Request) + 'static,
    ) {
        self.register(name, mask, move |req: Request| match req.parse::<P>() {
            Ok(p) => handler(p, req),
            Err(e) => {
                tracing::error!(method = req.method(), error = %e.message, "bad RPC parameters");
                req.err(e);
            }
        });
    }

    /// Registers `alias` as a deprecated name of the existing method `name` (SPDK
    /// `spdk_rpc_register_alias_deprecated`); calling it logs a warning once.
    pub fn register_alias_deprecated(&self, alias: &str, name: &str) {
        let target = {
            let inner = self.inner.borrow();
            inner
                .by_name
                .get(name)
                .map(|&i| &inner.methods[i])
                .map(|m| (m.alias_of.is_some(), m.mask, m.handler.clone()))
        };
        match target {
            None => {
                tracing::error!(alias, name, "cannot create alias: method does not exist");
                self.correct.set(false);
            }
            Some((true, _, _)) => {
                tracing::error!(alias, name, "cannot create alias of an alias");
                self.correct.set(false);
            }
            Some((false, mask, handler)) => {
                self.insert(alias, mask, handler, Some(name.to_string()));
            }
        }
    }

    fn insert(&self, name: &str, mask: StateMask, handler: Handler, alias_of: Option<String>) {
        let mut inner = self.inner.borrow_mut();
        if inner.by_name.contains_key(name) {
            tracing::error!(method = name, "duplicate RPC registered");
            self.correct.set(false);
            return;
        }
        let index = inner.methods.len();
        inner.methods.push(Method {
            name: name.to_string(),
            mask,
            handler,
            alias_of,
            warned: Cell::new(false),
        });
        inner.by_name.insert(name.to_string(), index);
    }

    /// False when a registration was refused (duplicate, bad alias), as
    /// `spdk_rpc_verify_methods`.
    pub fn verify_methods(&self) -> bool {
        self.correct.get()
    }

    /// Restricts callable methods to `names` (`--rpcs-allowed`); `None` allows all. Methods not
    /// allowed answer "Method not found" and are not listed.
    pub fn set_allowlist(&self, names: Option<&[&str]>) {
        self.inner.borrow_mut().allowlist =
            names.map(|n| n.iter().map(|s| s.to_string()).collect());
    }

    /// Sets the RPC state (the app sets RUNTIME after subsystem init).
    pub fn set_state(&self, state: RpcState) {
        self.state.set(state);
    }

    /// The current RPC state.
    pub fn state(&self) -> RpcState {
        self.state.get()
    }

    /// Names of the callable methods without aliases, in registration order; with `current`,
    /// only those allowed in the current state (`rpc_get_methods`).
    pub fn methods(&self, current: bool) -> Vec<String> {
        self.list(current, false)
    }

    /// The state mask of `name`, if registered (`spdk_rpc_get_method_state_mask`).
    pub fn state_mask(&self, name: &str) -> Option<StateMask> {
        let inner = self.inner.borrow();
        inner.by_name.get(name).map(|&i| inner.methods[i].mask)
    }

    fn list(&self, current: bool, include_aliases: bool) -> Vec<String> {
        let inner = self.inner.borrow();
        let state = self.state.get();
        inner
            .methods
            .iter()
            .filter(|m| Self::allowed(&inner, &m.name))
            .filter(|m| include_aliases || m.alias_of.is_none())
            .filter(|m| !current || m.mask.allows(state))
            .map(|m| m.name.clone())
            .collect()
    }

    fn allowed(inner: &Inner, name: &str) -> bool {
        inner.allowlist.as_ref().is_none_or(|a| a.contains(name))
    }

    /// Dispatches one call: an unknown (or not allowed) method answers `-32601 "Method not
    /// found"`, a method not allowed in the current state SPDK's `-1` state error; otherwise the
    /// handler runs and answers now or later.
    pub fn call(&self, req: Request) {
        let found = {
            let inner = self.inner.borrow();
            inner
                .by_name
                .get(req.method())
                .map(|&i| &inner.methods[i])
                .filter(|m| Self::allowed(&inner, &m.name))
                .map(|m| {
                    if let Some(target) = &m.alias_of
                        && !m.warned.replace(true)
                    {
                        tracing::warn!(
                            "RPC method {} is deprecated.  Use {} instead.",
                            m.name,
                            target
                        );
                    }
                    (m.mask, m.handler.clone())
                })
        };
        match found {
            None => {
                let e = RpcError::method_not_found(req.method());
                req.err(e);
            }
            Some((mask, _)) if !mask.allows(self.state.get()) => {
                tracing::error!(method = req.method(), state = ?self.state.get(), "RPC not allowed in this state");
                req.err(RpcError::state(self.state.get()));
            }
            Some((_, handler)) => handler(req),
        }
    }

    /// Calls `method` from inside the process (config replay, the HTTP bridge); `done` gets the
    /// answer, possibly later, on this thread.
    pub fn call_local(
        &self,
        method: &str,
        params: Option<Value>,
        done: impl FnOnce(Result<Value, RpcError>) + 'static,
    ) {
        let params = params.filter(|p| !p.is_null());
        self.call(Request::local(method, params, done));
    }
}

impl fmt::Debug for RpcRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcRegistry")
            .field("state", &self.state.get())
            .field("methods", &self.list(false, true))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type Answer = Rc<RefCell<Option<Result<Value, RpcError>>>>;

    fn call(reg: &RpcRegistry, method: &str, params: Option<Value>) -> Answer {
        let slot: Answer = Rc::new(RefCell::new(None));
        let s = slot.clone();
        reg.call_local(method, params, move |r| *s.borrow_mut() = Some(r));
        slot
    }

    fn answer(a: &Answer) -> Result<Value, RpcError> {
        a.borrow_mut().take().expect("answered")
    }

    fn sample() -> Rc<RpcRegistry> {
        let reg = RpcRegistry::new();
        reg.register("start_only", StateMask::STARTUP, |r| r.ok("s"));
        reg.register("run_only", StateMask::RUNTIME, |r| r.ok("r"));
        reg.register("both", StateMask::BOTH, |r| r.ok("b"));
        reg
    }

    #[test]
    fn rpc_get_methods_lists_in_registration_order_and_filters_by_state() {
        let reg = sample();
        assert_eq!(
            answer(&call(&reg, "rpc_get_methods", None)).unwrap(),
            json!(["rpc_get_methods", "start_only", "run_only", "both"])
        );
        let current = call(&reg, "rpc_get_methods", Some(json!({"current": true})));
        assert_eq!(
            answer(&current).unwrap(),
            json!(["rpc_get_methods", "start_only", "both"])
        );
        reg.set_state(RpcState::Runtime);
        assert_eq!(
            reg.methods(true),
            vec!["rpc_get_methods", "run_only", "both"]
        );
    }

    #[test]
    fn rpc_get_methods_rejects_unknown_params() {
        let reg = sample();
        let e = answer(&call(&reg, "rpc_get_methods", Some(json!({"x": 1})))).unwrap_err();
        assert_eq!(e.code, -32602);
        assert_eq!(
            e.message,
            "Invalid parameters: unknown field `x`, expected `current` or `include_aliases`"
        );
    }

    #[test]
    fn wrong_state_answers_spdk_state_error() {
        let reg = sample();
        let e = answer(&call(&reg, "run_only", None)).unwrap_err();
        assert_eq!(e, RpcError::state(RpcState::Startup));
        reg.set_state(RpcState::Runtime);
        let e = answer(&call(&reg, "start_only", None)).unwrap_err();
        assert_eq!(e, RpcError::state(RpcState::Runtime));
        assert_eq!(answer(&call(&reg, "run_only", None)).unwrap(), json!("r"));
    }

    #[test]
    fn unknown_method_answers_method_not_found() {
        let reg = sample();
        let e = answer(&call(&reg, "nope", None)).unwrap_err();
        assert_eq!(e, RpcError::new(-32601, "Method not found"));
    }

    #[test]
    fn duplicate_registration_is_refused_and_reported() {
        let reg = sample();
        assert!(reg.verify_methods());
        reg.register("both", StateMask::BOTH, |r| r.ok("second"));
        assert!(!reg.verify_methods());
        assert_eq!(answer(&call(&reg, "both", None)).unwrap(), json!("b"));
    }

    #[test]
    fn deprecated_alias_calls_target_and_is_listed_only_on_request() {
        let reg = sample();
        reg.register_alias_deprecated("old_both", "both");
        assert_eq!(answer(&call(&reg, "old_both", None)).unwrap(), json!("b"));
        assert!(!reg.methods(false).contains(&"old_both".to_string()));
        let all = answer(&call(
            &reg,
            "rpc_get_methods",
            Some(json!({"include_aliases": true})),
        ))
        .unwrap();
        assert_eq!(all.as_array().unwrap().last().unwrap(), "old_both");
        reg.register_alias_deprecated("bad", "missing");
        assert!(!reg.verify_methods());
    }

    #[test]
    fn allowlist_hides_other_methods() {
        let reg = sample();
        reg.set_allowlist(Some(&["both", "rpc_get_methods"]));
        let e = answer(&call(&reg, "start_only", None)).unwrap_err();
        assert_eq!(e.code, -32601);
        assert_eq!(reg.methods(false), vec!["rpc_get_methods", "both"]);
    }

    #[test]
    fn typed_handler_gets_parsed_params_or_minus_32602() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct P {
            n: u32,
        }
        let reg = RpcRegistry::new();
        reg.register_typed("double", StateMask::BOTH, |p: P, r: Request| r.ok(p.n * 2));
        assert_eq!(
            answer(&call(&reg, "double", Some(json!({"n": 21})))).unwrap(),
            json!(42)
        );
        let e = answer(&call(&reg, "double", Some(json!({"n": "x"})))).unwrap_err();
        assert_eq!(e.code, -32602);
        assert_eq!(
            e.message,
            "Invalid parameters: invalid type: string \"x\", expected u32"
        );
    }

    #[test]
    fn handler_may_reenter_the_registry() {
        let reg = RpcRegistry::new();
        let weak = Rc::downgrade(&reg);
        reg.register("framework_start_init", StateMask::STARTUP, move |r| {
            let reg = weak.upgrade().unwrap();
            reg.set_state(RpcState::Runtime);
            reg.register("late", StateMask::RUNTIME, |r| r.ok(1));
            r.ok(true);
        });
        assert_eq!(
            answer(&call(&reg, "framework_start_init", None)).unwrap(),
            json!(true)
        );
        assert_eq!(reg.state(), RpcState::Runtime);
        assert_eq!(answer(&call(&reg, "late", None)).unwrap(), json!(1));
    }
}
