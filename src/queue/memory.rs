//! The in-memory queue storage.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::storage::{ClaimSettlement, DeadLetter, Delivery, Job, JobId, QueueStorage, Taken};
use crate::dedupe::{StoreError, StoreFuture};

/// Keeps deliveries in this process's memory. Fast, bounded, and **lost
/// when the process dies**: a crash, an OOM kill or a deploy loses every
/// delivery that was answered 202 and not yet run. Use
/// `SqliteState::queue` (feature `sqlite`) when that matters.
#[derive(Clone)]
pub struct MemoryQueue {
    inner: Arc<Mutex<State>>,
    capacity: usize,
}

#[derive(Default)]
struct State {
    next_id: i64,
    ready: VecDeque<JobId>,
    /// Retries waiting for their backoff, by when they are due.
    delayed: BTreeSet<(Instant, JobId)>,
    jobs: HashMap<JobId, Entry>,
    dead: Vec<DeadLetter>,
}

struct Entry {
    delivery: Delivery,
    attempts: u32,
}

impl MemoryQueue {
    /// A queue holding at most `capacity` deliveries that are not done
    /// (waiting, delayed or running); past it, enqueue fails with
    /// [`StoreError::full`] (503 `queue_full`).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(State::default())),
            capacity: capacity.max(1),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("MemoryQueue")
            .field("capacity", &self.capacity)
            .field("stored", &state.jobs.len())
            .field("dead", &state.dead.len())
            .finish()
    }
}

impl State {
    /// Moves every delayed delivery that is due to the ready queue, and
    /// says when the next one is.
    fn promote(&mut self, now: Instant) -> Option<Duration> {
        while let Some(&(due, id)) = self.delayed.first() {
            if due > now {
                return Some(due.saturating_duration_since(now));
            }
            self.delayed.pop_first();
            self.ready.push_back(id);
        }
        None
    }
}

impl QueueStorage for MemoryQueue {
    fn enqueue<'a>(
        &'a self,
        delivery: &'a Delivery,
        _claim: Option<ClaimSettlement>,
    ) -> StoreFuture<'a, JobId> {
        let result = {
            let mut state = self.state();
            if state.jobs.len() >= self.capacity {
                Err(StoreError::full(Duration::from_secs(5)))
            } else {
                state.next_id = state.next_id.saturating_add(1);
                let id = JobId(state.next_id);
                state.jobs.insert(
                    id,
                    Entry {
                        delivery: delivery.clone(),
                        attempts: 0,
                    },
                );
                state.ready.push_back(id);
                Ok(id)
            }
        };
        Box::pin(std::future::ready(result))
    }

    fn take(&self) -> StoreFuture<'_, Taken> {
        let taken = {
            let mut state = self.state();
            let next_due = state.promote(Instant::now());
            loop {
                let Some(id) = state.ready.pop_front() else {
                    break Taken::Idle { next_due };
                };
                if let Some(entry) = state.jobs.get_mut(&id) {
                    entry.attempts = entry.attempts.saturating_add(1);
                    break Taken::Job(Job {
                        id,
                        attempt: entry.attempts,
                        delivery: entry.delivery.clone(),
                    });
                }
            }
        };
        Box::pin(std::future::ready(Ok(taken)))
    }

    fn complete(&self, id: JobId) -> StoreFuture<'_, ()> {
        self.state().jobs.remove(&id);
        Box::pin(std::future::ready(Ok(())))
    }

    fn retry<'a>(&'a self, id: JobId, after: Duration, _error: &'a str) -> StoreFuture<'a, ()> {
        {
            let mut state = self.state();
            if state.jobs.contains_key(&id) {
                let now = Instant::now();
                let due = now.checked_add(after).unwrap_or(now);
                state.delayed.insert((due, id));
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn bury<'a>(&'a self, id: JobId, error: &'a str) -> StoreFuture<'a, ()> {
        {
            let mut state = self.state();
            if let Some(entry) = state.jobs.remove(&id) {
                state.dead.push(DeadLetter {
                    id,
                    attempts: entry.attempts,
                    last_error: error.to_owned(),
                    buried_at_unix: crate::Clock::now_unix(&crate::SystemClock),
                    delivery: entry.delivery,
                });
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn dead_letters(&self, limit: usize) -> StoreFuture<'_, Vec<DeadLetter>> {
        let list = self.state().dead.iter().take(limit).cloned().collect();
        Box::pin(std::future::ready(Ok(list)))
    }

    fn requeue_dead<'a>(&'a self, ids: Option<&'a [JobId]>) -> StoreFuture<'a, usize> {
        let count = {
            let mut state = self.state();
            let dead = std::mem::take(&mut state.dead);
            let mut count = 0;
            for letter in dead {
                if ids.is_none_or(|ids| ids.contains(&letter.id)) {
                    state.jobs.insert(
                        letter.id,
                        Entry {
                            delivery: letter.delivery,
                            attempts: 0,
                        },
                    );
                    state.ready.push_back(letter.id);
                    count += 1;
                } else {
                    state.dead.push(letter);
                }
            }
            count
        };
        Box::pin(std::future::ready(Ok(count)))
    }

    fn recover(&self) -> StoreFuture<'_, usize> {
        // Nothing survives a process in memory, so nothing is left over.
        Box::pin(std::future::ready(Ok(0)))
    }

    fn len(&self) -> StoreFuture<'_, usize> {
        let n = self.state().jobs.len();
        Box::pin(std::future::ready(Ok(n)))
    }

    fn is_durable(&self) -> bool {
        false
    }
}
