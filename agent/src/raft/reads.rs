//! Linearizable reads on the leader, confirmed together. A caller waits
//! for the first confirmation round (heartbeats to a quorum) that *starts*
//! after it arrived, and every caller waiting by then shares that round's
//! answer. Under a burst — every node's session coming back to a new leader
//! at once — a handful of rounds confirm hundreds of reads, where one round
//! each overran a loaded follower's heartbeat timeout and kept the sessions
//! out.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

/// Confirmation rounds, one at a time, their answers shared.
pub struct ReadRounds<A> {
    /// Rounds started so far.
    started: AtomicU64,
    /// Held while a round runs; the last finished round's number and answer.
    last: tokio::sync::Mutex<(u64, Option<A>)>,
}

impl<A> Default for ReadRounds<A> {
    fn default() -> Self {
        Self { started: AtomicU64::new(0), last: tokio::sync::Mutex::new((0, None)) }
    }
}

impl<A: Clone> ReadRounds<A> {
    /// The answer of a round that started after this call did: one
    /// finished while it waited, or `round` run now.
    pub async fn confirm<F: Future<Output = A>>(&self, round: impl FnOnce() -> F) -> A {
        // Every round numbered past this one starts after now.
        let need = self.started.load(Ordering::SeqCst) + 1;
        let mut last = self.last.lock().await;
        if let (done, Some(answer)) = &*last {
            if *done >= need {
                return answer.clone();
            }
        }
        let no = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let answer = round().await;
        *last = (no, Some(answer.clone()));
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_burst_shares_a_few_rounds_each_started_after_its_callers() {
        let rounds = Arc::new(ReadRounds::<u64>::default());
        let runs = Arc::new(AtomicU64::new(0));
        let mut calls = Vec::new();
        for _ in 0..200 {
            let (rounds, runs) = (rounds.clone(), runs.clone());
            calls.push(tokio::spawn(async move {
                let need = rounds.started.load(Ordering::SeqCst) + 1;
                let got = rounds
                    .confirm(|| async {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        runs.fetch_add(1, Ordering::SeqCst) + 1
                    })
                    .await;
                (need, got)
            }));
        }
        for c in calls {
            let (need, got) = c.await.unwrap();
            // The round that answered started after the caller arrived.
            assert!(got >= need, "round {got} answered a caller that needed {need} or later");
        }
        let runs = runs.load(Ordering::SeqCst);
        assert!(runs <= 3, "200 concurrent reads took {runs} rounds");
        // Later, alone: a round of its own.
        assert_eq!(rounds.confirm(|| async { 99 }).await, 99);
    }
}
