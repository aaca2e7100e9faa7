//! One sandboxed Luau VM per worker thread, and the script chunks it has loaded.
//!
//! The VM is built once per thread: only the safe standard libraries (no `io`, `os`, `debug`,
//! `require`, `loadstring`, `getfenv`/`setfenv`, `print`), the helpers, then Luau's sandbox
//! (globals and libraries read-only). Each script runs in its own environment table that reads
//! through to the globals and is frozen once its top level has run, so hooks cannot leave
//! globals behind. An interrupt checks the call's deadline; a memory cap bounds the VM.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlua::{ChunkMode, Function, Lua, LuaOptions, StdLib, Table, VmState};

use super::Script;

/// How a failed call failed: the `kind` label of `portico_script_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// The call ran past its time budget.
    Budget,
    /// The VM ran out of its memory cap.
    Memory,
    /// The script raised an error (including writes to read-only tables).
    Runtime,
    /// A hook returned or set a value of the wrong shape.
    BadValue,
    /// A buffered response body was larger than the script's `max_body`.
    BodyTooLarge,
}

impl FailKind {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailKind::Budget => "budget",
            FailKind::Memory => "memory",
            FailKind::Runtime => "runtime",
            FailKind::BadValue => "bad-value",
            FailKind::BodyTooLarge => "body-too-large",
        }
    }
}

/// A failed script call: its kind and the Lua message (script:line: ...), for the log only.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What went wrong.
    pub kind: FailKind,
    /// Details for the log (never sent to the client).
    pub message: String,
}

impl Failure {
    /// A hook's value had the wrong shape.
    pub fn bad_value(message: impl Into<String>) -> Failure {
        Failure {
            kind: FailKind::BadValue,
            message: message.into(),
        }
    }
}

/// The deadline the interrupt checks.
struct Budget {
    /// Whether a hook or top level is running: mlua's own protected calls between hooks also
    /// reach the interrupt, and must not be cut by a deadline that has passed since.
    armed: Cell<bool>,
    deadline: Cell<Instant>,
    ticks: Cell<u32>,
    hit: Cell<bool>,
}

/// A script's hooks as loaded in one VM.
pub struct Loaded {
    name: Arc<str>,
    /// `on_request`, if defined.
    pub on_request: Option<Function>,
    /// `on_response`, if defined.
    pub on_response: Option<Function>,
    /// `on_aggregate`, if defined.
    pub on_aggregate: Option<Function>,
    /// `buffer_body` as the top level set it.
    pub buffer_body: Option<mlua::Value>,
    /// Other `on_*` globals (misspelt hooks), for `portico check`.
    pub unknown_hooks: Vec<String>,
}

/// Interrupts (loop iterations, calls) a call runs before its deadline is enforced.
const MIN_TICKS: u32 = 256;

/// Loaded chunks kept per VM before the cache is cleared (scripts removed from the config).
const MAX_LOADED: usize = 256;

/// A sandboxed VM with its loaded scripts.
pub struct Vm {
    /// The Luau state.
    pub lua: Lua,
    budget: Rc<Budget>,
    env_meta: Table,
    loaded: HashMap<u64, Loaded>,
    memory_limit: usize,
    /// Set after a memory error: the thread drops this VM and builds a fresh one.
    poisoned: bool,
}

/// The request id of the call in progress, for `log.*` lines; `quiet` during `portico check`'s
/// dry run, whose log lines would be noise.
#[derive(Default)]
pub struct CurrentRequest(pub RefCell<Option<http::HeaderValue>>, pub Cell<bool>);

impl Vm {
    /// Builds a sandboxed VM with the helpers installed and `memory_limit` bytes of memory.
    pub fn new(memory_limit: usize) -> mlua::Result<Vm> {
        let libs = StdLib::COROUTINE
            | StdLib::TABLE
            | StdLib::STRING
            | StdLib::UTF8
            | StdLib::BIT
            | StdLib::MATH
            | StdLib::BUFFER;
        let lua = Lua::new_with(libs, LuaOptions::default())?;
        let globals = lua.globals();
        // mlua installs a file-system `require` and a source `loadstring`; scripts get neither.
        for name in [
            "require",
            "loadstring",
            "getfenv",
            "setfenv",
            "print",
            "os",
            "io",
            "debug",
        ] {
            globals.raw_set(name, mlua::Nil)?;
        }
        lua.set_app_data(CurrentRequest::default());
        super::helpers::install(&lua)?;
        super::convert::install(&lua)?;
        lua.sandbox(true)?;
        let env_meta = lua.create_table()?;
        env_meta.raw_set("__index", globals)?;
        env_meta.raw_set("__metatable", "locked")?;
        env_meta.set_readonly(true);

        let budget = Rc::new(Budget {
            armed: Cell::new(false),
            deadline: Cell::new(Instant::now()),
            ticks: Cell::new(0),
            hit: Cell::new(false),
        });
        let b = budget.clone();
        lua.set_interrupt(move |_| {
            if !b.armed.get() {
                return Ok(VmState::Continue);
            }
            // Once past the deadline every interrupt fails, so a `pcall` cannot swallow the cut.
            if b.hit.get() {
                return Err(mlua::Error::runtime("script exceeded its time budget"));
            }
            let t = b.ticks.get().saturating_add(1);
            b.ticks.set(t);
            // A call that has barely run and is past its deadline was preempted, not busy: on a
            // loaded machine a wall-clock cut alone would fail short hooks at random.
            if t % 16 == 0 && t >= MIN_TICKS && Instant::now() >= b.deadline.get() {
                b.hit.set(true);
                return Err(mlua::Error::runtime("script exceeded its time budget"));
            }
            Ok(VmState::Continue)
        });
        lua.set_memory_limit(memory_limit)?;
        Ok(Vm {
            lua,
            budget,
            env_meta,
            loaded: HashMap::new(),
            memory_limit,
            poisoned: false,
        })
    }

