//! `[discovery] registry_file`: the registrations of every registry upstream in one JSON file,
//! `{"upstreams": {"NAME": {"ID": {"address", "weight", "metadata", "expires_at_ms"}}}}`,
//! replaced atomically (a temporary file beside it, then a rename) and read at start.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::record::address;
use super::registry::Instance;

/// One writer at a time: each upstream rewrites its own part of the shared file.
static WRITING: Mutex<()> = Mutex::new(());

fn read(path: &Path) -> Map<String, Value> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("upstreams")?.as_object().cloned())
        .unwrap_or_default()
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The registrations of `upstream` kept in `path` that have not expired by `now`.
pub fn load(path: &Path, upstream: &str, now: SystemTime) -> Vec<(String, Instance)> {
    let all = read(path);
    let Some(Value::Object(mine)) = all.get(upstream) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (id, rec) in mine {
        let Some(ms) = rec.get("expires_at_ms").and_then(Value::as_u64) else {
            continue;
        };
        let expires_at = UNIX_EPOCH + Duration::from_millis(ms);
        if expires_at <= now {
            continue;
        }
        let Some(addr) = rec.get("address").and_then(Value::as_str) else {
            continue;
        };
        let Ok((scheme, authority)) = crate::upstream::parse_endpoint(addr) else {
            continue;
        };
        let weight = rec
            .get("weight")
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .clamp(1, 1000) as u32;
        let metadata = rec.get("metadata").cloned().unwrap_or(Value::Null);
        out.push((
            id.clone(),
            Instance {
                scheme,
                authority,
                weight,
                metadata,
                expires_at,
            },
        ));
    }
    out
}

/// Replaces the registrations of `upstream` in `path` with `list`, atomically.
pub fn save(path: &Path, upstream: &str, list: &[(String, Instance)]) -> std::io::Result<()> {
    let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let mut all = read(path);
    let mine: Map<String, Value> = list
        .iter()
        .map(|(id, i)| {
            let rec = json!({
                "address": address(i),
                "weight": i.weight,
                "metadata": i.metadata,
                "expires_at_ms": unix_ms(i.expires_at),
            });
            (id.clone(), rec)
        })
        .collect();
    all.insert(upstream.to_owned(), Value::Object(mine));
    let text = serde_json::to_vec_pretty(&json!({ "upstreams": all }))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_registrations_load_minus_expired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reg.json");
        let now = SystemTime::now();
        let inst = |addr: &str, secs: u64| Instance {
            scheme: http::uri::Scheme::HTTP,
            authority: addr.parse().unwrap(),
            weight: 2,
            metadata: json!({"zone": "a"}),
            expires_at: now + Duration::from_secs(secs),
        };
        let list = vec![
            ("a".to_owned(), inst("127.0.0.1:1", 60)),
            ("b".to_owned(), inst("127.0.0.1:2", 1)),
        ];
        save(&path, "orders", &list).unwrap();
        save(&path, "other", &list[..1]).unwrap();
        let back = load(&path, "orders", now + Duration::from_secs(5));
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].0, "a");
        assert_eq!(back[0].1.weight, 2);
        assert_eq!(back[0].1.metadata["zone"], "a");
        assert_eq!(
            load(&path, "other", now).len(),
            1,
            "each upstream keeps its part"
        );
        assert!(load(&path, "nope", now).is_empty());
    }
}
