//! `careledger sync --peer URL`: the sync over the network (issue #21, "Over the internet"), one
//! round of push then pull between this server (its running `serve`, `--server`) and a peer.
//!
//! - push: this server's `GET /fhir/$changes` after the position the peer last took, page by
//!   page, each page `POST`ed to the peer's `/fhir` with the peer's token (`--token`, a token the
//!   peer's operator minted for this server: `sync:read sync:write`, `sub` this server's system);
//! - pull: the peer's `$changes` after the position this server last took, each page `POST`ed to
//!   this server's `/fhir`.
//!
//! After each page is imported, the position it reached is written to
//! `<data-dir>/sync-peers.json` (replaced atomically): an interrupted sync resumes at the page it
//! stopped in, and that page imported twice appends nothing (its Bundle's identifier, or its
//! resources' identifiers, are known). A peer that cannot be reached, or answers 5xx, is retried
//! with exponential backoff (`--retries` times) before the command gives up with an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::StorageArgs;
use crate::sync_files::Local;

/// What a sync with one peer has reached: the log positions after which the next round starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// This server's position the peer has imported up to.
    pub pushed: i64,
    /// The peer's position this server has imported up to.
    pub pulled: i64,
}

/// What is kept per peer (by its URL): the cursor, and the system the peer named when first met.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Kept {
    #[serde(flatten)]
    cursor: Cursor,
    /// The peer's FHIR system: a peer at this URL naming another later is refused (its token
    /// here is minted for the system it names, which decides whose resources it speaks for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    system: Option<String>,
}

pub(crate) fn cursors_path(storage: &StorageArgs) -> PathBuf {
    storage.data_dir.join("sync-peers.json")
}

fn read_cursors(path: &Path) -> Result<BTreeMap<String, Kept>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes the cursors whole to a temporary file and renames it over the old one: a crash leaves
/// the old cursors or the new ones, never half of a file.
fn write_cursors(path: &Path, cursors: &BTreeMap<String, Kept>) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // one temporary file per process: `serve`'s loop and a `sync --peer` never write one file
    let temporary = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let text = serde_json::to_string_pretty(cursors).map_err(|e| e.to_string())?;
    std::fs::write(&temporary, text).map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

/// One side of the sync: a server's FHIR base and the token to use there.
struct Side<'a> {
    name: &'a str,
    base: String,
    token: String,
}

/// Sends a request, retrying a connection failure or a 5xx with exponential backoff.
async fn send(request: impl Fn() -> reqwest::RequestBuilder, what: &str, retries: u32) -> Result<(u16, Value), String> {
    let mut delay = Duration::from_millis(500);
    let mut attempt = 0;
    loop {
        let outcome = match request().send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(body) if status < 500 => {
                        return Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                    }
                    Ok(body) => format!("{what} answered {status}: {}", String::from_utf8_lossy(&body)),
                    Err(e) => format!("{what}: {e}"),
                }
            }
            Err(e) => format!("{what}: {}", crate::http_client::why(&e)),
        };
        attempt += 1;
        if attempt > retries {
            return Err(format!("{outcome} (gave up after {attempt} attempts)"));
        }
        eprintln!("{outcome}; retrying in {:.1} s", delay.as_secs_f64());
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

/// The position a `$changes` Bundle's `next` link carries.
pub(crate) fn next_position(page: &Value) -> Option<i64> {
    page["link"].as_array()?.iter().find(|l| l["relation"] == "next")?["url"]
        .as_str()?
        .split("_since=")
        .nth(1)?
        .split('&')
        .next()?
        .parse()
        .ok()
}

