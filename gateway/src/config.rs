//! Configuration: environment variables with defaults that run embedded, also settable by flags.
//!
//! The JWT secret is checked before anything starts: at least [`MIN_JWT_SECRET_BYTES`] bytes,
//! from `CARELEDGER_JWT_SECRET` or the `jwt-secret` file alike. A short secret can be guessed
//! offline from any one token, and an empty file used to sign with an empty key (issue #23, 9).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use careledger_domain::requisitions::RequisitionKey;
use careledger_events::codes::CodeFormat;
use clap::Args;

/// Settings every command shares: where the data is.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Directory for the embedded database and the generated JWT secret.
    #[arg(long, env = "CARELEDGER_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// `postgres://...` for PostgreSQL; default: SQLite at <data-dir>/careledger.db.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// HS256 secret for bearer tokens, at least 32 bytes; default: generated once into
    /// <data-dir>/jwt-secret.
    #[arg(long, env = "CARELEDGER_JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<String>,
}

impl StorageArgs {
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("careledger.db").display()))
    }

    /// The configured secret, or the one kept in the data directory (made on first use); an
    /// error (for the operator, naming no secret) when it is shorter than
    /// [`MIN_JWT_SECRET_BYTES`] or the file cannot be read or made.
    pub fn jwt_secret(&self) -> Result<String, String> {
        if let Some(secret) = &self.jwt_secret {
            check_secret(secret, "CARELEDGER_JWT_SECRET (--jwt-secret)")?;
            return Ok(secret.clone());
        }
        let path = self.data_dir.join("jwt-secret");
        match read_secret(&path) {
            Ok(Some(secret)) => return Ok(secret),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
        let cannot = |e: std::io::Error| format!("cannot create the JWT secret {}: {e}", path.display());
        std::fs::create_dir_all(&self.data_dir).map_err(cannot)?;
        // 32 random bytes (256 bits, HS256's own size), kept as 64 hex digits
        let bytes: [u8; MIN_JWT_SECRET_BYTES] = rand::random();
        let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if write_private(&path, &secret).map_err(cannot)? {
            return Ok(secret);
        }
        // another process made it first: use theirs
        read_secret(&path)?.ok_or_else(|| format!("the JWT secret {} went away as it was made", path.display()))
    }
}

impl StorageArgs {
    /// This server's id, made once into <data-dir>/server-id: what its FHIR identifier system is
    /// made of unless configured, so that its ids stay its own across restarts.
    pub fn server_id(&self) -> Result<uuid::Uuid, String> {
        let path = self.data_dir.join("server-id");
        let read = |path: &std::path::Path| -> Result<Option<uuid::Uuid>, String> {
            match std::fs::read_to_string(path) {
                Ok(text) => uuid::Uuid::parse_str(text.trim())
                    .map(Some)
                    .map_err(|_| format!("{} holds no server id (a UUID)", path.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("cannot read {}: {e}", path.display())),
            }
        };
        if let Some(id) = read(&path)? {
            return Ok(id);
        }
        let cannot = |e: std::io::Error| format!("cannot create {}: {e}", path.display());
        std::fs::create_dir_all(&self.data_dir).map_err(cannot)?;
        let id = uuid::Uuid::new_v4();
        if write_private(&path, &id.to_string()).map_err(cannot)? {
            return Ok(id);
        }
        // another process made it first: use theirs
        read(&path)?.ok_or_else(|| format!("{} went away as it was made", path.display()))
    }
}

impl StorageArgs {
    /// This server's FHIR identifier system: the configured one (a URI: a scheme, no `|`), or
    /// `urn:uuid:<server id>`.
    pub fn fhir_system(&self, configured: Option<&str>) -> Result<String, String> {
        match configured {
            Some(system) if system.contains(':') && !system.contains('|') => Ok(system.to_string()),
            Some(system) => Err(format!("CARELEDGER_FHIR_SYSTEM `{system}` is not a URI (a scheme, no `|`)")),
            None => Ok(format!("urn:uuid:{}", self.server_id()?)),
        }
    }

