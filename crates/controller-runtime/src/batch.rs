//! Upstream's `slowStartBatch`: run `count` calls in batches of 1, 2, 4, ... so that a failing
//! call (e.g. quota) is tried few times instead of `count` times.

use std::future::Future;

/// Runs `call` up to `count` times, the batches growing from `initial` and doubling while no
/// call fails; returns the number of successes and the first error of the failing batch.
pub async fn slow_start<F, Fut, E>(count: usize, initial: usize, call: F) -> (usize, Option<E>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut remaining = count;
    let mut batch = remaining.min(initial.max(1));
    let mut successes = 0;
    while batch > 0 {
        let results = futures::future::join_all((0..batch).map(|_| call())).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(()) => successes += 1,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if first_err.is_some() {
            return (successes, first_err);
        }
        remaining -= batch;
        batch = remaining.min(batch * 2);
    }
    (successes, None)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn batches_double_and_stop_at_the_first_failing_batch() {
        let calls = Mutex::new(0usize);
        let (ok, err) = slow_start(10, 1, || {
            let n = {
                let mut c = calls.lock().unwrap_or_else(|e| e.into_inner());
                *c += 1;
                *c
            };
            async move { if n >= 5 { Err("quota") } else { Ok(()) } }
        })
        .await;
        // Batches 1, 2, then 4: calls 4..=7 run, 5..=7 fail.
        assert_eq!((ok, err), (4, Some("quota")));
        assert_eq!(*calls.lock().unwrap_or_else(|e| e.into_inner()), 7);
        let (ok, err) = slow_start(5, 1, || async { Ok::<(), ()>(()) }).await;
        assert_eq!((ok, err), (5, None));
    }
}
