//! One GCRA decision in Redis: a Lua script (EVALSHA, reloaded when the server lost it) that
//! reads the server's clock (`TIME`), so instance clocks never matter. The key holds the
//! theoretical arrival time in microseconds and expires when its bucket is full again.

use std::sync::LazyLock;
use std::time::Duration;

use super::Cluster;

/// Same algorithm as governor's: tau = interval × (burst − 1); admit when now ≥ tat − tau;
/// then tat = max(tat, now) + interval. Answers `{1, remaining, µs to full}` or
/// `{0, µs to wait}`.
const SCRIPT: &str = r#"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local earliest = tat - interval * (burst - 1)
if now < earliest then
  return {0, earliest - now}
end
local nxt = math.max(tat, now) + interval
local ttl = math.ceil((nxt - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', ttl)
return {1, math.floor((interval * burst - (nxt - now)) / interval), nxt - now}
"#;

static GCRA: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SCRIPT));

/// What the store decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted; `remaining` more would be admitted now; the bucket is full after `full_in`.
    Admitted {
        /// Requests left in the burst.
        remaining: u32,
        /// Time until the bucket is full.
        full_in: Duration,
    },
    /// Refused; retry after `retry_after`.
    Limited {
        /// Time to wait.
        retry_after: Duration,
    },
}

impl Decision {
    fn from_reply(reply: &[i64]) -> Option<Decision> {
        let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        match *reply {
            [1, remaining, full_in] => Some(Decision::Admitted {
                remaining: u32::try_from(remaining).unwrap_or(0),
                full_in: micros(full_in),
            }),
            [0, wait] => Some(Decision::Limited {
                retry_after: micros(wait),
            }),
            _ => None,
        }
    }
}

impl Cluster {
    /// Takes one request from the bucket at `key` (one round trip). `None` when the store did
    /// not answer or is backed off: the caller decides locally.
    pub async fn gcra(&self, key: &[u8], interval: Duration, burst: u32) -> Option<Decision> {
        let interval_us = u64::try_from(interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let reply: Vec<i64> = self
            .call(|mut conn| async move {
                GCRA.key(key)
                    .arg(interval_us)
                    .arg(burst.max(1))
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        let decision = Decision::from_reply(&reply);
        if decision.is_none() {
            let reply = format!("{reply:?}");
            tracing::error!(reply, "cluster store: unexpected GCRA script reply");
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(
            Decision::from_reply(&[1, 4, 500_000]),
            Some(Decision::Admitted {
                remaining: 4,
                full_in: Duration::from_millis(500)
            })
        );
        assert_eq!(
            Decision::from_reply(&[0, 1_500]),
            Some(Decision::Limited {
                retry_after: Duration::from_micros(1_500)
            })
        );
        assert_eq!(Decision::from_reply(&[2]), None);
    }
}
