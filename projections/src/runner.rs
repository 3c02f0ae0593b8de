//! The projector runner: checkpoints, following the log, waiting for a position, rebuilding.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use careledger_store::{Backend, Db, EventStore, RecordedEvent, Tx, sql_exec, sql_fetch_all, sql_fetch_optional};
use chrono::Utc;
use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::ProjectionError;

/// How many events one projection transaction applies at most.
const BATCH: i64 = 500;

/// How often a projector stores a checkpoint that moved only past events it does not handle.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);

/// A read model: its tables and how an event changes them.
pub trait Projector: Send + Sync {
    fn name(&self) -> &'static str;
    /// Its tables, emptied by a rebuild.
    fn tables(&self) -> &'static [&'static str];
    /// Whether `apply` changes anything for this event. A batch with none of them costs no
    /// transaction: the runner moves past it in memory and stores the checkpoint at most once a
    /// second (see `Projections::follow`). Every event, unless a projector says otherwise.
    fn handles(&self, _event: &RecordedEvent) -> bool {
        true
    }
    /// Applies events, in order, inside the transaction that will move the checkpoint. They are
    /// shared with the process's other subscriptions (the log's tail keeps one copy of each).
    fn apply<'a>(
        &'a self,
        tx: &'a mut Tx,
        events: &'a [Arc<RecordedEvent>],
    ) -> BoxFuture<'a, Result<(), ProjectionError>>;
}

/// The longest wait between two tries of a failing projector: short enough that a read model
/// is back within seconds of a database outage's end (the 503s ask callers to retry after 5 s),
/// long enough that a projector stuck on an event costs nothing worth counting.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The first wait after a failure (doubled at each failure in a row).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Where a projector is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectorStatus {
    pub name: String,
    pub position: i64,
    /// The log's head when asked.
    pub head: i64,
    /// Seconds between the last applied event's commit and its application (0 when none yet).
    pub lag_seconds: f64,
    /// Failures in a row since it last applied a batch (0 when it is well).
    pub failures: i64,
    /// The last failure's error, while it is failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<chrono::DateTime<Utc>>,
}

impl ProjectorStatus {
    /// Failing and behind the head: its read model misses events until someone acts.
    pub fn is_stuck(&self) -> bool {
        self.failures > 0 && self.position < self.head
    }
}

/// The projectors of one process, with the position each has reached.
pub struct Projections {
    store: EventStore,
    projectors: Vec<Arc<dyn Projector>>,
    positions: HashMap<&'static str, watch::Sender<i64>>,
    lags: HashMap<&'static str, watch::Sender<f64>>,
}

impl Projections {
    pub fn new(store: EventStore, projectors: Vec<Arc<dyn Projector>>) -> Arc<Self> {
        let positions = projectors.iter().map(|p| (p.name(), watch::channel(0).0)).collect();
        let lags = projectors.iter().map(|p| (p.name(), watch::channel(0.0).0)).collect();
        Arc::new(Projections { store, projectors, positions, lags })
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.projectors.iter().map(|p| p.name()).collect()
    }

