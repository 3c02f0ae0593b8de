//! Commands over NATS: request/reply on `careledger.commands.<context>.<Command>`.
//!
//! A command message is turned into the HTTP request it names ([`commands`]) and sent through the
//! very router that serves HTTP, so permissions, validation, idempotency and the envelope are the
//! HTTP API's by construction; the reply is the HTTP answer ([`message`]). Gateways subscribe in
//! one queue group, so each command is taken by one of them. At most `concurrency` commands run at
//! once: past that, messages wait in the subscription (NATS' own back pressure).
//!
//! A message that cannot be a command (unknown subject, a path parameter header missing or not
//! one path segment) is answered with the error envelope and reaches nothing; one without a reply
//! subject is not run at all (its sender could never learn what happened), only counted. `careledger.commands.>` is outside the
//! relay's JetStream stream on purpose: a stream capturing it would answer requests with its acks.

pub mod commands;
pub mod message;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::client::PublishErrorKind;
use async_nats::connection::State;
use axum::Router;
use futures::StreamExt;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::http::envelope::{ApiError, POSITION_HEADER};
use commands::{NatsCommand, SUBJECT_PREFIX};

/// How the intake reaches NATS.
#[derive(Debug, Clone)]
pub struct IntakeConfig {
    pub url: String,
    /// The queue group gateways share the commands in.
    pub queue: String,
    /// Commands run at once at most.
    pub concurrency: usize,
}

impl IntakeConfig {
    pub fn new(url: impl Into<String>) -> Self {
        IntakeConfig { url: url.into(), queue: "careledger".into(), concurrency: 64 }
    }
}

/// What `/ready` says about the intake.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IntakeStatus {
    /// Connected to NATS with the subscription in place: commands sent now are taken.
    pub subscribed: bool,
    pub subject: String,
    pub queue: String,
    pub in_flight: usize,
    pub answered: u64,
    #[serde(skip)]
    listening: bool,
    #[serde(skip)]
    connected: bool,
}

impl IntakeStatus {
    fn update(&mut self, change: impl FnOnce(&mut Self)) {
        change(self);
        self.subscribed = self.listening && self.connected;
        metrics::gauge!("careledger_nats_commands_subscribed").set(if self.subscribed { 1.0 } else { 0.0 });
    }
}

/// A status channel for an intake that `spawn` is given later (the router needs the receiver).
pub fn status_channel(config: &IntakeConfig) -> (watch::Sender<IntakeStatus>, watch::Receiver<IntakeStatus>) {
    watch::channel(IntakeStatus {
        subject: format!("{SUBJECT_PREFIX}>"),
        queue: config.queue.clone(),
        ..Default::default()
    })
}

/// Starts taking commands; runs until `shutdown` turns true, then answers what it has taken.
pub fn spawn(
    router: Router,
    config: IntakeConfig,
    status: watch::Sender<IntakeStatus>,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(error) = run(router, &config, &status, shutdown).await {
            tracing::error!(%error, url = %crate::server::redact(&config.url), "command intake stopped");
        }
        status.send_modify(|s| s.update(|s| s.listening = false));
    })
}