    /// Starts a call's budget.
    pub fn arm(&self, budget: Duration) {
        self.budget.deadline.set(Instant::now() + budget);
        self.budget.ticks.set(0);
        self.budget.hit.set(false);
        self.budget.armed.set(true);
    }

    /// Ends a call's budget.
    pub fn disarm(&self) {
        self.budget.armed.set(false);
    }

    /// Classifies a Lua error; a memory error poisons the VM.
    pub fn failure(&mut self, err: &mlua::Error) -> Failure {
        let kind = if self.budget.hit.get() {
            FailKind::Budget
        } else if is_memory_error(err) {
            self.poisoned = true;
            FailKind::Memory
        } else {
            FailKind::Runtime
        };
        Failure {
            kind,
            message: error_text(err),
        }
    }

    /// The hooks of `script`, loading its chunk (and running its top level) on first use.
    pub fn loaded(&mut self, script: &Script) -> Result<&Loaded, Failure> {
        if !self.loaded.contains_key(&script.id) {
            let loaded = self
                .load(script, script.budget)
                .map_err(|e| self.failure(&e))?;
            // An older text of the same script is never called again.
            self.loaded.retain(|_, l| l.name != script.name);
            if self.loaded.len() >= MAX_LOADED {
                self.loaded.clear();
            }
            self.loaded.insert(script.id, loaded);
        }
        Ok(&self.loaded[&script.id])
    }

    /// Loads a chunk in its own environment, runs its top level within the budget, and reads
    /// its hooks; the environment is frozen afterwards.
    pub fn load(&mut self, script: &Script, budget: Duration) -> mlua::Result<Loaded> {
        let env = self.lua.create_table()?;
        env.set_metatable(Some(self.env_meta.clone()))?;
        let chunk = self
            .lua
            .load(&script.bytecode[..])
            .set_name(format!("={}", script.chunk_name))
            .set_mode(ChunkMode::Binary)
            .set_environment(env.clone())
            .into_function()?;
        self.arm(budget);
        let ran = chunk.call::<()>(());
        self.disarm();
        ran?;
        let hook = |name: &str| match env.raw_get::<mlua::Value>(name)? {
            mlua::Value::Nil => Ok(None),
            mlua::Value::Function(f) => Ok(Some(f)),
            other => Err(mlua::Error::runtime(format!(
                "`{name}` must be a function, not a {}",
                other.type_name()
            ))),
        };
        let mut unknown_hooks = Vec::new();
        for pair in env.pairs::<mlua::Value, mlua::Value>() {
            let (k, _) = pair?;
            if let mlua::Value::String(s) = k {
                let s = s.to_string_lossy();
                if s.starts_with("on_") && !super::HOOK_NAMES.contains(&s.as_str()) {
                    unknown_hooks.push(s);
                }
            }
        }
        let loaded = Loaded {
            name: script.name.clone(),
            on_request: hook("on_request")?,
            on_response: hook("on_response")?,
            on_aggregate: hook("on_aggregate")?,
            buffer_body: match env.raw_get::<mlua::Value>("buffer_body")? {
                mlua::Value::Nil => None,
                v => Some(v),
            },
            unknown_hooks,
        };
        env.set_readonly(true);
        Ok(loaded)
    }

    /// Sets the memory cap when the config changed it.
    fn set_memory_limit(&mut self, limit: usize) {
        if self.memory_limit != limit && self.lua.set_memory_limit(limit).is_ok() {
            self.memory_limit = limit;
        }
    }

    /// Silences `log.*` (the check's dry run).
    pub fn set_quiet(&self, quiet: bool) {
        if let Some(cur) = self.lua.app_data_ref::<CurrentRequest>() {
            cur.1.set(quiet);
        }
    }

    /// Publishes the request id `log.*` lines carry.
    pub fn set_request(&self, id: Option<&http::HeaderValue>) {
        if let Some(cur) = self.lua.app_data_ref::<CurrentRequest>() {
            *cur.0.borrow_mut() = id.cloned();
        }
    }
}

fn is_memory_error(err: &mlua::Error) -> bool {
    match err {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        mlua::Error::WithContext { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}

/// The innermost message of a Lua error (script:line: what), without the traceback.
pub fn error_text(err: &mlua::Error) -> String {
    match err {
        mlua::Error::CallbackError { cause, .. } => error_text(cause),
        mlua::Error::WithContext { cause, .. } => error_text(cause),
        mlua::Error::RuntimeError(m) | mlua::Error::SyntaxError { message: m, .. } => {
            m.lines().next().unwrap_or("").to_owned()
        }
        other => other.to_string().lines().next().unwrap_or("").to_owned(),
    }
}

thread_local! {
    static VM: RefCell<Option<Vm>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's VM (built on first use, or again after a memory error).
pub fn with_vm<R>(
    memory_limit: usize,
    f: impl FnOnce(&mut Vm) -> Result<R, Failure>,
) -> Result<R, Failure> {
    VM.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Vm::new(memory_limit).map_err(|e| Failure {
                kind: FailKind::Runtime,
                message: format!("cannot build the script VM: {e}"),
            })?);
        }
        let vm = slot.as_mut().expect("just built");
        vm.set_memory_limit(memory_limit);
        let out = f(vm);
        if vm.poisoned {
            *slot = None;
        }
        out
    })
}
