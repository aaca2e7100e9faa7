//! Running an endpoint's parts under its deadline budget.
//!
//! Parts whose inputs are ready run concurrently on the request's own task (no spawned
//! tasks, so nothing can outlive the request). A part starts when every part it reads has
//! answered; if one of them failed it is skipped. A failed required part ends the request at
//! once, and dropping the calls still in flight cancels them (their connections close). When
//! the budget ends, optional parts still running are cancelled and reported as timeouts.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::Value;
use tokio::time::Instant;

use super::Endpoint;
use super::call::{self, Done, Failure, Origin, Reason, RequestCtx};
use super::metrics::{Outcome, record_part};
use super::shape::Answer;
use crate::error::GatewayError;

/// What the parts produced.
#[derive(Debug)]
pub struct Run {
    /// Answers of parts that succeeded, as templates read them: the (projected) tree, or for
    /// an answer shaped while parsing, the paths templates read.
    pub values: Vec<Option<Value>>,
    /// Answers shaped while parsing: their JSON text (`Some(None)`: the root had the wrong
    /// type). `None` for a tree answer (in `values`) and for a failed part.
    pub texts: Vec<Option<Option<Bytes>>>,
    /// Why the other parts failed.
    pub failures: Vec<Option<Failure>>,
    /// Time each called part took (until it answered, failed or was cancelled).
    pub took: Vec<Option<Duration>>,
    /// Where each answer came from.
    pub origins: Vec<Origin>,
}

struct State<'e> {
    ep: &'e Endpoint,
    run: Run,
    /// Unfinished dependencies per part.
    waiting: Vec<usize>,
    started: Vec<Option<Instant>>,
    finished: Vec<bool>,
    /// Parts whose dependencies have all finished, to start next (a stack).
    ready: Vec<usize>,
}

impl State<'_> {
    fn finish(
        &mut self,
        i: usize,
        result: Result<Answer, Failure>,
        took: Option<Duration>,
    ) -> Result<(), GatewayError> {
        let part = &self.ep.parts[i];
        self.finished[i] = true;
        self.run.took[i] = took;
        match result {
            Ok(answer) => {
                record_part(&part.stats, Outcome::Ok, took);
                self.run.values[i] = Some(match answer {
                    Answer::Tree(v) => v,
                    Answer::Text { text, reads } => {
                        self.run.texts[i] = Some(text);
                        reads
                    }
                });
            }
            Err(f) => {
                let outcome = match f.reason {
                    Reason::Timeout => Outcome::Timeout,
                    Reason::Dependency | Reason::MissingInput => Outcome::Skipped,
                    _ => Outcome::Error,
                };
                record_part(&part.stats, outcome, took);
                if part.required {
                    return Err(f.into_error(part));
                }
                self.run.failures[i] = Some(f);
            }
        }
        for &d in self.ep.plan.dependents[i].iter().rev() {
            self.waiting[d] -= 1;
            if self.waiting[d] == 0 {
                self.ready.push(d);
            }
        }
        Ok(())
    }

    /// The budget is spent: every unfinished part times out; a required one fails the request.
    fn budget_spent(mut self) -> Result<Run, GatewayError> {
        let now = Instant::now();
        for i in 0..self.ep.parts.len() {
            if self.finished[i] {
                continue;
            }
            let took = self.started[i].map(|s| now - s);
            self.finished[i] = true;
            self.run.took[i] = took;
            let part = &self.ep.parts[i];
            record_part(&part.stats, Outcome::Timeout, took);
            if part.required {
                return Err(GatewayError::BffPartTimeout {
                    part: part.name.clone(),
                });
            }
            self.run.failures[i] = Some(Failure::new(Reason::Timeout));
        }
        Ok(self.run)
    }
}

/// Runs every part of `ep` before `deadline`.
pub async fn run(
    ep: &Endpoint,
    ctx: &RequestCtx<'_>,
    deadline: Instant,
) -> Result<Run, GatewayError> {
    let n = ep.parts.len();
    let mut st = State {
        ep,
        run: Run {
            values: vec![None; n],
            texts: vec![None; n],
            failures: vec![None; n],
            took: vec![None; n],
            origins: vec![Origin::Backend; n],
        },
        waiting: ep.plan.deps.iter().map(|d| d.len()).collect(),
        started: vec![None; n],
        finished: vec![false; n],
        ready: ep.plan.roots.iter().rev().copied().collect(),
    };
    let mut running = FuturesUnordered::new();
    let budget = tokio::time::sleep_until(deadline);
    tokio::pin!(budget);
    loop {
        while let Some(i) = st.ready.pop() {
            let part = &ep.parts[i];
            let inputs_ok = ep.plan.deps[i].iter().all(|&d| st.run.values[d].is_some());
            if !inputs_ok {
                st.finish(i, Err(Failure::new(Reason::Dependency)), None)?;
                continue;
            }
            match call::prepare(part, ctx, &st.run.values, deadline) {
                Ok(prepared) => {
                    st.started[i] = Some(Instant::now());
                    running.push(call::execute(i, part, prepared));
                }
                Err(f) => st.finish(i, Err(f), None)?,
            }
        }
        if running.is_empty() {
            return Ok(st.run);
        }
        tokio::select! {
            biased;
            Some(Done { index, result, took, origin }) = running.next() => {
                st.run.origins[index] = origin;
                st.finish(index, result, Some(took))?;
            }
            () = &mut budget => return st.budget_spent(),
        }
    }
}