async fn run(
    router: Router,
    config: &IntakeConfig,
    status: &watch::Sender<IntakeStatus>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let concurrency = config.concurrency.clamp(1, 10_000);
    // connects in the background and reconnects by itself (resubscribing): a NATS that is down at
    // start or goes away later delays commands, it does not stop the service
    let (options, servers) = crate::nats_url::options(&config.url);
    let client = options
        .name("careledger command intake")
        .retry_on_initial_connect()
        .connect(servers.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let mut subscriber =
        client.queue_subscribe(format!("{SUBJECT_PREFIX}>"), config.queue.clone()).await.map_err(|e| e.to_string())?;
    status.send_modify(|s| s.update(|s| s.listening = true));
    tracing::info!(url = %crate::server::redact(&config.url), queue = %config.queue, concurrency, "command intake subscribed");

    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    // the connection's state, as `/ready` shows it, is looked at while waiting for anything
    let refresh = || {
        let connected = client.connection_state() == State::Connected;
        status.send_if_modified(|s| {
            let changed = s.connected != connected;
            s.update(|s| s.connected = connected);
            changed
        });
    };
    // messages this subscription delivered: what an UNSUB's maximum counts (see `leave`)
    let mut received: u64 = 0;
    'taking: loop {
        let permit = loop {
            tokio::select! {
                permit = permits.clone().acquire_owned() => break permit.map_err(|e| e.to_string())?,
                _ = tick.tick() => refresh(),
                _ = shutdown.wait_for(|stop| *stop) => break 'taking,
            }
        };
        let message = loop {
            tokio::select! {
                message = subscriber.next() => break message,
                _ = tick.tick() => refresh(),
                _ = shutdown.wait_for(|stop| *stop) => break 'taking,
            }
        };
        let Some(message) = message else { break };
        received += 1;
        tokio::spawn(take(router.clone(), client.clone(), message, permit, status.clone()));
    }

    // shutting down: no new commands; answer those NATS already handed this gateway, then wait
    // for every command running to finish before the store closes under it
    status.send_modify(|s| s.update(|s| s.listening = false));
    let mut leaving = tokio::task::JoinSet::new();
    leave(&mut subscriber, received, concurrency as u64, |message| {
        let (router, client, status, permits) = (router.clone(), client.clone(), status.clone(), permits.clone());
        leaving.spawn(async move {
            if let Ok(permit) = permits.acquire_owned().await {
                take(router, client, message, permit, status).await;
            }
        });
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while leaving.join_next().await.is_some() {}
        let _ = permits.acquire_many(concurrency as u32).await;
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    tracing::info!("command intake stopped");
    Ok(())
}

/// How long a stopping gateway waits for the server to close its subscription before it
/// unsubscribes outright.
const LEAVING: Duration = Duration::from_secs(2);

/// Leaves the queue group without dropping a command the server routed here meanwhile, handing
/// each message still delivered to `run`. `received` is how many messages the subscription has
/// delivered so far.
///
/// async-nats' `drain` sends UNSUB and forgets the subscription at once, before the server has
/// taken the UNSUB: a command routed here in between arrives for a subscription the client no
/// longer has and is dropped unread, its requester timing out (seen under load by
/// `gateways_stopping_under_load_lose_no_command`). Instead the subscription is told to end after
/// `lame_duck` more messages (`UNSUB <sid> <max>`, where both the server and the client count
/// the messages of the subscription): both sides then stop at the same message, and whatever the
/// server sent before it took the UNSUB is still received. Only when fewer than `lame_duck`
/// commands come within `LEAVING` (a quiet moment, when nothing is likely to be on its way) does
/// the gateway unsubscribe outright.
async fn leave(
    subscriber: &mut async_nats::Subscriber,
    mut received: u64,
    lame_duck: u64,
    mut run: impl FnMut(async_nats::Message),
) {
    // what the client holds already counts as delivered: take it first, so that `received` is
    // what the client's count will be when it reads the UNSUB
    while let Some(Some(message)) = futures::FutureExt::now_or_never(subscriber.next()) {
        received += 1;
        run(message);
    }
    if subscriber.unsubscribe_after(received + lame_duck.max(1)).await.is_err() {
        return;
    }
    let deadline = Instant::now() + LEAVING;
    loop {
        match tokio::time::timeout_at(deadline.into(), subscriber.next()).await {
            Ok(Some(message)) => run(message),
            Ok(None) => return,
            Err(_) => break,
        }
    }
    let _ = subscriber.drain().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline.into(), subscriber.next()).await {
        run(message);
    }
}

/// Runs one message and replies; the permit bounds how many run at once.
async fn take(
    router: Router,
    client: async_nats::Client,
    message: async_nats::Message,
    _permit: tokio::sync::OwnedSemaphorePermit,
    status: watch::Sender<IntakeStatus>,
) {
    let started = Instant::now();
    let command = NatsCommand::for_subject(&message.subject);
    let name = command.map(|c| c.name).unwrap_or("unknown");
    let Some(reply_to) = message.reply.clone() else {
        tracing::warn!(subject = %message.subject, "a command without a reply subject is not run");
        metrics::counter!("careledger_nats_commands_unanswerable_total").increment(1);
        return;
    };
    // A reply goes to the sender's inbox, never into careledger's own subjects: a reply subject
    // of the event stream (`careledger.codes.…`) would store the answer there as if it were an
    // event, for every integrator to consume, and one of the system's (`$JS.API.STREAM.DELETE…`)
    // would make the service ask for what the sender may not. Such a command is not run.
    if reply_to.as_str().starts_with("careledger.") || reply_to.as_str().starts_with('$') {
        tracing::warn!(subject = %message.subject, reply = %reply_to, "a command replying into careledger's subjects is not run");
        metrics::counter!("careledger_nats_commands_unanswerable_total").increment(1);
        return;
    }
    status.send_modify(|s| s.in_flight += 1);
    metrics::gauge!("careledger_nats_commands_in_flight").increment(1.0);
    let (code, headers, body) = answer(router, command, &message).await;
    metrics::gauge!("careledger_nats_commands_in_flight").decrement(1.0);
    metrics::counter!("careledger_nats_commands_total", "command" => name, "status" => code.as_str().to_string())
        .increment(1);
    metrics::histogram!("careledger_nats_command_seconds", "command" => name).record(started.elapsed().as_secs_f64());
    let size = body.len();
    match client.publish_with_headers(reply_to.clone(), headers.clone(), body).await {
        Err(error) if error.kind() == PublishErrorKind::MaxPayloadExceeded => {
            // the command took effect; only its answer does not fit in a message (a reservation
            // of very many codes): say so, with the position it reached, rather than stay silent
            let position = message::header(Some(&headers), POSITION_HEADER).unwrap_or("none").to_string();
            let error = ApiError::internal_explained(format!(
                "The answer ({size} bytes, status {code}) is larger than NATS' maximum payload; the command was \
                 executed (position {position}): read its result over HTTP, or send smaller commands"
            ));
            let (_, mut refusal, body) = message::refusal(&error, Some(&headers));
            if let Some(position) = message::header(Some(&headers), POSITION_HEADER) {
                refusal.insert("Careledger-Position", position);
            }
            if let Err(error) = client.publish_with_headers(reply_to, refusal, body).await {
                tracing::warn!(%error, subject = %message.subject, "cannot send a command's reply");
            }
        }
        Err(error) => tracing::warn!(%error, subject = %message.subject, "cannot send a command's reply"),
        Ok(()) => {}
    }
    status.send_modify(|s| {
        s.in_flight = s.in_flight.saturating_sub(1);
        s.answered += 1;
    });
}

/// The HTTP answer to a command message, or the refusal of one that names no command.
async fn answer(
    router: Router,
    command: Option<&NatsCommand>,
    message: &async_nats::Message,
) -> (axum::http::StatusCode, async_nats::HeaderMap, axum::body::Bytes) {
    let headers = message.headers.as_ref();
    let Some(command) = command else {
        let names: Vec<String> = commands::COMMANDS.iter().map(NatsCommand::subject).collect();
        let error =
            ApiError::not_found(format!("No such command: {}. Commands: {}", message.subject, names.join(", ")));
        return message::refusal(&error, headers);
    };
    match message::request(command, headers, message.payload.clone()) {
        Ok(request) => match router.oneshot(request).await {
            Ok(response) => message::reply(response).await,
            Err(never) => match never {},
        },
        Err(error) => message::refusal(&error, headers),
    }
}
