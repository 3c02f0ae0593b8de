//! The relay: every committed event, in log order, to the JetStream stream `CARELEDGER`.
//!
//! It tails the global log from its own checkpoint (row `relay` of `checkpoints`) and publishes
//! each event on `careledger.<context>.<EventType>` with `Nats-Msg-Id` = event id (JetStream drops
//! a repeat within the duplicate window) and the headers integrators need (stream, position,
//! correlation id). Up to `window` publishes are unacknowledged at once; the checkpoint only moves
//! past events JetStream acknowledged.
//!
//! Why nothing is lost or reordered when NATS goes away or the process dies:
//! - every publish but a session's first names the event before it in `Nats-Expected-Last-Msg-Id`.
//!   If an earlier publish was lost (a connection dropped with it in the socket), every later one is
//!   refused by the server instead of being stored out of order; the session ends and the next one
//!   starts again after the last event the stream holds;
//! - a session starts after whichever is further: the checkpoint, or the last event the stream
//!   holds (its `Careledger-Position` header), so events published but not yet checkpointed when
//!   the process was killed are not published again even after the duplicate window.

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, stream};
use careledger_events::{CONTEXTS, RecordedEvent, stream_context};
use careledger_store::{EventStore, StoreError, sql_exec, sql_fetch_optional};
use chrono::Utc;
use tokio::sync::watch;

/// The checkpoint row the relay keeps in `checkpoints`.
pub const CHECKPOINT: &str = "relay";

/// How the relay reaches NATS and what stream it keeps.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub url: String,
    /// JetStream stream name.
    pub stream: String,
    pub replicas: usize,
    pub memory_storage: bool,
    pub duplicate_window: Duration,
    /// Unacknowledged publishes at most.
    pub window: usize,
    /// How long a publish may wait for its acknowledgement before the session starts again.
    pub ack_timeout: Duration,
}

impl RelayConfig {
    pub fn new(url: impl Into<String>) -> Self {
        RelayConfig {
            url: url.into(),
            stream: "CARELEDGER".into(),
            replicas: 1,
            memory_storage: false,
            duplicate_window: Duration::from_secs(120),
            window: 1024,
            ack_timeout: Duration::from_secs(5),
        }
    }

    /// The stream covers the event subjects of every context, and not `careledger.commands.>`
    /// (a stream capturing a request subject would answer the request with its own ack).
    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: CONTEXTS.iter().map(|c| format!("careledger.{c}.>")).collect(),
            num_replicas: self.replicas,
            storage: if self.memory_storage { stream::StorageType::Memory } else { stream::StorageType::File },
            duplicate_window: self.duplicate_window,
            ..Default::default()
        }
    }
}

/// What `/ready` and `/metrics` say about the relay.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RelayStatus {
    pub connected: bool,
    /// Position of the last event JetStream acknowledged.
    pub position: i64,
    /// Seconds between that event's commit and its acknowledgement.
    pub lag_seconds: f64,
    pub published: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("nats: {0}")]
    Nats(String),
    #[error("publish of position {position}: {source}")]
    Publish { position: i64, source: PublishError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The stream's last message claims a position whose event the log does not hold with that
    /// id: it was not published by a relay, and resuming after it would skip events.
    #[error(
        "relaying stopped: the stream's last message (sequence {sequence}) says position {position}, \
         but the log holds no event with its Nats-Msg-Id there; remove that message from the stream \
         (it was not published by careledger) and the relay resumes"
    )]
    Untrusted { sequence: u64, position: i64 },
}

fn nats(e: impl std::fmt::Display) -> RelayError {
    RelayError::Nats(e.to_string())
}

/// Starts the relay; it runs until `shutdown` turns true, starting a new session after any failure.
pub fn spawn(
    store: EventStore,
    config: RelayConfig,
    mut shutdown: watch::Receiver<bool>,
) -> (tokio::task::JoinHandle<()>, watch::Receiver<RelayStatus>) {
    let (status, status_rx) = watch::channel(RelayStatus::default());
    let task = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            tokio::select! {
                result = session(&store, &config, &status) => {
                    let error = match result {
                        Ok(()) => "session ended".to_string(),
                        Err(e) => e.to_string(),
                    };
                    tracing::warn!(error = %error, "relay session ended; starting another");
                    status.send_modify(|s| {
                        s.connected = false;
                        s.last_error = Some(error);
                    });
                    metrics::gauge!("careledger_relay_connected").set(0.0);
                }
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            // a session that ran a while earned a fresh, short backoff
            backoff = if started.elapsed() > Duration::from_secs(10) {
                Duration::from_millis(100)
            } else {
                (backoff * 2).min(Duration::from_secs(5))
            };
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
    });
    (task, status_rx)
}

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

