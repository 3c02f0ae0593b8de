//! `careledger tail`: the relay's JetStream stream as JSON lines on stdout, a ready consumer for
//! scripts.
//!
//! One line per event: `{"subject", "stream", "position", "version", "event"}` (the first four
//! from the message's subject and headers, `event` the event's JSON envelope as relayed). A message
//! is acknowledged once its line is written and flushed, so a durable consumer (`--durable NAME`)
//! resumes after the last line printed.
//!
//! Messages are pulled in small batches, and a batch is always read to its end: on SIGINT or a
//! closed stdout the lines not printed are given back (NAK) in order instead of being left to
//! JetStream's acknowledgement timeout, which would hand them to the next run after newer ones.

use std::io::Write;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, AckKind};
use clap::Args;
use futures::{FutureExt, StreamExt};
use serde_json::{Value, json};

/// Settings of `careledger tail`.
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// The NATS server the relay publishes to.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// The relay's JetStream stream.
    #[arg(long, env = "CARELEDGER_NATS_STREAM", default_value = "CARELEDGER")]
    pub stream: String,
    /// Only events on these subjects, e.g. `careledger.codes.>` or `careledger.registry.EquipmentRegistered`.
    #[arg(long, default_value = "careledger.>")]
    pub subject: String,
    /// A durable consumer of this name: a later run resumes after the last event printed.
    /// (A durable keeps the subject and start it was created with.)
    #[arg(long)]
    pub durable: Option<String>,
    /// Start with the stream's first event (the default).
    #[arg(long, conflicts_with = "new")]
    pub from_start: bool,
    /// Start with events published from now on.
    #[arg(long)]
    pub new: bool,
}

/// Messages asked for at once; a batch not yet printed is what a stop gives back.
const BATCH: usize = 100;
/// How long one pull waits for messages; also the longest a stop waits for a pull to end.
const PULL_WAIT: Duration = Duration::from_millis(500);
/// How long after `PULL_WAIT` a pull is ended here if the server has not ended it. nats-server
/// 2.9 sometimes sends no end (its 408) for a pull that got messages just before it expired;
/// async-nats then waits 5 s more before it gives up on the pull, and every event published
/// meanwhile waited as long (measured: a 5.0 s stall in about one run in ten, and a tail whose
/// reader went away taking over 10 s to notice).
const PULL_GRACE: Duration = Duration::from_millis(500);

/// One message as its line.
fn line(message: &async_nats::Message) -> Value {
    let header = |name: &str| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
    let number = |name: &str| header(name).and_then(|v| v.parse::<i64>().ok());
    let event = serde_json::from_slice::<Value>(&message.payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&message.payload).into_owned()));
    json!({
        "subject": message.subject.as_str(),
        "stream": header("Careledger-Stream"),
        "position": number("Careledger-Position"),
        "version": number("Careledger-Version"),
        "event": event,
    })
}

/// Prints events until SIGINT/SIGTERM or until stdout is closed.
pub async fn run(args: TailArgs, stop: impl std::future::Future<Output = ()> + Send + 'static) -> Result<(), String> {
    // listening for the signal from the start: a SIGINT while connecting still ends the run cleanly
    let mut stop = tokio::spawn(stop);
    let (options, servers) = crate::nats_url::options(&args.nats_url);
    let client = options
        .name("careledger tail")
        .connection_timeout(Duration::from_secs(5))
        .connect(servers.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", crate::server::redact(&args.nats_url)))?;
    let js = jetstream::new(client.clone());
    let stream = js
        .get_stream(&args.stream)
        .await
        .map_err(|e| format!("no stream {} (is a relay running?): {e}", args.stream))?;
    let config = pull::Config {
        durable_name: args.durable.clone(),
        filter_subject: args.subject.clone(),
        deliver_policy: if args.new { DeliverPolicy::New } else { DeliverPolicy::All },
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    };
    let consumer = match &args.durable {
        Some(name) => stream.get_or_create_consumer(name, config).await,
        None => stream.create_consumer(config).await,
    }
    .map_err(|e| format!("cannot create the consumer: {e}"))?;

    let mut stopping = false;
    let mut stdout = std::io::stdout().lock();
    while !stopping {
        let mut batch = consumer
            .batch()
            .max_messages(BATCH)
            .expires(PULL_WAIT)
            .messages()
            .await
            .map_err(|e| format!("cannot pull: {e}"))?;
        let deadline = tokio::time::Instant::now() + PULL_WAIT + PULL_GRACE;
        let mut overdue = false;
        loop {
            let next = if overdue {
                // the pull has expired on the server: read what already arrived, then pull again
                match batch.next().now_or_never() {
                    Some(next) => next,
                    None => break,
                }
            } else {
                tokio::select! {
                    next = batch.next() => next,
                    _ = &mut stop, if !stopping => { stopping = true; continue }
                    _ = tokio::time::sleep_until(deadline) => { overdue = true; continue }
                }
            };
            let Some(message) = next else { break };
            let message = message.map_err(|e| format!("cannot pull: {e}"))?;
            if !stopping && writeln!(stdout, "{}", line(&message)).and_then(|()| stdout.flush()).is_err() {
                // the reader went away: give this one back too, then stop
                stopping = true;
            }
            let ack = if stopping { message.ack_with(AckKind::Nak(None)).await } else { message.ack().await };
            ack.map_err(|e| format!("cannot acknowledge: {e}"))?;
        }
    }
    if args.durable.is_none() {
        let _ = stream.delete_consumer(&consumer.cached_info().name).await;
    }
    client.flush().await.map_err(|e| format!("cannot flush the acknowledgements: {e}"))?;
    Ok(())
}
