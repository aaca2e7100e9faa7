//! An attempt's deadline around a future pinned where it lives: tokio's `timeout` takes the
//! future by value, which copies an upstream exchange's state twice more per attempt.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;

use tokio::time::Instant;

/// The deadline passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// Polls `fut` until it finishes or `deadline` passes (the future first, as `timeout` does:
/// an answer ready at the deadline is taken).
pub async fn within<F: Future>(
    deadline: Instant,
    mut fut: Pin<&mut F>,
) -> Result<F::Output, TimedOut> {
    let mut sleep = pin!(tokio::time::sleep_until(deadline));
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        sleep.as_mut().poll(cx).map(|()| Err(TimedOut))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // Both orders are decided by which timer has passed when the task is polled, not by how
    // fast the machine is: a loaded machine that wakes late still polls the future first.
    #[tokio::test]
    async fn the_future_wins_before_the_deadline_and_loses_after_it() {
        let now = Instant::now();
        let quick = pin!(tokio::time::sleep(Duration::from_millis(10)));
        assert_eq!(within(now + Duration::from_millis(50), quick).await, Ok(()));
        let never = pin!(tokio::time::sleep(Duration::from_secs(3600)));
        assert_eq!(
            within(Instant::now() + Duration::from_millis(20), never).await,
            Err(TimedOut)
        );
        let ready = pin!(std::future::ready(7));
        assert_eq!(
            within(now, ready).await,
            Ok(7),
            "ready at the deadline: taken"
        );
    }
}