    fn projector(&self, name: &str) -> Result<&Arc<dyn Projector>, ProjectionError> {
        self.projectors
            .iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| ProjectionError::UnknownProjector(name.to_string()))
    }

    /// Starts one task per projector that follows the log until `shutdown` turns true.
    pub fn spawn(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        self.projectors
            .iter()
            .map(|p| {
                let this = self.clone();
                let projector = p.clone();
                let mut shutdown = shutdown.clone();
                tokio::spawn(async move {
                    // failures in a row, and where the last one happened: a projector that moved
                    // since then starts its backoff afresh
                    let (mut failures, mut failed_at) = (0u32, -1i64);
                    loop {
                        tokio::select! {
                            result = this.follow(&projector) => {
                                let Err(e) = result else { continue };
                                let name = projector.name();
                                let position = this.position(name);
                                failures = if position > failed_at { 1 } else { failures.saturating_add(1) };
                                failed_at = position;
                                let backoff = FIRST_BACKOFF.saturating_mul(1 << (failures - 1).min(6)).min(MAX_BACKOFF);
                                tracing::error!(projector = name, position, failures, error = %e,
                                    retry_in_ms = backoff.as_millis() as u64, "projector failed");
                                metrics::counter!("careledger_projector_failures_total", "projector" => name).increment(1);
                                metrics::gauge!("careledger_projector_failing", "projector" => name).set(1.0);
                                if let Err(record) = this.record_failure(name, &e).await {
                                    tracing::warn!(projector = name, error = %record, "cannot record the failure");
                                }
                                tokio::select! {
                                    _ = tokio::time::sleep(backoff) => {}
                                    _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
                                }
                            }
                            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
                        }
                    }
                })
            })
            .collect()
    }

    /// Follows the log. `stored` is the checkpoint as this process last stored or read it; the
    /// position published may be ahead of it by events this projector does not handle: they change none
    /// of its tables, so skipping them needs no transaction (with several projectors on a busy
    /// log, a commit per projector per batch was most of their cost), and a restart from `stored`
    /// replays them as the no-ops they are.
    async fn follow(&self, projector: &Arc<dyn Projector>) -> Result<(), ProjectionError> {
        let name = projector.name();
        let mut stored = self.checkpoint(name).await?;
        let mut stored_at = std::time::Instant::now();
        self.publish(name, stored, None);
        let mut subscription = self.store.subscribe(stored, BATCH);
        // the last batch passed in memory since `stored`: stored once the log is quiet for a
        // second, so that the checkpoint others read (`projections status`, the reporting views)
        // does not stay behind when no further event comes
        let mut skipped: Option<Vec<Arc<RecordedEvent>>> = None;
        loop {
            let events = match skipped.take() {
                Some(passed) => {
                    let wait = IDLE_CHECKPOINT.saturating_sub(stored_at.elapsed());
                    // next_batch is cancel-safe: a timeout loses no event
                    match tokio::time::timeout(wait, subscription.next_batch()).await {
                        Ok(events) => events?,
                        Err(_) => passed,
                    }
                }
                None => subscription.next_batch().await?,
            };
            let Some(last) = events.last() else { continue };
            if !events.iter().any(|e| projector.handles(e)) && stored_at.elapsed() < IDLE_CHECKPOINT {
                self.publish(name, last.position, Some(lag_of(last)));
                skipped = Some(events);
                continue;
            }
            match self.apply_batch(projector, stored, &events).await? {
                Applied::Moved(to) => {
                    stored = to;
                    stored_at = std::time::Instant::now();
                }
                Applied::Elsewhere(current) => {
                    // another process applied these; continue from where it is
                    stored = current;
                    subscription.seek(current);
                    self.publish(name, current, None);
                }
            }
        }
    }

    /// Applies events after `from` and moves the checkpoint, unless the checkpoint is no longer
    /// at `from` (another process moved it), in which case nothing is applied.
    async fn apply_batch(
        &self,
        projector: &Arc<dyn Projector>,
        from: i64,
        events: &[Arc<RecordedEvent>],
    ) -> Result<Applied, ProjectionError> {
        let name = projector.name();
        let Some(last) = events.last() else { return Ok(Applied::Moved(from)) };
        let mut tx = self.store.db().begin_derived().await?;
        let current = locked_checkpoint(&mut tx, name).await?;
        if current != from {
            tx.rollback().await?;
            return Ok(Applied::Elsewhere(current));
        }
        projector.apply(&mut tx, events).await?;
        sql_exec!(
            tx.exec(),
            "UPDATE checkpoints SET position = $2, updated_at = $3, failures = 0, last_error = NULL, failed_at = NULL
             WHERE name = $1",
            [name, last.position, Utc::now()]
        )?;
        tx.commit().await?;
        self.publish(name, last.position, Some(lag_of(last)));
        metrics::gauge!("careledger_projector_failing", "projector" => name).set(0.0);
        Ok(Applied::Moved(last.position))
    }

    fn publish(&self, name: &'static str, position: i64, lag: Option<f64>) {
        if let Some(tx) = self.positions.get(name) {
            tx.send_replace(position);
        }
        metrics::gauge!("careledger_projection_position", "projector" => name).set(position as f64);
        if let Some(lag) = lag {
            if let Some(tx) = self.lags.get(name) {
                tx.send_replace(lag);
            }
            metrics::gauge!("careledger_projection_lag_seconds", "projector" => name).set(lag.max(0.0));
            metrics::histogram!("careledger_projection_lag", "projector" => name).record(lag.max(0.0));
        }
    }

    /// The position this process last saw a projector at.
    fn position(&self, name: &str) -> i64 {
        self.positions.get(name).map(|tx| *tx.borrow()).unwrap_or(0)
    }

    /// Keeps a failure beside the checkpoint, where every process (`/ready`, the CLI) sees it.
    async fn record_failure(&self, name: &str, error: &ProjectionError) -> Result<(), ProjectionError> {
        let mut message = error.to_string();
        if message.len() > 500 {
            let mut end = 500;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let mut tx = self.store.db().begin_derived().await?;
        sql_exec!(
            tx.exec(),
            "UPDATE checkpoints SET failures = failures + 1, last_error = $2, failed_at = $3 WHERE name = $1",
            [name, message, Utc::now()]
        )?;
        tx.commit().await?;
        Ok(())
    }

    /// A projector's checkpoint as stored (creating it at 0).
    pub async fn checkpoint(&self, name: &str) -> Result<i64, ProjectionError> {
        ensure_checkpoint(self.store.db(), name).await?;
        let mut conn = self.store.db().acquire().await?;
        let position =
            sql_fetch_optional!(conn.exec(), "SELECT position FROM checkpoints WHERE name = $1", [name], |row| row
                .try_get::<i64, _>(0))?;
        Ok(position.unwrap_or(0))
    }

    /// Whether every projector of this process has applied `position` already.
    pub fn reached(&self, position: i64) -> bool {
        self.positions.values().all(|tx| *tx.borrow() >= position)
    }

    /// Waits until the projector `name` has applied `position` (true), or the timeout passes.
    pub async fn wait_for_one(&self, name: &str, position: i64, timeout: Duration) -> bool {
        let Some(tx) = self.positions.get(name) else { return false };
        let mut rx = tx.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|p| *p >= position)).await.is_ok_and(|r| r.is_ok())
    }

    /// Waits until every projector of this process has applied `position` (true), or the
    /// timeout passes (false).
    pub async fn wait_for(&self, position: i64, timeout: Duration) -> bool {
        let waits = self.positions.values().map(|tx| {
            let mut rx = tx.subscribe();
            async move { rx.wait_for(|p| *p >= position).await.is_ok() }
        });
        tokio::time::timeout(timeout, futures::future::join_all(waits))
            .await
            .map(|all| all.into_iter().all(|ok| ok))
            .unwrap_or(false)
    }

    /// Applies everything up to the log's head now, without following (CLI, tests, rebuild).
    /// As in [`Self::follow`], batches with no event this projector handles cost no transaction;
    /// the last batch always moves the checkpoint, so it ends at the head.
    pub async fn catch_up(&self, name: &str, progress: &(dyn Fn(i64, i64) + Sync)) -> Result<i64, ProjectionError> {
        let projector = self.projector(name)?.clone();
        let head = self.store.head().await?;
        let mut stored = self.checkpoint(name).await?;
        let mut position = stored;
        let mut subscription = self.store.subscribe(position, BATCH);
        while position < head {
            let events = subscription.next_batch().await?;
            let Some(last) = events.last() else { break };
            if last.position < head && !events.iter().any(|e| projector.handles(e)) {
                position = last.position;
                progress(position, head);
                continue;
            }
            match self.apply_batch(&projector, stored, &events).await? {
                Applied::Moved(to) => stored = to,
                Applied::Elsewhere(current) => {
                    stored = current;
                    subscription.seek(current);
                }
            }
            position = stored;
            progress(position, head);
        }
        Ok(position)
    }

    /// Empties a projector's tables, resets its checkpoint to 0 and replays the whole log.
    pub async fn rebuild(&self, name: &str, progress: &(dyn Fn(i64, i64) + Sync)) -> Result<i64, ProjectionError> {
        let projector = self.projector(name)?.clone();
        ensure_checkpoint(self.store.db(), name).await?;
        let mut tx = self.store.db().begin_derived().await?;
        locked_checkpoint(&mut tx, name).await?;
        for table in projector.tables() {
            // table names are the projector's own constants, never input
            sql_exec!(tx.exec(), sqlx::AssertSqlSafe(format!("DELETE FROM {table}")), [])?;
        }
        sql_exec!(
            tx.exec(),
            "UPDATE checkpoints SET position = 0, updated_at = $2 WHERE name = $1",
            [name, Utc::now()]
        )?;
        tx.commit().await?;
        self.publish(projector.name(), 0, None);
        self.catch_up(name, progress).await
    }

    /// Every projector's checkpoint, with its failures as stored (so another process sees them).
    pub async fn status(&self) -> Result<Vec<ProjectorStatus>, ProjectionError> {
        let head = self.store.head().await?;
        let mut out = Vec::new();
        for p in &self.projectors {
            ensure_checkpoint(self.store.db(), p.name()).await?;
        }
        let mut conn = self.store.db().acquire().await?;
        let rows = sql_fetch_all!(
            conn.exec(),
            "SELECT name, position, failures, last_error, failed_at FROM checkpoints",
            [],
            |row| Ok((
                row.try_get::<String, _>(0)?,
                row.try_get::<i64, _>(1)?,
                row.try_get::<i64, _>(2)?,
                row.try_get::<Option<String>, _>(3)?,
                row.try_get::<Option<chrono::DateTime<Utc>>, _>(4)?,
            ))
        )?;
        for p in &self.projectors {
            let row = rows.iter().find(|r| r.0 == p.name());
            out.push(ProjectorStatus {
                name: p.name().to_string(),
                // this process may have moved past events it does not handle without storing it
                position: row.map(|r| r.1).unwrap_or(0).max(self.position(p.name())),
                head,
                lag_seconds: self.lags.get(p.name()).map(|l| *l.borrow()).unwrap_or(0.0),
                failures: row.map(|r| r.2).unwrap_or(0),
                error: row.and_then(|r| r.3.clone()),
                failed_at: row.and_then(|r| r.4),
            });
        }
        Ok(out)
    }
}