/// Copies `from`'s changes after `since` into `to`, a page at a time, calling `reached` after each
/// imported page; returns the resources sent.
async fn copy(
    client: &reqwest::Client,
    from: &Side<'_>,
    to: &Side<'_>,
    mut since: i64,
    retries: u32,
    mut reached: impl FnMut(i64) -> Result<(), String>,
) -> Result<usize, String> {
    let mut sent = 0;
    loop {
        let url = format!("{}/fhir/$changes?_since={since}&_count=1000", from.base);
        let (status, page) = send(|| client.get(&url).bearer_auth(&from.token), &url, retries).await?;
        if status != 200 {
            return Err(format!("{} ({url}) answered {status}: {page}", from.name));
        }
        let next = next_position(&page).ok_or_else(|| format!("{url} answered a Bundle without a next link"))?;
        let entries = page["entry"].as_array().map(Vec::len).unwrap_or(0);
        if entries > 0 {
            let url = format!("{}/fhir", to.base);
            let body = serde_json::to_vec(&page).map_err(|e| e.to_string())?;
            let post = || {
                client
                    .post(&url)
                    .bearer_auth(&to.token)
                    .header("content-type", careledger_fhir::FHIR_JSON)
                    .body(body.clone())
            };
            let (status, answer) = send(post, &url, retries).await?;
            if status != 200 {
                return Err(format!("{} ({url}) refused a page of {} ({status}): {answer}", to.name, from.name));
            }
            sent += entries;
        }
        if next != since {
            reached(next)?;
        }
        if entries == 0 || next == since {
            return Ok(sent);
        }
        since = next;
    }
}

/// The peer's identifier system, as its CapabilityStatement names it (`GET /fhir/metadata`).
async fn server_system(client: &reqwest::Client, base: &str, retries: u32) -> Result<String, String> {
    let url = format!("{base}/fhir/metadata");
    let (status, statement) = send(|| client.get(&url), &url, retries).await?;
    let named = statement["implementation"]["extension"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["url"] == careledger_fhir::SERVER_SYSTEM))
        .and_then(|e| e["valueUri"].as_str());
    match named {
        Some(system) if status == 200 => Ok(system.to_string()),
        _ => Err(format!("{url} answered {status} without naming the peer's system: is it a careledger?")),
    }
}

/// The peer a round syncs with: where it is, the token it gave this server, whom it must be.
#[derive(Clone)]
pub struct Peer {
    /// Its base URL.
    pub url: String,
    /// Its token for this server.
    pub token: String,
    /// PEM certificates of the CA that signed its certificate (a scheme's own CA), trusted beside
    /// the platform's roots.
    pub ca: Option<PathBuf>,
    /// The system it must name (`--peer-system`; a node's master by default): another is refused
    /// before anything is sent. Unset: the system it named when first met.
    pub system: Option<String>,
}

// the token stays out of any log line that prints a peer, and so do credentials in its URL
impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("url", &crate::server::redact(&self.url))
            .field("ca", &self.ca)
            .field("system", &self.system)
            .finish_non_exhaustive()
    }
}

/// A round of sync with one peer: who this server is, where it listens and keeps its cursors.
#[derive(Clone)]
pub struct Round {
    /// This server's FHIR identifier system.
    pub system: String,
    /// This server's JWT secret: the round mints its own token for the local import.
    pub jwt_secret: String,
    /// Where the cursors are kept (`<data-dir>/sync-peers.json`).
    pub cursors: PathBuf,
    /// This server's base URL, as its `serve` listens.
    pub local: String,
    pub peer: Peer,
    /// How often an unreachable peer (or a 5xx) is tried again within the round.
    pub retries: u32,
}

impl std::fmt::Debug for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Round")
            .field("system", &self.system)
            .field("local", &self.local)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// What a round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Synced {
    pub pushed: usize,
    pub pulled: usize,
    pub cursor: Cursor,
}

impl Round {
    /// For `careledger sync --peer`: this server as the data directory and `--server` name it.
    pub fn of(storage: &StorageArgs, local: &Local, peer: Peer, retries: u32) -> Result<Round, String> {
        Ok(Round {
            system: storage.fhir_system(local.fhir_system.as_deref())?,
            jwt_secret: storage.jwt_secret()?,
            cursors: cursors_path(storage),
            local: local.server.trim_end_matches('/').to_string(),
            peer: Peer { url: peer.url.trim_end_matches('/').to_string(), ..peer },
            retries,
        })
    }

