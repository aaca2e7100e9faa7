//! JSON <-> Lua values, and the `json` helper (`json.encode`, `json.decode`, `json.null`).
//!
//! JSON `null` is `json.null`; arrays are sequences (an empty array keeps a marker metatable
//! so it encodes back as `[]`); a table with keys 1..n only is an array, any other an object.

use mlua::{Lua, Table, Value};
use serde_json::{Map, Number, Value as Json};

/// Nesting deeper than this is refused (also catches cyclic tables).
const MAX_DEPTH: usize = 64;
/// Registry name of the empty-array marker metatable.
const ARRAY_MT: &str = "portico.json.array";

/// Installs `json` and the array marker (before the sandbox freezes them).
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let mt = lua.create_table()?;
    mt.raw_set("__metatable", "json.array")?;
    mt.set_readonly(true);
    lua.set_named_registry_value(ARRAY_MT, mt)?;
    let json = lua.create_table()?;
    json.set("null", Value::NULL)?;
    json.set(
        "encode",
        lua.create_function(|_, v: Value| {
            let j = to_json(&v, 0).map_err(mlua::Error::runtime)?;
            Ok(j.to_string())
        })?,
    )?;
    json.set(
        "decode",
        lua.create_function(|lua, s: mlua::String| {
            let j: Json = serde_json::from_slice(&s.as_bytes())
                .map_err(|e| mlua::Error::runtime(format!("json.decode: {e}")))?;
            to_lua(lua, &j)
        })?,
    )?;
    lua.globals().set("json", json)?;
    Ok(())
}

/// A JSON value as a Lua value.
pub fn to_lua(lua: &Lua, v: &Json) -> mlua::Result<Value> {
    Ok(match v {
        Json::Null => Value::NULL,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => Value::Number(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => Value::String(lua.create_string(s)?),
        Json::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            if items.is_empty() {
                t.set_metatable(Some(lua.named_registry_value::<Table>(ARRAY_MT)?))?;
            }
            Value::Table(t)
        }
        Json::Object(map) => Value::Table(object_to_lua(lua, map)?),
    })
}

/// A JSON object as a Lua table.
pub fn object_to_lua(lua: &Lua, map: &Map<String, Json>) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, map.len())?;
    for (k, item) in map {
        t.raw_set(k.as_str(), to_lua(lua, item)?)?;
    }
    Ok(t)
}

/// Makes a table and every table in it read-only (claims).
pub fn freeze(t: &Table) -> mlua::Result<()> {
    for pair in t.pairs::<Value, Value>() {
        if let (_, Value::Table(inner)) = pair? {
            freeze(&inner)?;
        }
    }
    t.set_readonly(true);
    Ok(())
}

/// A Lua value as JSON; functions, userdata and other non-data values are refused.
pub fn to_json(v: &Value, depth: usize) -> Result<Json, String> {
    if depth > MAX_DEPTH {
        return Err("value nested too deeply (or cyclic)".into());
    }
    Ok(match v {
        Value::Nil => Json::Null,
        Value::LightUserData(p) if p.0.is_null() => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => Json::from(*i),
        Value::Number(n) => number(*n)?,
        Value::String(s) => Json::String(
            s.to_str()
                .map_err(|_| "strings must be UTF-8 to become JSON".to_string())?
                .to_owned(),
        ),
        Value::Table(t) => table_to_json(t, depth)?,
        other => return Err(format!("a {} cannot become JSON", other.type_name())),
    })
}

fn number(n: f64) -> Result<Json, String> {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        return Ok(Json::from(n as i64));
    }
    Number::from_f64(n)
        .map(Json::Number)
        .ok_or_else(|| "NaN and infinities cannot become JSON".to_string())
}

fn table_to_json(t: &Table, depth: usize) -> Result<Json, String> {
    let err = |e: mlua::Error| e.to_string();
    let len = t.raw_len();
    let mut count = 0usize;
    for pair in t.pairs::<Value, Value>() {
        pair.map_err(err)?;
        count += 1;
    }
    let marked = t.metatable().is_some_and(|m| {
        m.raw_get::<Option<mlua::String>>("__metatable")
            .ok()
            .flatten()
            .is_some_and(|s| s.as_bytes().as_ref() == b"json.array")
    });
    if (len > 0 && count == len) || (count == 0 && marked) {
        let mut items = Vec::with_capacity(len);
        for i in 1..=len {
            items.push(to_json(&t.raw_get::<Value>(i).map_err(err)?, depth + 1)?);
        }
        return Ok(Json::Array(items));
    }
    let mut map = Map::with_capacity(count);
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(err)?;
        let key = match k {
            Value::String(s) => s
                .to_str()
                .map_err(|_| "object keys must be UTF-8".to_string())?
                .to_owned(),
            Value::Integer(i) => i.to_string(),
            Value::Number(n) => n.to_string(),
            other => return Err(format!("a {} key cannot become JSON", other.type_name())),
        };
        map.insert(key, to_json(&v, depth + 1)?);
    }
    Ok(Json::Object(map))
}
