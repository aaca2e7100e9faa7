//! What `portico check` learns about a script before it ever runs on a request: Luau syntax
//! errors with line and column, a top level that fails, hooks that are not functions,
//! misspelt hooks (`on_reqest`), a `buffer_body` that is not a boolean.

use mlua::Compiler;

use std::sync::Arc;

use mlua::Value;

use super::objects::{CtxObj, ReqObj, RespObj};
use super::vm::{Loaded, Vm, error_text};
use super::{HOOK_NAMES, HookSet, RequestInfo, Script};

/// A problem in a script file, located in it.
#[derive(Debug)]
pub struct ScriptError {
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (best effort: Luau reports lines).
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

/// Compiles Luau source to bytecode; a syntax error comes back located.
pub fn compile(text: &str) -> Result<Vec<u8>, ScriptError> {
    Compiler::new()
        .set_optimization_level(2)
        .compile(text)
        .map_err(|e| locate(text, &error_text(&e)))
}

/// Loads the script in a scratch VM (running its top level within its budget, at least 10 ms)
/// and reads which hooks it defines.
pub fn hooks(
    vm: &mut Vm,
    script: &Script,
    text: &str,
) -> Result<(HookSet, bool), Vec<ScriptError>> {
    let budget = script.budget.max(std::time::Duration::from_millis(10));
    let loaded = vm
        .load(script, budget)
        .map_err(|e| vec![locate(text, &error_text(&e))])?;
    let mut errors = Vec::new();
    for name in &loaded.unknown_hooks {
        errors.push(ScriptError {
            line: line_of(text, name),
            col: 1,
            message: format!(
                "`{name}` is not a hook (hooks are {})",
                HOOK_NAMES.join(", ")
            ),
        });
    }
    let hooks = HookSet {
        request: loaded.on_request.is_some(),
        response: loaded.on_response.is_some(),
        aggregate: loaded.on_aggregate.is_some(),
    };
    if hooks == HookSet::default() && errors.is_empty() {
        errors.push(ScriptError {
            line: 1,
            col: 1,
            message: format!("defines no hook (define one of {})", HOOK_NAMES.join(", ")),
        });
    }
    let buffer_body = match &loaded.buffer_body {
        None => false,
        Some(mlua::Value::Boolean(b)) => *b,
        Some(other) => {
            errors.push(ScriptError {
                line: line_of(text, "buffer_body"),
                col: 1,
                message: format!(
                    "`buffer_body` must be true or false, not a {}",
                    other.type_name()
                ),
            });
            false
        }
    };
    if buffer_body && !hooks.response {
        errors.push(ScriptError {
            line: line_of(text, "buffer_body"),
            col: 1,
            message: "`buffer_body = true` needs an on_response hook to hand the body to".into(),
        });
    }
    if errors.is_empty() {
        errors.extend(dry_run(vm, &loaded, text));
    }
    if errors.is_empty() {
        Ok((hooks, buffer_body))
    } else {
        Err(errors)
    }
}

/// Calls each hook once on a bare request (GET /, no headers, no claims, empty vars) to catch a
/// hook that returns the wrong shape. A hook that fails on such a request is not an error here
/// (it may need a header or a claim); only a value it returns is judged.
fn dry_run(vm: &mut Vm, loaded: &Loaded, text: &str) -> Vec<ScriptError> {
    vm.set_quiet(true);
    let out = dry_run_hooks(vm, loaded, text);
    vm.set_quiet(false);
    out
}

fn dry_run_hooks(vm: &mut Vm, loaded: &Loaded, text: &str) -> Vec<ScriptError> {
    let lua = vm.lua.clone();
    let info = RequestInfo {
        route: Arc::from("check"),
        request_id: http::HeaderValue::from_static("check"),
        client: [127, 0, 0, 1].into(),
        claims: None,
    };
    let ctx = || {
        lua.create_userdata(CtxObj {
            info: info.clone(),
            vars_json: Default::default(),
            vars: Default::default(),
            claims: Default::default(),
            partial: None,
        })
    };
    let mut errors = Vec::new();
    let mut judge =
        |hook: &str, v: mlua::Result<Value>, ok: &dyn Fn(Value) -> Result<(), String>| {
            if let Ok(v) = v {
                if let Err(message) = ok(v) {
                    errors.push(ScriptError {
                        line: line_of(text, &format!("function {hook}")),
                        col: 1,
                        message: format!("{hook} {message}"),
                    });
                }
            }
        };
    let budget = std::time::Duration::from_millis(10);
    if let Some(f) = &loaded.on_request {
        let req = lua.create_userdata(ReqObj {
            method: http::Method::GET,
            uri: http::Uri::from_static("/"),
            headers: Default::default(),
            upstream: None,
            upstream_picked: false,
        });
        vm.arm(budget);
        let v = req.and_then(|r| f.call::<Value>((r, ctx()?)));
        vm.disarm();
        judge("on_request", v, &|v| match v {
            Value::Nil => Ok(()),
            v => super::answer::from_value(v, &info)
                .map(drop)
                .map_err(|f| format!("returns a bad answer: {}", f.message)),
        });
    }
    if let Some(f) = &loaded.on_response {
        let resp = lua.create_userdata(RespObj {
            status: http::StatusCode::OK,
            headers: Default::default(),
            body: loaded_body(loaded),
            body_changed: false,
        });
        vm.arm(budget);
        let v = resp.and_then(|r| f.call::<Value>((r, ctx()?)));
        vm.disarm();
        judge("on_response", v, &|v| match v {
            Value::Nil => Ok(()),
            v => Err(format!("must return nothing, not a {}", v.type_name())),
        });
    }
    if let Some(f) = &loaded.on_aggregate {
        vm.arm(budget);
        let v = lua
            .create_table()
            .and_then(|t| f.call::<Value>((t, ctx()?)));
        vm.disarm();
        judge("on_aggregate", v, &|v| match v {
            Value::Nil | Value::Table(_) => Ok(()),
            v => Err(format!(
                "must return nil or a table, not a {}",
                v.type_name()
            )),
        });
    }
    errors
}

/// A buffering script's dry run gets an empty body.
fn loaded_body(loaded: &Loaded) -> Option<bytes::Bytes> {
    matches!(loaded.buffer_body, Some(Value::Boolean(true))).then(bytes::Bytes::new)
}

/// The first line that mentions `word`, for errors about a global (1 when none does).
fn line_of(text: &str, word: &str) -> usize {
    text.lines()
        .position(|l| l.contains(word))
        .map_or(1, |i| i + 1)
}

/// Turns `chunk:LINE: message` into a located error. Luau reports the line only; the column is
/// where the token the message names (`got 'x'`) last appears on that line (the parser got past
/// the earlier ones), else the line's first non-blank.
pub fn locate(text: &str, message: &str) -> ScriptError {
    let Some((line, rest)) = split_line(message) else {
        return ScriptError {
            line: 0,
            col: 0,
            message: message.to_owned(),
        };
    };
    let source_line = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let token = rest
        .rsplit_once("got '")
        .and_then(|(_, t)| t.split_once('\''))
        .map(|(t, _)| t);
    let col = token
        .and_then(|t| source_line.rfind(t))
        .or_else(|| source_line.find(|c: char| !c.is_whitespace()))
        .map_or(1, |byte| source_line[..byte].chars().count() + 1);
    ScriptError {
        line,
        col,
        message: rest.trim().to_owned(),
    }
}

/// Finds the first `:LINE:` in a Lua message (or a leading `LINE:`).
fn split_line(message: &str) -> Option<(usize, &str)> {
    let digits = message.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && message.as_bytes().get(digits) == Some(&b':') {
        return Some((message[..digits].parse().ok()?, &message[digits + 1..]));
    }
    let mut search = message;
    let mut offset = 0;
    while let Some(i) = search.find(':') {
        let after = &search[i + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after.as_bytes().get(digits) == Some(&b':') {
            let line = after[..digits].parse().ok()?;
            return Some((line, &message[offset + i + 1 + digits + 1..]));
        }
        offset += i + 1;
        search = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_are_located() {
        let text = "local x = 1\nfunction on_request(req, ctx)\n  x = = 2\nend\n";
        let e = compile(text).unwrap_err();
        assert_eq!(e.line, 3, "{e:?}");
        assert_eq!(e.col, 7, "{e:?}");
        assert!(!e.message.is_empty());
    }

    #[test]
    fn line_prefix_is_found() {
        assert_eq!(split_line("x.lua:12: boom").unwrap(), (12, " boom"));
        assert_eq!(split_line("[string \"a:b\"]:3: y").unwrap().0, 3);
        assert!(split_line("no line here").is_none());
    }
}