    /// Push then pull, each page's position kept once it is imported.
    pub async fn run(&self) -> Result<Synced, String> {
        let peer = &self.peer;
        let client = crate::http_client::client(Duration::from_secs(600), peer.ca.as_deref())?;
        let peer_system = server_system(&client, &peer.url, self.retries).await?;
        let path = &self.cursors;
        // held until the round ends: the cursors are read here and written after every page
        let _round = one_round_at_a_time(path).await?;
        let mut cursors = read_cursors(path)?;
        let met = cursors.get(&peer.url).and_then(|k| k.system.clone());
        let (expected, why) = match (&peer.system, met) {
            (Some(pinned), _) => (Some(pinned.clone()), "the system it is configured to have"),
            (None, met) => (met, "the system it named when first synced with (in sync-peers.json)"),
        };
        if let Some(expected) = expected
            && expected != peer_system
        {
            return Err(format!(
                "{} names itself {peer_system}, not {expected} ({why}): nothing sent or taken",
                crate::server::redact(&peer.url)
            ));
        }
        // this server's own token acts for the peer: `$changes` sends a peer what is reserved
        // for it, and the peer's Bundles are imported here only with a token issued to their sender
        let own = crate::auth::Keys::new(&self.jwt_secret).mint(&peer_system, "sync:read sync:write", None, 3600)?;
        let here = Side { name: "this server", base: self.local.clone(), token: own };
        let there = Side { name: "the peer", base: peer.url.clone(), token: peer.token.clone() };
        let start = cursors.get(&peer.url).map(|k| k.cursor).unwrap_or_default();
        let keep = |cursor: Cursor| Kept { cursor, system: Some(peer_system.clone()) };

        let mut cursor = start;
        let pushed = copy(&client, &here, &there, start.pushed, self.retries, |at| {
            cursor.pushed = at;
            cursors.insert(peer.url.clone(), keep(cursor));
            write_cursors(path, &cursors)
        })
        .await?;
        let pulled = copy(&client, &there, &here, start.pulled, self.retries, |at| {
            cursor.pulled = at;
            cursors.insert(peer.url.clone(), keep(cursor));
            write_cursors(path, &cursors)
        })
        .await?;
        Ok(Synced { pushed, pulled, cursor })
    }
}

/// Waits until no other round (`careledger sync`, or `serve`'s loop, on the same data directory)
/// holds the cursors, then holds them: an exclusive lock on `sync-peers.lock` beside them, released
/// when the returned file is dropped or the process ends, however it ends. Two rounds at once
/// would each write the cursors whole, the later one taking back what the other reached.
async fn one_round_at_a_time(cursors: &Path) -> Result<std::fs::File, String> {
    let path = cursors.with_extension("lock");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if !told => {
                told = true;
                tracing::info!(lock = %path.display(), "another sync round is running on this data directory: waiting for it");
            }
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(format!("cannot lock {}: {e}", path.display())),
        }
        // polled rather than waited for on a blocking thread: a server shutting down does not
        // wait for another process's round to end
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `careledger sync --peer URL --token TOKEN`
pub async fn run(storage: &StorageArgs, local: &Local, peer: Peer, retries: u32) -> Result<(), String> {
    let round = Round::of(storage, local, peer, retries)?;
    let synced = round.run().await?;
    eprintln!(
        "{} <-> {}: pushed {} resources (up to position {}), pulled {} (up to the peer's {})",
        round.system,
        crate::server::redact(&round.peer.url),
        synced.pushed,
        synced.cursor.pushed,
        synced.pulled,
        synced.cursor.pulled
    );
    Ok(())
}

/// The background sync of `serve` (`CARELEDGER_SYNC_PEER`): a round every `interval`.
#[derive(Debug, Clone)]
pub struct SyncLoopConfig {
    pub peer: Peer,
    pub interval: Duration,
    /// The first wait after a failed round; doubled after each failure, at most `interval`.
    pub backoff: Duration,
    pub cursors: PathBuf,
}

