//! `careledger sync export` and `careledger sync import`: the sync by file (issue #21, "By file"),
//! for a node with no network to its peer.
//!
//! Both talk to this server's own running `careledger serve` over HTTP (`--server`, by default
//! `http://127.0.0.1:8080`), with a short-lived token they mint from the data directory's JWT
//! secret: the export is `GET /fhir/$changes`, the import `POST /fhir`, so that a file is read
//! and written by exactly the code a sync over the network runs, against read models the server
//! keeps current, and no second process writes the database.
//!
//! - export: every page of `$changes` after `--since` (0 by default: everything; importing
//!   overlapping Bundles is harmless, they are matched by identifiers) in one `transaction`
//!   Bundle, signed with this server's key and encrypted to the peer's public key file
//!   (`careledger-sync`, age and Ed25519).
//! - import: the file opened with this server's key and checked against the public key files of
//!   the peers it trusts (`--from`, repeated): a file changed on the way, signed by a key not
//!   given, or meant for another server is refused, and nothing is sent to the server. The
//!   Bundle's sender (`Bundle.identifier.system`) must be the server that signed the file.

use std::path::{Path, PathBuf};

use careledger_sync::{Keys, PeerKey};
use serde_json::{Value, json};

use crate::config::StorageArgs;

/// The options both commands share.
#[derive(Debug, clap::Args)]
pub struct Local {
    /// This server's HTTP address, as `serve` listens on it.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// This server's FHIR identifier system, as `serve` is given it.
    #[arg(long, env = "CARELEDGER_FHIR_SYSTEM")]
    pub fhir_system: Option<String>,
}

/// Resources per `$changes` page read by an export.
const PAGE: usize = 1000;

fn read_peer(path: &Path) -> Result<PeerKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    PeerKey::from_file(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The local server's keys and a token for it, acting as `peer` (the server the file is for or
/// from: `$changes` sends a peer the codes reserved for it).
fn local(storage: &StorageArgs, local: &Local, scope: &str, peer: &str) -> Result<(Keys, String), String> {
    let system = storage.fhir_system(local.fhir_system.as_deref())?;
    let keys = storage.sync_keys(&system)?;
    let token = crate::auth::Keys::new(&storage.jwt_secret()?).mint(peer, scope, None, 300)?;
    Ok((keys, token))
}

fn client() -> Result<reqwest::Client, String> {
    crate::http_client::client(std::time::Duration::from_secs(600), None)
}

/// A JSON answer of the local server, or what it said instead.
async fn answer(response: reqwest::Result<reqwest::Response>, server: &str) -> Result<(u16, Value), String> {
    let response = response.map_err(|e| format!("cannot reach {server} (is `careledger serve` running?): {e}"))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| format!("reading the answer of {server}: {e}"))?;
    let value = serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)));
    Ok((status, value))
}

/// `careledger sync export --peer FILE --out FILE [--since P]`
pub async fn export(storage: &StorageArgs, options: &Local, peer: &Path, out: &Path, since: i64) -> Result<(), String> {
    let peer = read_peer(peer)?;
    let (keys, token) = local(storage, options, "sync:read", &peer.server)?;
    let client = client()?;
    let base = options.server.trim_end_matches('/');
    let (mut entries, mut at) = (Vec::<Value>::new(), since);
    // a resource changed again in a later page is sent once, where it first changed (so that what
    // it references comes before it), as the later page has it: a transaction Bundle may not
    // name one resource twice
    let mut placed: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    loop {
        let url = format!("{base}/fhir/$changes?_since={at}&_count={PAGE}");
        let (status, page) = answer(client.get(&url).bearer_auth(&token).send().await, base).await?;
        if status != 200 {
            return Err(format!("{url} answered {status}: {page}"));
        }
        let next = crate::sync_peer::next_position(&page)
            .ok_or_else(|| format!("{url} answered a Bundle without a next link"))?;
        let page_entries = page["entry"].as_array().cloned().unwrap_or_default();
        let done = page_entries.is_empty() || next == at;
        for entry in page_entries {
            let url = entry["fullUrl"].as_str().unwrap_or_default().to_string();
            // a claim deleted after an earlier page sent it: its response goes too (the deletion
            // takes its place, and a response of no claim would refuse the file)
            if entry["request"]["method"] == "DELETE"
                && let Some(response) = url.rsplit_once("/Claim/").map(|(b, id)| format!("{b}/ClaimResponse/{id}"))
                && let Some(i) = placed.remove(&response)
            {
                entries[i] = Value::Null;
            }
            match placed.get(&url) {
                Some(&i) => entries[i] = entry,
                None => {
                    placed.insert(url, entries.len());
                    entries.push(entry);
                }
            }
        }
        at = next;
        if done {
            break;
        }
    }
    entries.retain(|e| !e.is_null());
    let count = entries.len();
    let bundle = json!({
        "resourceType": "Bundle",
        "identifier": { "system": keys.server, "value": format!("file-{since}-{at}") },
        "type": "transaction",
        "timestamp": careledger_projections::time::text(&chrono::Utc::now()),
        "entry": entries,
    });
    let payload = serde_json::to_vec(&bundle).map_err(|e| e.to_string())?;
    let sealed = careledger_sync::seal(&payload, &keys, &peer).map_err(|e| e.to_string())?;
    std::fs::write(out, sealed).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    eprintln!(
        "{}: {count} resources changed after position {since} up to {at}, for {} (next time: --since {at})",
        out.display(),
        peer.server
    );
    Ok(())
}

/// `careledger sync import FILE --from FILE...`
pub async fn import(storage: &StorageArgs, options: &Local, file: &Path, from: &[PathBuf]) -> Result<(), String> {
    let peers = from.iter().map(|p| read_peer(p)).collect::<Result<Vec<_>, _>>()?;
    let system = storage.fhir_system(options.fhir_system.as_deref())?;
    let keys = storage.sync_keys(&system)?;
    let sealed = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let opened = careledger_sync::open(&sealed, &keys, &peers).map_err(|e| format!("{}: {e}", file.display()))?;
    let (_, token) = local(storage, options, "sync:write", &opened.from)?;
    let bundle: Value =
        serde_json::from_slice(&opened.payload).map_err(|e| format!("{}: not a Bundle: {e}", file.display()))?;
    let sender = bundle["identifier"]["system"].as_str().unwrap_or_default();
    if sender != opened.from {
        return Err(format!(
            "{}: the Bundle says it comes from `{sender}` but {} signed it: refused",
            file.display(),
            opened.from
        ));
    }
    let base = options.server.trim_end_matches('/');
    let request = client()?
        .post(format!("{base}/fhir"))
        .bearer_auth(&token)
        .header("content-type", careledger_fhir::FHIR_JSON)
        .body(opened.payload);
    let (status, answer) = answer(request.send().await, base).await?;
    if status != 200 {
        return Err(format!("{base}/fhir refused the Bundle of {} ({status}): {answer}", file.display()));
    }
    let statuses: Vec<&str> = answer["entry"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["response"]["status"].as_str()).collect())
        .unwrap_or_default();
    let created = statuses.iter().filter(|s| s.starts_with("201")).count();
    eprintln!(
        "{}: imported from {}: {created} new, {} known already",
        file.display(),
        opened.from,
        statuses.len() - created
    );
    Ok(())
}