    /// This server's sync keys, made once into <data-dir>/sync-key.json (readable by its owner
    /// alone) for `system`; an error when the keys there were made for another system.
    pub fn sync_keys(&self, system: &str) -> Result<careledger_sync::Keys, String> {
        let path = self.data_dir.join("sync-key.json");
        let read = |path: &std::path::Path| -> Result<Option<careledger_sync::Keys>, String> {
            match std::fs::read_to_string(path) {
                Ok(text) => careledger_sync::Keys::from_secret_file(&text)
                    .map(Some)
                    .map_err(|e| format!("{}: {e}", path.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("cannot read {}: {e}", path.display())),
            }
        };
        let keys = match read(&path)? {
            Some(keys) => keys,
            None => {
                let cannot = |e: std::io::Error| format!("cannot create {}: {e}", path.display());
                std::fs::create_dir_all(&self.data_dir).map_err(cannot)?;
                let keys = careledger_sync::Keys::generate(system);
                if write_private(&path, &keys.to_secret_file()).map_err(cannot)? {
                    keys
                } else {
                    // another process made them first: use theirs
                    read(&path)?.ok_or_else(|| format!("{} went away as it was made", path.display()))?
                }
            }
        };
        if keys.server != system {
            return Err(format!(
                "{} holds the sync keys of {}, not of this server's system {system}: peers know this server by its \
                 system, so keep CARELEDGER_FHIR_SYSTEM as it was, or move the file away to make new keys",
                path.display(),
                keys.server
            ));
        }
        Ok(keys)
    }
}

/// Fewest bytes of a JWT secret. HS256 is as strong as its key, and RFC 7518 (3.2) asks for a key
/// of at least the hash's size: 256 bits.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Refuses a secret shorter than [`MIN_JWT_SECRET_BYTES`], saying where it came from.
fn check_secret(secret: &str, source: &str) -> Result<(), String> {
    if secret.is_empty() {
        return Err(format!(
            "the JWT secret in {source} is empty: set one of at least {MIN_JWT_SECRET_BYTES} bytes \
             (e.g. `openssl rand -hex 32`)"
        ));
    }
    if secret.len() < MIN_JWT_SECRET_BYTES {
        return Err(format!(
            "the JWT secret in {source} is {} bytes, fewer than the {MIN_JWT_SECRET_BYTES} needed: set a longer one \
             (e.g. `openssl rand -hex 32`)",
            secret.len()
        ));
    }
    Ok(())
}

/// The secret kept in `path` (surrounding whitespace trimmed), or None when there is no such file.
fn read_secret(path: &std::path::Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(secret) => {
            let secret = secret.trim();
            check_secret(secret, &path.display().to_string()).map_err(|e| {
                format!("{e}; or delete the file to have a new secret generated (tokens signed with the old one stop working)")
            })?;
            Ok(Some(secret.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read the JWT secret {}: {e}", path.display())),
    }
}

/// Writes `content` to `path`, readable by this user alone, unless `path` exists (false). The file
/// appears whole or not at all: it is written under another name and linked into place, so that a
/// process starting at the same time never reads it half written.
fn write_private(path: &std::path::Path, content: &str) -> std::io::Result<bool> {
    use std::io::Write;
    let draft = path.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&draft).and_then(|mut f| {
        f.write_all(content.as_bytes())?;
        f.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&draft, path));
    let _ = std::fs::remove_file(&draft);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Settings of `careledger serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[arg(long, env = "CARELEDGER_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "CARELEDGER_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// How long a query with `after_position` waits for the read models, in milliseconds.
    #[arg(long, env = "CARELEDGER_QUERY_WAIT_MS", default_value_t = 5000)]
    pub query_wait_ms: u64,
    /// Database connections.
    #[arg(long, env = "CARELEDGER_DB_CONNECTIONS", default_value_t = 16)]
    pub db_connections: u32,
    /// How often projectors look for events written by other processes, in milliseconds.
    #[arg(long, env = "CARELEDGER_POLL_MS", default_value_t = 20)]
    pub poll_ms: u64,
    /// PostgreSQL: tasks that write the queued appends of concurrent commands together, one
    /// transaction per batch (group commit); 0 gives every append its own transaction. Two by
    /// default: with the database on the same two cores, 2 took 16% less CPU per requisition than
    /// 4 (bigger batches, fewer commits); a database on its own larger host, or further away, may
    /// want more.
    #[arg(long, env = "CARELEDGER_PG_COMMITTERS", default_value_t = 2)]
    pub pg_committers: usize,
    /// NATS server for the relay and the command intake (e.g. `nats://127.0.0.1:4222`); without
    /// it neither runs.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// JetStream stream the relay publishes to (created or updated at start).
    #[arg(long, env = "CARELEDGER_NATS_STREAM", default_value = "CARELEDGER")]
    pub nats_stream: String,
    /// Replicas of that stream.
    #[arg(long, env = "CARELEDGER_NATS_REPLICAS", default_value_t = 1)]
    pub nats_replicas: usize,
    /// Storage of that stream: `file` or `memory`.
    #[arg(long, env = "CARELEDGER_NATS_STORAGE", default_value = "file", value_parser = ["file", "memory"])]
    pub nats_storage: String,
    /// JetStream's duplicate window for `Nats-Msg-Id`, in seconds.
    #[arg(long, env = "CARELEDGER_NATS_DUPLICATE_WINDOW_S", default_value_t = 120)]
    pub nats_duplicate_window_s: u64,
    /// Unacknowledged publishes the relay keeps in flight at most.
    #[arg(long, env = "CARELEDGER_RELAY_WINDOW", default_value_t = 1024)]
    pub relay_window: usize,
    /// How long the relay waits for a publish's acknowledgement, in milliseconds.
    #[arg(long, env = "CARELEDGER_NATS_ACK_TIMEOUT_MS", default_value_t = 5000)]
    pub nats_ack_timeout_ms: u64,
    /// Queue group of the command intake (`careledger.commands.>`): gateways in one group share
    /// the commands, each taken by one of them.
    #[arg(long, env = "CARELEDGER_NATS_COMMANDS_QUEUE", default_value = "careledger")]
    pub nats_commands_queue: String,
    /// Commands over NATS run at once at most; 0 turns the intake off (the relay still runs).
    #[arg(long, env = "CARELEDGER_NATS_COMMANDS_CONCURRENCY", default_value_t = 64)]
    pub nats_commands_concurrency: usize,
    /// Codes generated when a request names no number.
    #[arg(long, env = "CARELEDGER_CODES_DEFAULT_NUMBER", default_value_t = 1000)]
    pub codes_default_number: u32,
    /// Most codes one request may generate or reserve.
    #[arg(long, env = "CARELEDGER_CODES_MAX_NUMBER", default_value_t = 1_000_000)]
    pub codes_max_number: u32,
    /// `/ready` warns (and `careledger_code_space_remaining_ratio` shows) when less than this
    /// percentage of the code space remains unissued.
    #[arg(long, env = "CARELEDGER_CODES_LOW_PERCENT", default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub codes_low_percent: u8,
    /// Digits of a CHFID, check digit included.
    #[arg(long, env = "CARELEDGER_CODE_LENGTH", default_value_t = 9)]
    pub code_length: u32,
    /// Check-digit modulo root: 7 (legacy) or 10 (openIMIS Luhn variant), any of 2..=10.
    #[arg(long, env = "CARELEDGER_CODE_MODULO", default_value_t = 7)]
    pub code_modulo: u32,
    /// Text before the digits of every new code.
    #[arg(long, env = "CARELEDGER_CODE_PREFIX", default_value = "")]
    pub code_prefix: String,
    /// BLAKE2b key of requisition numbers (at most 64 bytes; eHealth publishes `random`).
    /// Servers sharing a database must share it.
    #[arg(
        long,
        env = "CARELEDGER_REQUISITION_KEY",
        default_value = careledger_domain::requisitions::DEFAULT_KEY,
        hide_env_values = true
    )]
    pub requisition_key: String,
    /// Permission overrides, `operation=permission` separated by commas
    /// (operations: see `Operation` in app/src/commands.rs and the README).
    #[arg(long, env = "CARELEDGER_PERMISSIONS", default_value = "")]
    pub permissions: String,
    /// Claim codes unique per health facility instead of across facilities.
    #[arg(long, env = "CARELEDGER_CLAIM_CODE_PER_FACILITY", default_value_t = false)]
    pub claim_code_per_facility: bool,
    /// Largest claim attachment file accepted, in bytes (sent base64 in JSON: the body limit applies too).
    #[arg(long, env = "CARELEDGER_ATTACHMENT_MAX_BYTES", default_value_t = 512 * 1024)]
    pub attachment_max_bytes: usize,
    /// The FHIR identifier system of this server's ids (a URI); default: `urn:uuid:<server id>`,
    /// the server id generated once into <data-dir>/server-id.
    #[arg(long, env = "CARELEDGER_FHIR_SYSTEM")]
    pub fhir_system: Option<String>,
    /// On an offline node: the FHIR system of its central (master) server. The insurees the
    /// master numbered are kept here as its register (a node knows only the codes reserved to
    /// it), and the master's own claims stay there.
    #[arg(long, env = "CARELEDGER_SYNC_MASTER")]
    pub sync_master: Option<String>,
    /// A peer to sync with in the background (its base URL, e.g. the central server's on a
    /// node): a round of push then pull at start and every `--sync-interval-s`.
    #[arg(long, env = "CARELEDGER_SYNC_PEER")]
    pub sync_peer: Option<String>,
    /// The peer's token for this server (`sync:read sync:write`, `sub` this server's system).
    #[arg(long, env = "CARELEDGER_SYNC_PEER_TOKEN", hide_env_values = true)]
    pub sync_peer_token: Option<String>,
    /// Seconds between two background sync rounds; a failed round is tried again after 5 s,
    /// then twice as long each time, at most this.
    #[arg(long, env = "CARELEDGER_SYNC_INTERVAL_S", default_value_t = 300)]
    pub sync_interval_s: u64,
    /// PEM certificates of the CA that signed the peer's certificate, trusted beside the
    /// platform's roots (a scheme's own CA).
    #[arg(long, env = "CARELEDGER_SYNC_PEER_CA")]
    pub sync_peer_ca: Option<PathBuf>,
    /// The FHIR system the sync peer must name in its CapabilityStatement (default: the master's,
    /// CARELEDGER_SYNC_MASTER); a peer naming another is refused.
    #[arg(long, env = "CARELEDGER_SYNC_PEER_SYSTEM")]
    pub sync_peer_system: Option<String>,
}

/// Everything the server needs, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub database_url: String,
    pub jwt_secret: String,
    pub max_body_bytes: usize,
    pub query_wait: Duration,
    pub db_connections: u32,
    pub poll_interval: Duration,
    pub pg_committers: usize,
    /// The relay to NATS JetStream, when `NATS_URL` is set.
    pub relay: Option<crate::relay::RelayConfig>,
    /// Commands over NATS, when `NATS_URL` is set (and the concurrency is not 0).
    pub intake: Option<crate::intake::IntakeConfig>,
    pub codes_default_number: u32,
    pub codes_max_number: u32,
    /// Percentage of the code space under which `/ready` warns.
    pub codes_low_percent: u8,
    pub code_format: CodeFormat,
    pub permissions: Permissions,
    pub requisition_key: RequisitionKey,
    pub claim_code_per_facility: bool,
    pub attachment_max_bytes: usize,
    /// The FHIR identifier system of this server's ids.
    pub fhir_system: String,
    /// The FHIR system of the server this one syncs with as its master, on an offline node.
    pub sync_master: Option<String>,
    /// The background sync with a peer, when `CARELEDGER_SYNC_PEER` is set.
    pub sync_peer: Option<crate::sync_peer::SyncLoopConfig>,
}