/// What `/ready` says about the background sync.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncStatus {
    /// The peer's URL, without credentials.
    pub peer: String,
    /// Whether the last round reached the peer (none before the first round ends).
    pub reachable: Option<bool>,
    /// When a round last went through, and when one was last tried (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
    /// Rounds failed in a row (0 once one goes through).
    pub failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the next round starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// Resources pushed and pulled since this process started.
    pub pushed: u64,
    pub pulled: u64,
    /// The positions reached (this server's pushed, the peer's pulled).
    pub cursor: Cursor,
}

/// What `/ready` (which answers without a token) shows of a failed round: the error without the
/// bodies it quotes (a peer's or this server's OperationOutcome can name claims and insurees),
/// at most 300 characters. The whole error is logged.
fn shown(error: &str) -> String {
    let cut = error.split('{').next().unwrap_or_default().trim_end();
    cut.chars().take(300).collect()
}

fn now_text() -> String {
    careledger_projections::time::text(&chrono::Utc::now())
}

/// Runs a round at once, then every `interval`; a failed round is tried again sooner, waiting
/// twice as long after each failure. A round stopped by the shutdown resumes at its next start.
pub fn spawn(
    round: Round,
    config: SyncLoopConfig,
    status: tokio::sync::watch::Sender<SyncStatus>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = config.backoff;
        loop {
            let attempt = now_text();
            let outcome = tokio::select! {
                outcome = round.run() => outcome,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let wait = match &outcome {
                Ok(_) => config.interval,
                Err(_) => backoff.min(config.interval),
            };
            let next = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            status.send_modify(|s| {
                s.last_attempt_at = Some(attempt);
                s.next_attempt_at = Some(careledger_projections::time::text(&next));
                match &outcome {
                    Ok(synced) => {
                        s.reachable = Some(true);
                        s.last_synced_at = Some(now_text());
                        s.failures = 0;
                        s.last_error = None;
                        s.pushed += synced.pushed as u64;
                        s.pulled += synced.pulled as u64;
                        s.cursor = synced.cursor;
                    }
                    Err(e) => {
                        s.reachable = Some(false);
                        s.failures += 1;
                        s.last_error = Some(shown(e));
                    }
                }
            });
            match outcome {
                Ok(synced) => {
                    backoff = config.backoff;
                    metrics::counter!("careledger_sync_rounds_total", "outcome" => "ok").increment(1);
                    if synced.pushed + synced.pulled > 0 {
                        tracing::info!(peer = %crate::server::redact(&round.peer.url), pushed = synced.pushed, pulled = synced.pulled, "synced");
                    }
                }
                Err(e) => {
                    backoff = backoff.saturating_mul(2).min(config.interval);
                    metrics::counter!("careledger_sync_rounds_total", "outcome" => "failed").increment(1);
                    tracing::warn!(peer = %crate::server::redact(&round.peer.url), error = %e, retry_in_s = wait.as_secs_f64(), "sync round failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    })
}

/// The status the loop keeps, before it starts (`/ready` reads the receiver).
pub fn status_channel(
    config: &SyncLoopConfig,
) -> (tokio::sync::watch::Sender<SyncStatus>, tokio::sync::watch::Receiver<SyncStatus>) {
    let peer = crate::server::redact(&config.peer.url);
    tokio::sync::watch::channel(SyncStatus { peer, ..SyncStatus::default() })
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_round_waits_for_the_one_holding_the_cursors() {
        let dir = std::env::temp_dir().join(format!("careledger-lock-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let cursors = dir.join("sync-peers.json");
        let first = super::one_round_at_a_time(&cursors).await.unwrap();
        let path = cursors.clone();
        let second = tokio::spawn(async move { super::one_round_at_a_time(&path).await });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!second.is_finished(), "the second round waits");
        drop(first);
        let held = tokio::time::timeout(std::time::Duration::from_secs(10), second).await;
        assert!(held.unwrap().unwrap().is_ok(), "and runs once the first ends");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
