//! `discovery = { etcd = "/services/orders/" }`: the keys under the prefix hold instance
//! records (the registry's `PUT` body). Lists the prefix, then watches from the listed
//! revision + 1; a canceled watch (compaction) or a lost connection lists again, so no stale
//! set and no missed delete; while etcd is unreachable the last set stays. Talks to etcd's
//! JSON gateway over hyper, so the build needs no protobuf compiler.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::etcd_wire::{self, Event, WatchMessage};
use super::{Feed, Source, Wanted};

/// A compiled `etcd` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Key prefix (ends in `/`).
    pub prefix: String,
    /// Client URLs (`http://127.0.0.1:2379`), tried in turn.
    pub endpoints: Vec<Uri>,
}

type Http = Client<HttpConnector, Full<Bytes>>;

/// Longest wait between attempts while etcd is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A list that takes longer failed.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// How a session (one list and its watch) ended.
enum Ended {
    /// Nobody holds the feed any more.
    Gone,
    /// The watch was canceled (compaction): list again at once.
    Relist(String),
    /// etcd could not be reached or answered badly: list again after a pause.
    Failed(String),
}

/// Lists, watches, lists again; ends when the feed is dropped.
pub async fn run(feed: Weak<Feed>, s: EtcdSettings) {
    let mut connector = HttpConnector::new();
    connector.set_keepalive(Some(Duration::from_secs(10)));
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    let client: Http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build(connector);
    let mut backoff = Duration::from_millis(100);
    for attempt in 0usize.. {
        let endpoint = &s.endpoints[attempt % s.endpoints.len().max(1)];
        match session(&client, endpoint, &s.prefix, &feed, &mut backoff).await {
            Ended::Gone => return,
            Ended::Relist(why) => {
                tracing::info!(prefix = %s.prefix, why, "etcd watch canceled; listing again");
            }
            Ended::Failed(why) => {
                let Some(f) = feed.upgrade() else { return };
                f.failed(&format!("{endpoint}: {why}"));
                drop(f);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn post(
    client: &Http,
    endpoint: &Uri,
    path: &str,
    body: String,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let uri = format!("{}{path}", endpoint.to_string().trim_end_matches('/'));
    let req = Request::post(uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| crate::upstream::error_chain(&e))?;
    if !resp.status().is_success() {
        return Err(format!("{path} answered {}", resp.status()));
    }
    Ok(resp)
}

async fn session(
    client: &Http,
    endpoint: &Uri,
    prefix: &str,
    feed: &Weak<Feed>,
    backoff: &mut Duration,
) -> Ended {
    let listed = tokio::time::timeout(LIST_TIMEOUT, async {
        let resp = post(
            client,
            endpoint,
            "/v3/kv/range",
            etcd_wire::range_body(prefix),
        )
        .await?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        etcd_wire::range_answer(&v)
    })
    .await;
    let (kvs, revision) = match listed {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return Ended::Failed(e),
        Err(_) => return Ended::Failed("listing timed out".into()),
    };
    let mut set: BTreeMap<String, Wanted> = BTreeMap::new();
    for (key, value) in kvs {
        apply(&mut set, Event::Put(key, value), feed);
    }
    if !publish(feed, &set) {
        return Ended::Gone;
    }
    *backoff = Duration::from_millis(100);
    let resp = match post(
        client,
        endpoint,
        "/v3/watch",
        etcd_wire::watch_body(prefix, revision + 1),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return Ended::Failed(e),
    };
    let mut body = resp.into_body();
    let mut buf = BytesMut::new();
    loop {
        // Wakes up now and then to notice a feed nobody holds any more.
        let Ok(next) = tokio::time::timeout(Duration::from_secs(1), body.frame()).await else {
            if feed.strong_count() == 0 {
                return Ended::Gone;
            }
            continue;
        };
        let frame = match next {
            Some(Ok(f)) => f,
            Some(Err(e)) => return Ended::Failed(format!("watch: {e}")),
            None => return Ended::Failed("the watch stream ended".into()),
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<serde_json::Value>();
        let mut messages = Vec::new();
        let consumed = loop {
            match it.next() {
                Some(Ok(v)) => messages.push(v),
                Some(Err(e)) if e.is_eof() => break it.byte_offset(),
                Some(Err(e)) => return Ended::Failed(format!("watch: {e}")),
                None => break it.byte_offset(),
            }
        };
        buf.advance(consumed);
        let mut changed = false;
        for m in &messages {
            match etcd_wire::watch_message(m) {
                Ok(WatchMessage::Events(events)) => {
                    for e in events {
                        changed |= apply(&mut set, e, feed);
                    }
                }
                Ok(WatchMessage::Canceled(why)) => return Ended::Relist(why),
                Err(e) => return Ended::Failed(e),
            }
        }
        if changed && !publish(feed, &set) {
            return Ended::Gone;
        }
    }
}

/// Applies one change to the set by key; a bad record is logged, counted and left out.
fn apply(set: &mut BTreeMap<String, Wanted>, e: Event, feed: &Weak<Feed>) -> bool {
    match e {
        Event::Delete(key) => set.remove(&key).is_some(),
        Event::Put(key, value) => match super::record::parse(&value) {
            Ok(i) => {
                let w = Wanted {
                    scheme: i.scheme,
                    authority: i.authority,
                    weight: i.weight,
                    source: Source::Etcd,
                };
                set.insert(key, w);
                true
            }
            Err(why) => {
                if let Some(f) = feed.upgrade() {
                    f.failed(&format!("key {key}: {why}"));
                }
                set.remove(&key).is_some()
            }
        },
    }
}

fn publish(feed: &Weak<Feed>, set: &BTreeMap<String, Wanted>) -> bool {
    let Some(f): Option<Arc<Feed>> = feed.upgrade() else {
        return false;
    };
    f.replace(set.values().cloned().collect());
    true
}
