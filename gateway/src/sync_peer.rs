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

fn cursors_path(storage: &StorageArgs) -> PathBuf {
    storage.data_dir.join("sync-peers.json")
}

fn read_cursors(path: &Path) -> Result<BTreeMap<String, Cursor>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes the cursors whole to a temporary file and renames it over the old one: a crash leaves
/// the old cursors or the new ones, never half of a file.
fn write_cursors(path: &Path, cursors: &BTreeMap<String, Cursor>) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let temporary = path.with_extension("json.tmp");
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
            Err(e) => format!("{what}: {e}"),
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

/// `careledger sync --peer URL --token TOKEN`
pub async fn run(storage: &StorageArgs, local: &Local, peer: &str, token: &str, retries: u32) -> Result<(), String> {
    let system = storage.fhir_system(local.fhir_system.as_deref())?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let base = peer.trim_end_matches('/').to_string();
    let peer_system = server_system(&client, &base, retries).await?;
    // this server's own token acts for the peer: `$changes` sends a peer what is reserved for it,
    // and the peer's Bundles are imported here only with a token issued to their sender
    let own = crate::auth::Keys::new(&storage.jwt_secret()?).mint(&peer_system, "sync:read sync:write", None, 3600)?;
    let here = Side { name: "this server", base: local.server.trim_end_matches('/').to_string(), token: own };
    let there = Side { name: "the peer", base, token: token.to_string() };
    let path = cursors_path(storage);
    let mut cursors = read_cursors(&path)?;
    let start = cursors.get(peer).copied().unwrap_or_default();

    let mut cursor = start;
    let pushed = copy(&client, &here, &there, start.pushed, retries, |at| {
        cursor.pushed = at;
        cursors.insert(peer.to_string(), cursor);
        write_cursors(&path, &cursors)
    })
    .await?;
    let pulled = copy(&client, &there, &here, start.pulled, retries, |at| {
        cursor.pulled = at;
        cursors.insert(peer.to_string(), cursor);
        write_cursors(&path, &cursors)
    })
    .await?;
    eprintln!(
        "{system} <-> {peer}: pushed {pushed} resources (up to position {}), pulled {pulled} (up to the peer's {})",
        cursor.pushed, cursor.pulled
    );
    Ok(())
}
