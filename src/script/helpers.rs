//! What scripts get besides the safe standard library: `json`, `base64`, `sha256`,
//! `hmac_sha256`, `log.info/warn` (into the gateway's log with the request id) and `now_ms()`.
//! None of them touch the network or the file system.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::Mac as _;
use mlua::{Lua, Value};
use sha2::Digest as _;

use super::vm::CurrentRequest;

/// Installs the helpers as globals (before the sandbox freezes them).
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let g = lua.globals();

    let b64 = lua.create_table()?;
    b64.set(
        "encode",
        lua.create_function(|_, s: mlua::String| {
            Ok(base64::engine::general_purpose::STANDARD.encode(s.as_bytes()))
        })?,
    )?;
    b64.set(
        "decode",
        lua.create_function(|lua, s: mlua::String| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.as_bytes()))
                .map_err(|_| mlua::Error::runtime("base64.decode: not base64"))?;
            lua.create_string(bytes)
        })?,
    )?;
    g.set("base64", b64)?;

    g.set(
        "sha256",
        lua.create_function(|_, s: mlua::String| Ok(hex(&sha2::Sha256::digest(s.as_bytes()))))?,
    )?;
    g.set(
        "hmac_sha256",
        lua.create_function(|_, (key, msg): (mlua::String, mlua::String)| {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key.as_bytes())
                .map_err(|_| mlua::Error::runtime("hmac_sha256: bad key"))?;
            mac.update(&msg.as_bytes());
            Ok(hex(&mac.finalize().into_bytes()))
        })?,
    )?;
    g.set(
        "now_ms",
        lua.create_function(|_, ()| {
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            Ok(ms as f64)
        })?,
    )?;

    let log = lua.create_table()?;
    log.set(
        "info",
        lua.create_function(|lua, msg: Value| {
            log_line(lua, false, msg);
            Ok(())
        })?,
    )?;
    log.set(
        "warn",
        lua.create_function(|lua, msg: Value| {
            log_line(lua, true, msg);
            Ok(())
        })?,
    )?;
    g.set("log", log)?;
    Ok(())
}

/// Writes a script's log line with the request id and the script:line that called `log`.
fn log_line(lua: &Lua, warn: bool, msg: Value) {
    if lua
        .app_data_ref::<CurrentRequest>()
        .is_some_and(|c| c.1.get())
    {
        return;
    }
    let text = match &msg {
        Value::String(s) => s.to_string_lossy(),
        other => other.to_string().unwrap_or_default(),
    };
    // Bounded: a script cannot flood the log with one huge line.
    let text: String = text.chars().take(2048).collect();
    let at = lua
        .inspect_stack(1, |d| {
            let line = d.current_line().unwrap_or(0);
            format!("{}:{line}", d.source().short_src.unwrap_or_default())
        })
        .unwrap_or_default();
    let request_id = lua
        .app_data_ref::<CurrentRequest>()
        .and_then(|c| {
            c.0.borrow()
                .as_ref()
                .map(|v| v.to_str().unwrap_or("").to_owned())
        })
        .unwrap_or_default();
    if warn {
        tracing::warn!(target: "script", request_id = %request_id, at = %at, "{text}");
    } else {
        tracing::info!(target: "script", request_id = %request_id, at = %at, "{text}");
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}