impl Config {
    pub fn resolve(storage: &StorageArgs, serve: &ServeArgs) -> Result<Config, String> {
        Ok(Config {
            addr: serve.addr,
            database_url: storage.database_url(),
            jwt_secret: storage.jwt_secret()?,
            max_body_bytes: serve.max_body_bytes,
            query_wait: Duration::from_millis(serve.query_wait_ms),
            db_connections: serve.db_connections,
            poll_interval: Duration::from_millis(serve.poll_ms),
            pg_committers: serve.pg_committers,
            relay: serve.nats_url.as_ref().map(|url| crate::relay::RelayConfig {
                url: url.clone(),
                stream: serve.nats_stream.clone(),
                replicas: serve.nats_replicas,
                memory_storage: serve.nats_storage == "memory",
                duplicate_window: Duration::from_secs(serve.nats_duplicate_window_s),
                window: serve.relay_window.max(1),
                ack_timeout: Duration::from_millis(serve.nats_ack_timeout_ms),
            }),
            intake: serve.nats_url.as_ref().filter(|_| serve.nats_commands_concurrency > 0).map(|url| {
                crate::intake::IntakeConfig {
                    url: url.clone(),
                    queue: serve.nats_commands_queue.clone(),
                    concurrency: serve.nats_commands_concurrency,
                }
            }),
            codes_default_number: serve.codes_default_number,
            codes_max_number: serve.codes_max_number,
            codes_low_percent: serve.codes_low_percent,
            code_format: CodeFormat {
                length: serve.code_length,
                modulo: serve.code_modulo,
                prefix: serve.code_prefix.clone(),
            },
            permissions: Permissions::parse(&serve.permissions)?,
            requisition_key: RequisitionKey::new(serve.requisition_key.as_bytes())
                .map_err(|e| format!("CARELEDGER_REQUISITION_KEY: {e}"))?,
            claim_code_per_facility: serve.claim_code_per_facility,
            attachment_max_bytes: serve.attachment_max_bytes,
            fhir_system: storage.fhir_system(serve.fhir_system.as_deref())?,
            sync_master: match serve.sync_master.as_deref() {
                Some(system) if !system.contains(':') || system.contains('|') => {
                    return Err(format!("CARELEDGER_SYNC_MASTER `{system}` is not a URI (a scheme, no `|`)"));
                }
                other => other.map(str::to_string),
            },
            sync_peer: match (&serve.sync_peer, &serve.sync_peer_token) {
                (None, _) => None,
                (Some(_), None) => {
                    return Err(
                        "CARELEDGER_SYNC_PEER needs CARELEDGER_SYNC_PEER_TOKEN, the peer's token for this server"
                            .into(),
                    );
                }
                (Some(peer), Some(_)) if !(peer.starts_with("http://") || peer.starts_with("https://")) => {
                    return Err(format!("CARELEDGER_SYNC_PEER `{peer}` is not an http(s) URL"));
                }
                (Some(peer), Some(token)) => Some(crate::sync_peer::SyncLoopConfig {
                    peer: crate::sync_peer::Peer {
                        url: peer.trim_end_matches('/').to_string(),
                        token: token.clone(),
                        ca: serve.sync_peer_ca.clone(),
                        system: serve.sync_peer_system.clone().or_else(|| serve.sync_master.clone()),
                    },
                    // at most a week: a longer wait would be no background sync
                    interval: Duration::from_secs(serve.sync_interval_s.clamp(1, 7 * 24 * 3600)),
                    backoff: Duration::from_secs(5),
                    cursors: crate::sync_peer::cursors_path(storage),
                }),
            },
        })
    }

    /// Defaults for a server on `database_url` with `secret` (tests and benchmarks; the secret is
    /// taken as it is, without the length check of [`StorageArgs::jwt_secret`]).
    pub fn for_database(database_url: &str, secret: &str) -> Config {
        Config {
            addr: "127.0.0.1:0".parse().expect("loopback address"),
            database_url: database_url.to_string(),
            jwt_secret: secret.to_string(),
            max_body_bytes: 1 << 20,
            query_wait: Duration::from_secs(5),
            db_connections: 16,
            poll_interval: Duration::from_millis(20),
            pg_committers: 2,
            relay: None,
            intake: None,
            codes_default_number: 1000,
            codes_max_number: 1_000_000,
            codes_low_percent: 10,
            code_format: CodeFormat::default(),
            permissions: Permissions::default(),
            requisition_key: RequisitionKey::default(),
            claim_code_per_facility: false,
            attachment_max_bytes: 512 * 1024,
            fhir_system: format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            sync_master: None,
            sync_peer: None,
        }
    }
}

/// The permission string each operation needs (the application layer's table of operations).
pub use careledger_app::Permissions;