struct InFlight {
    position: i64,
    recorded_at: chrono::DateTime<Utc>,
    ack: AckFuture,
}

/// One connection's worth of relaying: set up the stream, find where to start, then publish.
async fn session(
    store: &EventStore,
    config: &RelayConfig,
    status: &watch::Sender<RelayStatus>,
) -> Result<(), RelayError> {
    let window = config.window.clamp(1, 10_000);
    let (options, servers) = crate::nats_url::options(&config.url);
    let client = options.connection_timeout(Duration::from_secs(2)).connect(servers.as_str()).await.map_err(nats)?;
    let result = relay_on(client.clone(), store, config, status, window).await;
    // Close the connection now: left to the drop of its last handle, it would keep reconnecting
    // and flushing publishes this session gave up on, beside the next session's connection.
    // (They could do no harm, as every publish names its predecessor, but cost a second
    // connection.) Draining closes it once what is buffered is written.
    let _ = client.drain().await;
    result
}

/// Publishes from where the stream and the checkpoint say, until something fails.
async fn relay_on(
    client: async_nats::Client,
    store: &EventStore,
    config: &RelayConfig,
    status: &watch::Sender<RelayStatus>,
    window: usize,
) -> Result<(), RelayError> {
    let js = jetstream::ContextBuilder::new()
        .timeout(config.ack_timeout)
        // a batch is read only while fewer than `window` publishes wait, and holds `window` events
        // at most: 2 * window permits never run out (when they do, a publish waits for a permit
        // that only an ack this task has not polled yet would free)
        .max_ack_inflight(2 * window)
        .build(client);
    js.create_or_update_stream(config.stream_config()).await.map_err(nats)?;
    let mut nats_stream = js.get_stream(&config.stream).await.map_err(nats)?;
    let state = nats_stream.info().await.map_err(nats)?.state.clone();
    // The stream's sequence only grows: the last message held may come before it, when the ones
    // after it were removed (an operator removing a message the relay did not write).
    let last_sequence = state.last_sequence;
    let mut sequence = last_sequence;
    let mut last = None;
    while sequence >= state.first_sequence.max(1) {
        match nats_stream.get_raw_message(sequence).await {
            Ok(message) => {
                last = Some(message);
                break;
            }
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => sequence -= 1,
            Err(e) => return Err(nats(e)),
        }
    }
    let (stream_position, previous_id) = match &last {
        Some(last) => {
            let header = |name: &str| last.headers.get(name).map(|v| v.as_str().to_string());
            (header("Careledger-Position").and_then(|p| p.parse::<i64>().ok()).unwrap_or(0), header("Nats-Msg-Id"))
        }
        None => (0, None),
    };
    let checkpoint = checkpoint(store).await?;
    if stream_position > checkpoint {
        // Anyone allowed to publish on `careledger.>` could have put that message there: resume
        // after it only if the log holds that very event at that position, or events would be
        // skipped, the one thing the relay must never do. Otherwise stop, saying why, until an
        // operator removes the message (README "Events on NATS JetStream").
        let held = store.read_positions(&[stream_position]).await?;
        let matches = held.first().is_some_and(|e| {
            e.position == stream_position && previous_id.as_deref() == Some(e.event_id.to_string().as_str())
        });
        if !matches {
            return Err(RelayError::Untrusted { sequence, position: stream_position });
        }
    }
    let mut position = checkpoint.max(stream_position);
    tracing::info!(url = %crate::server::redact(&config.url), stream = %config.stream, position, checkpoint = position, stream_position, last_sequence, "relay connected");
    status.send_modify(|s| {
        s.connected = true;
        s.position = position;
    });
    metrics::gauge!("careledger_relay_connected").set(1.0);

    // A session's first publish expects the stream's last sequence, not the last message's id:
    // JetStream keeps a removed message's id as the last one until it restarts.
    let mut expected = Expected::Sequence(last_sequence);
    let mut subscription = store.subscribe(position, window as i64);
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut saved = position;
    let mut last_save = Instant::now();
    loop {
        tokio::select! {
            biased;
            Some((done, ack)) = next_ack(&mut in_flight), if !in_flight.is_empty() => {
                ack.map_err(|source| RelayError::Publish { position: done.position, source })?;
                position = done.position;
                let lag = (Utc::now() - done.recorded_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
                metrics::counter!("careledger_relay_published_total").increment(1);
                metrics::gauge!("careledger_relay_position").set(position as f64);
                metrics::histogram!("careledger_relay_lag").record(lag.max(0.0));
                metrics::gauge!("careledger_relay_lag_seconds").set(lag.max(0.0));
                status.send_modify(|s| {
                    s.position = position;
                    s.lag_seconds = lag.max(0.0);
                    s.published += 1;
                    s.last_error = None;
                });
                // the checkpoint is a restart hint, not the truth (the stream is): save it when
                // caught up, or every 100 ms under load, rather than once per event
                if position > saved && (in_flight.is_empty() || last_save.elapsed() > Duration::from_millis(100)) {
                    save_checkpoint(store, position).await?;
                    saved = position;
                    last_save = Instant::now();
                }
            }
            batch = subscription.next_batch(), if in_flight.len() < window => {
                for event in batch? {
                    if !CONTEXTS.contains(&stream_context(&event.stream)) {
                        // not an event of the catalogue (no stream subject covers it): it cannot be
                        // published, and must not stop the relay
                        tracing::warn!(stream = %event.stream, position = event.position, "relay skips an event outside every context");
                        metrics::counter!("careledger_relay_skipped_total").increment(1);
                        continue;
                    }
                    let ack = publish(&js, &event, &expected).await
                        .map_err(|source| RelayError::Publish { position: event.position, source })?;
                    expected = Expected::MsgId(event.event_id.to_string());
                    in_flight.push_back(InFlight { position: event.position, recorded_at: event.recorded_at, ack });
                }
            }
        }
    }
}

/// Waits for the oldest publish's acknowledgement. Cancel-safe: the future is polled in place and
/// leaves the queue only once it has resolved.
async fn next_ack(in_flight: &mut VecDeque<InFlight>) -> Option<(InFlight, Result<PublishAck, PublishError>)> {
    let result = in_flight.front_mut()?.ack.as_mut().await;
    Some((in_flight.pop_front()?, result))
}

/// What a publish expects the stream to hold last: JetStream refuses it otherwise.
enum Expected {
    /// The stream's last sequence when the session started (its first publish).
    Sequence(u64),
    /// The event published before (every later one).
    MsgId(String),
}

async fn publish(
    js: &jetstream::Context,
    event: &RecordedEvent,
    expected: &Expected,
) -> Result<AckFuture, PublishError> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", event.event_id.to_string().as_str());
    match expected {
        Expected::Sequence(sequence) => headers.insert("Nats-Expected-Last-Sequence", sequence.to_string().as_str()),
        Expected::MsgId(previous) => headers.insert("Nats-Expected-Last-Msg-Id", previous.as_str()),
    }
    headers.insert("Careledger-Stream", event.stream.as_str());
    headers.insert("Careledger-Position", event.position.to_string().as_str());
    headers.insert("Careledger-Version", event.version.to_string().as_str());
    headers.insert("Careledger-Correlation-Id", event.metadata.correlation_id.to_string().as_str());
    let payload = serde_json::to_vec(event).map_err(|e| PublishError::with_source(PublishErrorKind::Other, e))?;
    let ack =
        js.send_publish(event.subject(), PublishMessage::build().payload(payload.into()).headers(headers)).await?;
    Ok(ack.into_future())
}

async fn checkpoint(store: &EventStore) -> Result<i64, RelayError> {
    let mut tx = store.db().begin().await?;
    sql_exec!(
        tx.exec(),
        "INSERT INTO checkpoints (name, position, updated_at) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING",
        [CHECKPOINT, Utc::now()]
    )?;
    let position =
        sql_fetch_optional!(tx.exec(), "SELECT position FROM checkpoints WHERE name = $1", [CHECKPOINT], |row| row
            .try_get::<i64, _>(0))?;
    tx.commit().await?;
    Ok(position.unwrap_or(0))
}

/// Moves the checkpoint forward only: two relays sharing a database never move it back.
async fn save_checkpoint(store: &EventStore, position: i64) -> Result<(), RelayError> {
    let mut tx = store.db().begin_derived().await?;
    sql_exec!(
        tx.exec(),
        "UPDATE checkpoints SET position = $2, updated_at = $3 WHERE name = $1 AND position < $2",
        [CHECKPOINT, position, Utc::now()]
    )?;
    tx.commit().await?;
    Ok(())
}
