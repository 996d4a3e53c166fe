//! The subsystem graph (SPDK `lib/init/subsystem.c`): each subsystem declares the ones it depends
//! on; they are initialised in dependency order and finalised in reverse.
//!
//! Everything here runs on the app thread. `init` and `fini` may complete later (after messages to
//! other threads): they take a completion callback.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::Value;

/// Completion of a subsystem's `init`: `Err` carries a message for the log.
pub type InitDone = Box<dyn FnOnce(Result<(), String>)>;
/// Completion of a subsystem's `fini`.
pub type FiniDone = Box<dyn FnOnce()>;

/// A module subsystem of the application (SPDK `struct spdk_subsystem`).
pub trait Subsystem {
    /// Name, as in `framework_get_subsystems` and the config file.
    fn name(&self) -> &'static str;
    /// Names of the subsystems this one needs initialised first.
    fn depends_on(&self) -> &'static [&'static str] {
        &[]
    }
    /// Brings the subsystem up; calls `done` once, possibly later.
    fn init(&self, done: InitDone) {
        done(Ok(()))
    }
    /// Takes the subsystem down; calls `done` once, possibly later.
    fn fini(&self, done: FiniDone) {
        done()
    }
    /// The RPC calls that recreate this subsystem's current state (`write_config_json`), each
    /// `{"method": ..., "params": ...}`, in replay order. `with_batches` lets a subsystem group
    /// calls into arrays (SPDK 26.x); the default ignores it.
    fn config_json(&self, with_batches: bool) -> Vec<Value> {
        let _ = with_batches;
        Vec::new()
    }
}

/// Subsystems sorted so that each comes after all it depends on.
#[derive(Clone, Default)]
pub struct SubsystemGraph {
    sorted: Vec<Rc<dyn Subsystem>>,
}

impl std::fmt::Debug for SubsystemGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.sorted.iter().map(|s| s.name()))
            .finish()
    }
}

impl SubsystemGraph {
    /// Sorts `list` as SPDK does: repeatedly take, in registration order, the subsystems whose
    /// dependencies are all placed. Fails on a duplicate name, an unknown dependency or a cycle.
    pub fn new(list: Vec<Rc<dyn Subsystem>>) -> Result<SubsystemGraph, String> {
        for (i, s) in list.iter().enumerate() {
            if list[..i].iter().any(|o| o.name() == s.name()) {
                return Err(format!("subsystem {} registered twice", s.name()));
            }
            for d in s.depends_on() {
                if !list.iter().any(|o| o.name() == *d) {
                    return Err(format!(
                        "subsystem {} depends on unknown subsystem {d}",
                        s.name()
                    ));
                }
            }
        }
        let mut pending = list;
        let mut sorted: Vec<Rc<dyn Subsystem>> = Vec::with_capacity(pending.len());
        while !pending.is_empty() {
            let before = pending.len();
            let mut i = 0;
            while i < pending.len() {
                let ready = pending[i]
                    .depends_on()
                    .iter()
                    .all(|d| sorted.iter().any(|s| s.name() == *d));
                if ready {
                    sorted.push(pending.remove(i));
                } else {
                    i += 1;
                }
            }
            if pending.len() == before {
                let names: Vec<_> = pending.iter().map(|s| s.name()).collect();
                return Err(format!("dependency cycle among subsystems {names:?}"));
            }
        }
        Ok(SubsystemGraph { sorted })
    }

    /// The subsystems in init order.
    pub fn iter(&self) -> impl Iterator<Item = &Rc<dyn Subsystem>> {
        self.sorted.iter()
    }

    /// Finds a subsystem by name.
    pub fn get(&self, name: &str) -> Option<&Rc<dyn Subsystem>> {
        self.sorted.iter().find(|s| s.name() == name)
    }

    /// `framework_get_subsystems`: `[{"subsystem": name, "depends_on": [...]}, ...]` in init order.
    pub fn describe(&self) -> Value {
        Value::Array(
            self.sorted
                .iter()
                .map(|s| serde_json::json!({"subsystem": s.name(), "depends_on": s.depends_on()}))
                .collect(),
        )
    }

    /// Initialises every subsystem in order, then calls `done`. On the first failure the
    /// subsystems already up are finalised in reverse order and `done` gets the error, prefixed
    /// with the failing subsystem's name.
    pub fn init_all(&self, done: InitDone) {
        init_from(Rc::new(self.sorted.clone()), 0, done);
    }

    /// Finalises every subsystem in reverse order, then calls `done`.
    pub fn fini_all(&self, done: FiniDone) {
        fini_down_from(Rc::new(self.sorted.clone()), self.sorted.len(), done);
    }
}