/// Seconds from an event's commit to now.
fn lag_of(event: &RecordedEvent) -> f64 {
    (Utc::now() - event.recorded_at).num_microseconds().unwrap_or(0) as f64 / 1e6
}

enum Applied {
    Moved(i64),
    Elsewhere(i64),
}

async fn ensure_checkpoint(db: &Db, name: &str) -> Result<(), ProjectionError> {
    let mut tx = db.begin().await?;
    sql_exec!(
        tx.exec(),
        "INSERT INTO checkpoints (name, position, updated_at) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING",
        [name, Utc::now()]
    )?;
    tx.commit().await?;
    Ok(())
}

/// The checkpoint, locked until the transaction ends (SQLite: the writer is already exclusive).
async fn locked_checkpoint(tx: &mut Tx, name: &str) -> Result<i64, ProjectionError> {
    let rows = match tx.backend() {
        Backend::Sqlite => {
            sql_fetch_all!(tx.exec(), "SELECT position FROM checkpoints WHERE name = $1", [name], |row| row
                .try_get::<i64, _>(0))?
        }
        Backend::Postgres => {
            sql_fetch_all!(tx.exec(), "SELECT position FROM checkpoints WHERE name = $1 FOR UPDATE", [name], |row| row
                .try_get::<i64, _>(0))?
        }
    };
    Ok(rows.first().copied().unwrap_or(0))
}

