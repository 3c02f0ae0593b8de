//! Group commit for PostgreSQL: the appends of concurrent writers share transactions.
//!
//! A commit costs a WAL flush and a round trip; on a small machine that, not the work of an
//! append, bounds single-event appends (about 6,000 one-append transactions/s with 16 writers on
//! the 2-core development machine). Appends are queued; each of a few committer tasks takes
//! whatever is waiting (up to [`MAX_APPENDS`] appends or [`MAX_BYTES`]) and writes it with one
//! `careledger_append` call, in which every append has its own subtransaction: a refused append
//! takes nothing of the others with it, and each caller gets its own answer. A writer alone waits
//! for no one: a batch is whatever is queued when a committer is free, never a timer.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use crate::postgres::{self, WireAppend};
use crate::{AppendOutcome, StoreError};

/// Appends in one transaction at most (PostgreSQL keeps 64 subtransactions per backend in
/// shared memory; more would slow every snapshot while the batch runs).
const MAX_APPENDS: usize = 48;
/// Bytes of appends in one batch at most (a large append goes alone).
const MAX_BYTES: usize = 4 << 20;
/// Events in one transaction at most: positions are `txid << 20 | index`, so the appends of one
/// batch share the 2^20 indices of their transaction.
const MAX_EVENTS: usize = crate::MAX_EVENTS_PER_APPEND;
/// A batch that lost a deadlock is written again this many times before its callers hear of it.
const CONTENTION_RETRIES: usize = 5;

struct Job {
    append: WireAppend,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// The queue of appends waiting for a committer. Dropping the last handle stops the committers.
pub(crate) struct GroupCommit {
    queue: mpsc::UnboundedSender<Job>,
}

impl GroupCommit {
    pub(crate) fn start(pool: PgPool, appended: watch::Sender<i64>, committers: usize) -> GroupCommit {
        let (queue, jobs) = mpsc::unbounded_channel();
        let jobs = Arc::new(Mutex::new(Waiting { jobs, held: None }));
        for _ in 0..committers.max(1) {
            tokio::spawn(committer(pool.clone(), jobs.clone(), appended.clone()));
        }
        GroupCommit { queue }
    }

    pub(crate) async fn append(&self, append: WireAppend) -> Result<AppendOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Job { append, reply }).map_err(|_| StoreError::Backend("the store is closed".into()))?;
        answer.await.map_err(|_| StoreError::Backend("the committer stopped".into()))?
    }
}

/// The queue as committers take from it: `held` is a job that did not fit the last batch.
struct Waiting {
    jobs: mpsc::UnboundedReceiver<Job>,
    held: Option<Job>,
}

async fn committer(pool: PgPool, waiting: Arc<Mutex<Waiting>>, appended: watch::Sender<i64>) {
    loop {
        let batch = {
            let mut guard = waiting.lock().await;
            let Waiting { jobs, held } = &mut *guard;
            let first = match held.take() {
                Some(job) => job,
                None => match jobs.recv().await {
                    Some(job) => job,
                    None => return,
                },
            };
            let (mut bytes, mut events) = (first.append.bytes(), first.append.events());
            let mut batch = vec![first];
            // a job that would overflow the batch waits for the next one (at its head)
            while batch.len() < MAX_APPENDS && bytes < MAX_BYTES {
                let Ok(job) = jobs.try_recv() else { break };
                if events + job.append.events() > MAX_EVENTS {
                    *held = Some(job);
                    break;
                }
                bytes += job.append.bytes();
                events += job.append.events();
                batch.push(job);
            }
            batch
        };
        let answers = write(&pool, &batch).await;
        let mut last = 0;
        for (job, answer) in batch.into_iter().zip(answers) {
            if let Ok(outcome) = &answer {
                last = last.max(outcome.last_position());
            }
            let _ = job.reply.send(answer);
        }
        if last > 0 {
            // always wake subscribers: a batch of an older transaction committing after a newer one
            // is what lets readers past the newer one (the horizon), though its positions are lower
            appended.send_modify(|seen| *seen = (*seen).max(last));
        }
    }
}

/// One answer per job, whatever happens. When the database refuses the batch's call as a whole
/// (an append carrying something it cannot store, say), each append is written again alone: the
/// refusal is then its own, and no other caller's append fails with it (DESIGN rule 10).
async fn write(pool: &PgPool, batch: &[Job]) -> Vec<Result<AppendOutcome, StoreError>> {
    let appends: Vec<&WireAppend> = batch.iter().map(|j| &j.append).collect();
    match write_once(pool, &appends).await {
        Ok(answers) => answers,
        Err(failure) if appends.len() > 1 && refused_whole(&failure) => {
            tracing::warn!(appends = appends.len(), error = %failure, "group commit refused; writing each append alone");
            let mut answers = Vec::with_capacity(appends.len());
            for append in &appends {
                answers.push(match write_once(pool, std::slice::from_ref(append)).await {
                    Ok(mut one) => one.pop().unwrap_or_else(|| Err(StoreError::Backend("no answer".into()))),
                    Err(e) => Err(e),
                });
            }
            answers
        }
        Err(failure) => {
            tracing::warn!(appends = batch.len(), error = %failure, "group commit failed");
            batch.iter().map(|_| Err(shared(&failure))).collect()
        }
    }
}

/// The database answered the call with an error: its transaction is rolled back, nothing of the
/// batch was written, so writing the appends again cannot write one twice. (A lost connection is
/// not: the commit may have happened, and the callers hear of the failure instead.)
fn refused_whole(failure: &StoreError) -> bool {
    matches!(failure, StoreError::Database(sqlx::Error::Database(_)))
}

/// One failure told to each caller of a batch.
fn shared(failure: &StoreError) -> StoreError {
    match failure {
        StoreError::Contention(m) => StoreError::Contention(m.clone()),
        // each caller must still learn that the database was out of reach (503, not 500)
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        other => StoreError::Backend(other.to_string()),
    }
}

/// One `careledger_append` call for `appends`, written again while it loses to contention.
async fn write_once(
    pool: &PgPool,
    appends: &[&WireAppend],
) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
    let mut attempt = 0;
    loop {
        let result = match pool.acquire().await {
            Ok(mut conn) => postgres::append_batch(pool, &mut conn, appends).await,
            Err(e) => Err(e.into()),
        };
        match result {
            Err(StoreError::Contention(_)) if attempt < CONTENTION_RETRIES => attempt += 1,
            other => return other,
        }
    }
}
