//! JSON body templates for writes: a TOML value whose strings are templates.
//! A string that is exactly one placeholder (`"{body.items}"`) inserts the JSON value itself,
//! so numbers, arrays and objects keep their type; other strings are rendered as text.

use serde_json::{Map, Number, Value};

use super::template::{Inputs, Kind, Missing, Scope, Template, Var};

/// A compiled body template.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonTemplate {
    /// A subtree without placeholders, built once.
    Literal(Value),
    /// A templated string.
    Text(Template),
    /// An array with templated items.
    Array(Box<[JsonTemplate]>),
    /// An object with templated values.
    Object(Box<[(Box<str>, JsonTemplate)]>),
}

impl JsonTemplate {
    /// Compiles a TOML value.
    pub fn compile(value: &toml::Value, scope: &Scope<'_>) -> Result<JsonTemplate, String> {
        let compiled = match value {
            toml::Value::String(s) if s.contains(['{', '}']) => {
                JsonTemplate::Text(Template::parse(s, Kind::Text, scope)?)
            }
            toml::Value::Array(items) => JsonTemplate::Array(
                items
                    .iter()
                    .map(|v| JsonTemplate::compile(v, scope))
                    .collect::<Result<_, _>>()?,
            ),
            toml::Value::Table(t) => JsonTemplate::Object(
                t.iter()
                    .map(|(k, v)| Ok((k.as_str().into(), JsonTemplate::compile(v, scope)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => JsonTemplate::Literal(toml_to_json(other)?),
        };
        Ok(match compiled {
            JsonTemplate::Array(items) if items.iter().all(is_literal) => JsonTemplate::Literal(
                Value::Array(items.into_vec().into_iter().map(literal).collect()),
            ),
            JsonTemplate::Object(entries) if entries.iter().all(|(_, v)| is_literal(v)) => {
                JsonTemplate::Literal(Value::Object(
                    entries
                        .into_vec()
                        .into_iter()
                        .map(|(k, v)| (k.into_string(), literal(v)))
                        .collect(),
                ))
            }
            other => other,
        })
    }

    /// Every variable read.
    pub fn vars(&self) -> Vec<&Var> {
        let mut out = Vec::new();
        self.collect_vars(&mut out);
        out
    }

    fn collect_vars<'a>(&'a self, out: &mut Vec<&'a Var>) {
        match self {
            JsonTemplate::Literal(_) => {}
            JsonTemplate::Text(t) => out.extend(t.vars()),
            JsonTemplate::Array(items) => items.iter().for_each(|i| i.collect_vars(out)),
            JsonTemplate::Object(entries) => entries.iter().for_each(|(_, v)| v.collect_vars(out)),
        }
    }

    /// Renders the body.
    pub fn render(&self, inputs: &Inputs<'_>) -> Result<Value, Missing> {
        Ok(match self {
            JsonTemplate::Literal(v) => v.clone(),
            JsonTemplate::Text(t) => match t.resolve_whole(inputs) {
                Some(v) => v?,
                None => Value::String(t.render(inputs)?),
            },
            JsonTemplate::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| i.render(inputs))
                    .collect::<Result<_, _>>()?,
            ),
            JsonTemplate::Object(entries) => {
                let mut m = Map::new();
                for (k, v) in entries.iter() {
                    m.insert(k.to_string(), v.render(inputs)?);
                }
                Value::Object(m)
            }
        })
    }
}

fn is_literal(t: &JsonTemplate) -> bool {
    matches!(t, JsonTemplate::Literal(_))
}

fn literal(t: JsonTemplate) -> Value {
    match t {
        JsonTemplate::Literal(v) => v,
        _ => Value::Null,
    }
}

/// Converts a TOML value (a `default`, a literal body) to JSON; datetimes become strings.
pub fn toml_to_json(value: &toml::Value) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::Number((*i).into()),
        toml::Value::Float(f) => Value::Number(
            Number::from_f64(*f).ok_or_else(|| format!("{f} cannot be written in JSON"))?,
        ),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => {
            Value::Array(items.iter().map(toml_to_json).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| Ok((k.clone(), toml_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use serde_json::json;

    #[test]
    fn bodies_keep_types_and_fold_literals() {
        let parts = ["profile"];
        let scope = Scope {
            captures: &[],
            parts: &parts,
        };
        let src: toml::Table = toml::from_str(
            r#"
            user = "{claims.sub}"
            items = "{body.items}"
            note = "for {profile.name}"
            fixed = { a = 1, b = [true, 2.5] }
            "#,
        )
        .unwrap();
        let t = JsonTemplate::compile(&toml::Value::Table(src), &scope).unwrap();
        let JsonTemplate::Object(entries) = &t else {
            panic!("{t:?}")
        };
        assert!(matches!(
            entries.iter().find(|e| &*e.0 == "fixed").unwrap().1,
            JsonTemplate::Literal(_)
        ));
        let claims = json!({"sub": "u1"}).as_object().unwrap().clone();
        let body = json!({"items": [1, {"x": 2}]});
        let values = [Some(json!({"name": "Ada"}))];
        let headers = HeaderMap::new();
        let inputs = Inputs {
            claims: Some(&claims),
            path: "/",
            captures: &[],
            query: None,
            headers: &headers,
            body: Some(&body),
            parts: &values,
        };
        assert_eq!(
            t.render(&inputs).unwrap(),
            json!({"user": "u1", "items": [1, {"x": 2}], "note": "for Ada",
                   "fixed": {"a": 1, "b": [true, 2.5]}})
        );
        assert_eq!(t.vars().len(), 3);
        let no_body = Inputs {
            body: None,
            ..inputs
        };
        assert_eq!(
            &*t.render(&no_body).unwrap_err().placeholder,
            "{body.items}"
        );
    }

    #[test]
    fn toml_values_convert() {
        let v: toml::Value =
            toml::from_str::<toml::Table>("x = { items = [], n = 1.5, when = 1979-05-27 }")
                .unwrap()
                .remove("x")
                .unwrap();
        assert_eq!(
            toml_to_json(&v).unwrap(),
            json!({"items": [], "n": 1.5, "when": "1979-05-27"})
        );
    }
}