/// Every row of the given tables as text, in primary-key order: for comparing read models.
pub async fn dump_tables(db: &Db, tables: &[&str]) -> Result<String, ProjectionError> {
    let mut conn = db.acquire().await?;
    let mut out = String::new();
    for table in tables {
        let columns: Vec<String> = match db.backend() {
            Backend::Sqlite => {
                sql_fetch_all!(conn.exec(), "SELECT name FROM pragma_table_info($1) ORDER BY cid", [*table], |row| row
                    .try_get::<String, _>(0))?
            }
            Backend::Postgres => sql_fetch_all!(
                conn.exec(),
                "SELECT column_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                [*table],
                |row| row.try_get::<String, _>(0)
            )?,
        };
        let select =
            columns.iter().map(|c| format!("COALESCE(CAST({c} AS TEXT), '∅')")).collect::<Vec<_>>().join(" || '|' || ");
        let sql = format!("SELECT {select} FROM {table} ORDER BY 1");
        let rows = sql_fetch_all!(conn.exec(), sqlx::AssertSqlSafe(sql), [], |row| row.try_get::<String, _>(0))?;
        out.push_str(&format!("## {table} ({} rows)\n", rows.len()));
        for r in rows {
            out.push_str(&r);
            out.push('\n');
        }
    }
    Ok(out)
}