fn init_from(list: Rc<Vec<Rc<dyn Subsystem>>>, i: usize, done: InitDone) {
    let Some(s) = list.get(i).cloned() else {
        done(Ok(()));
        return;
    };
    tracing::info!(subsystem = s.name(), "initialising subsystem");
    // Guard against a subsystem calling `done` twice.
    let done = Rc::new(RefCell::new(Some(done)));
    let next = list.clone();
    s.init(Box::new(move |r| {
        let Some(done) = done.borrow_mut().take() else {
            tracing::error!("subsystem init completed twice");
            return;
        };
        match r {
            Ok(()) => init_from(next, i + 1, done),
            Err(e) => {
                let name = next[i].name();
                tracing::error!(subsystem = name, error = %e, "subsystem init failed");
                fini_down_from(
                    next.clone(),
                    i,
                    Box::new(move || done(Err(format!("subsystem {name}: {e}")))),
                );
            }
        }
    }));
}

/// Finalises `list[..end]` in reverse order.
fn fini_down_from(list: Rc<Vec<Rc<dyn Subsystem>>>, end: usize, done: FiniDone) {
    if end == 0 {
        done();
        return;
    }
    let s = list[end - 1].clone();
    tracing::info!(subsystem = s.name(), "finalising subsystem");
    let next = list.clone();
    s.fini(Box::new(move || fini_down_from(next, end - 1, done)));
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        name: &'static str,
        deps: &'static [&'static str],
        log: Rc<RefCell<Vec<String>>>,
        fail: bool,
    }

    impl Subsystem for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn depends_on(&self) -> &'static [&'static str] {
            self.deps
        }
        fn init(&self, done: InitDone) {
            self.log.borrow_mut().push(format!("init {}", self.name));
            done(if self.fail {
                Err("boom".into())
            } else {
                Ok(())
            })
        }
        fn fini(&self, done: FiniDone) {
            self.log.borrow_mut().push(format!("fini {}", self.name));
            done()
        }
    }

    fn fake(
        log: &Rc<RefCell<Vec<String>>>,
        name: &'static str,
        deps: &'static [&'static str],
        fail: bool,
    ) -> Rc<dyn Subsystem> {
        Rc::new(Fake {
            name,
            deps,
            log: log.clone(),
            fail,
        })
    }

    #[test]
    fn sorted_by_dependency_then_registration_order() {
        let log = Rc::default();
        let g = SubsystemGraph::new(vec![
            fake(&log, "nvmf", &["bdev", "sock"], false),
            fake(&log, "bdev", &["iobuf", "sock"], false),
            fake(&log, "sock", &[], false),
            fake(&log, "iobuf", &[], false),
        ])
        .unwrap();
        let names: Vec<_> = g.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["sock", "iobuf", "bdev", "nvmf"]);
        assert_eq!(
            g.describe()[2],
            serde_json::json!({"subsystem":"bdev","depends_on":["iobuf","sock"]})
        );
    }

    #[test]
    fn init_in_order_and_fini_in_reverse() {
        let log: Rc<RefCell<Vec<String>>> = Rc::default();
        let g = SubsystemGraph::new(vec![
            fake(&log, "b", &["a"], false),
            fake(&log, "a", &[], false),
        ])
        .unwrap();
        let ok = Rc::new(RefCell::new(None));
        let ok2 = ok.clone();
        g.init_all(Box::new(move |r| *ok2.borrow_mut() = Some(r)));
        assert_eq!(*ok.borrow(), Some(Ok(())));
        g.fini_all(Box::new(|| {}));
        assert_eq!(*log.borrow(), ["init a", "init b", "fini b", "fini a"]);
    }

    #[test]
    fn failed_init_finalises_what_was_started() {
        let log: Rc<RefCell<Vec<String>>> = Rc::default();
        let g = SubsystemGraph::new(vec![
            fake(&log, "a", &[], false),
            fake(&log, "b", &["a"], false),
            fake(&log, "c", &["b"], true),
            fake(&log, "d", &["c"], false),
        ])
        .unwrap();
        let res = Rc::new(RefCell::new(None));
        let res2 = res.clone();
        g.init_all(Box::new(move |r| *res2.borrow_mut() = Some(r)));
        assert_eq!(*res.borrow(), Some(Err("subsystem c: boom".to_string())));
        assert_eq!(
            *log.borrow(),
            ["init a", "init b", "init c", "fini b", "fini a"]
        );
    }

    #[test]
    fn unknown_dependency_cycle_and_duplicate_are_refused() {
        let log = Rc::default();
        assert!(SubsystemGraph::new(vec![fake(&log, "a", &["zz"], false)]).is_err());
        assert!(
            SubsystemGraph::new(vec![
                fake(&log, "a", &["b"], false),
                fake(&log, "b", &["a"], false)
            ])
            .unwrap_err()
            .contains("cycle")
        );
        assert!(
            SubsystemGraph::new(vec![
                fake(&log, "a", &[], false),
                fake(&log, "a", &[], false)
            ])
            .is_err()
        );
    }
}
