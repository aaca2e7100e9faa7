//! The saga admin API: `GET /admin/sagas`, `POST /admin/sagas/{id}/retry-compensation`.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::registry::{self, State};

/// Answers a request under `/admin/sagas` (the admin token was checked by the caller).
pub async fn handle(method: &Method, path: &str) -> (StatusCode, Value) {
    if path == "/admin/sagas" {
        return match *method {
            Method::GET | Method::HEAD => (StatusCode::OK, registry::json()),
            _ => (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "/admin/sagas takes GET"}),
            ),
        };
    }
    let id = path
        .strip_prefix("/admin/sagas/")
        .and_then(|rest| rest.strip_suffix("/retry-compensation"))
        .filter(|id| !id.is_empty() && !id.contains('/'));
    let Some(id) = id else {
        return (StatusCode::NOT_FOUND, json!({"error": "not found"}));
    };
    if *method != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "retry-compensation takes POST"}),
        );
    }
    match registry::take_stuck(id) {
        Err(None) => (StatusCode::NOT_FOUND, json!({"error": "no such saga"})),
        Err(Some(state)) => (
            StatusCode::CONFLICT,
            json!({"error": "only a stuck saga can be retried", "state": state.as_str()}),
        ),
        Ok((_, None)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "the saga has no log"}),
        ),
        Ok((left, Some(store))) => {
            // Finished even if the operator's connection drops.
            let id_owned = id.to_owned();
            let task = tokio::spawn(async move {
                let rec = super::record::Rec::Compensating {
                    id: id_owned.clone(),
                    failed: None,
                };
                if let Err(e) = store.append(rec).await {
                    tracing::error!(saga = %id_owned, "saga log: {e}");
                }
                super::run::compensate(&store, &id_owned, left).await
            });
            let state = task.await.unwrap_or(State::Stuck);
            (StatusCode::OK, json!({"id": id, "state": state.as_str()}))
        }
    }
}
