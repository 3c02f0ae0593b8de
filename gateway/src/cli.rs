//! The `careledger` command line: serve, migrate, token, projections rebuild/status, tail, sync keys,
//! export and import.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::Config;
use crate::config::{ServeArgs, StorageArgs};

#[derive(Debug, Parser)]
#[command(name = "careledger", version, about = "Event-sourced registries for health financing and eHealth")]
struct Cli {
    #[command(flatten)]
    storage: StorageArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API with its projectors (embedded SQLite unless DATABASE_URL names PostgreSQL).
    Serve(Box<ServeArgs>),
    /// Create or update the database schema, then exit.
    Migrate,
    /// Mint a bearer token for this server's secret.
    Token {
        #[arg(long)]
        sub: String,
        /// Space-separated permissions, e.g. "111101 111102 101102 audit:read".
        #[arg(long, default_value = "")]
        scope: String,
        /// The legal entity the user acts for.
        #[arg(long)]
        client_id: Option<String>,
        /// The health facility (code) whose claims alone the user acts on (claim administrators).
        #[arg(long)]
        health_facility: Option<String>,
        /// Seconds the token is valid.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Print the events the relay published to JetStream as JSON lines (one per event), acking
    /// each once printed; with --durable a later run resumes where this one stopped.
    Tail(crate::tail::TailArgs),
    /// Sync between servers (issue #21): with `--peer`, one round over HTTP (push, then pull);
    /// otherwise this server's keys, and the sync by file.
    #[command(args_conflicts_with_subcommands = true)]
    Sync {
        /// The peer's base URL (e.g. https://central.example.org): push this server's changes to
        /// it, then pull its changes here.
        #[arg(long)]
        peer: Option<String>,
        /// A token of the peer for this server (`sync:read sync:write`, `sub` this server's
        /// FHIR system), minted by the peer's operator.
        #[arg(long, env = "CARELEDGER_SYNC_PEER_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// How often a peer that cannot be reached (or answers 5xx) is tried again, waiting twice
        /// as long each time (from 0.5 s, at most a minute).
        #[arg(long, default_value_t = 5)]
        retries: u32,
        /// PEM certificates of the CA that signed the peer's certificate, trusted beside the
        /// platform's roots (a scheme's own CA).
        #[arg(long, env = "CARELEDGER_SYNC_PEER_CA")]
        peer_ca: Option<std::path::PathBuf>,
        /// The FHIR system the peer must name (its CapabilityStatement); without it, the one it
        /// named at the first round (kept in sync-peers.json) is required from then on.
        #[arg(long, env = "CARELEDGER_SYNC_PEER_SYSTEM")]
        peer_system: Option<String>,
        #[command(flatten)]
        local: crate::sync_files::Local,
        #[command(subcommand)]
        command: Option<SyncCommand>,
    },
    /// Read models: rebuild from the log, or show where they are.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SyncCommand {
    /// Make this server's sync keys once (into <data-dir>/sync-key.json) and write its public key
    /// file, the one to give the peers that send it sync files or receive its own.
    Keys {
        /// This server's FHIR identifier system, as `serve` is given it.
        #[arg(long, env = "CARELEDGER_FHIR_SYSTEM")]
        fhir_system: Option<String>,
        /// Where to write the public key file; standard output when absent.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Write what changed on this server (its running `serve`) into a sync file for a peer:
    /// signed with this server's key, encrypted to the peer's public key file.
    Export {
        /// The peer's public key file (made by its `careledger sync keys`).
        #[arg(long)]
        peer: std::path::PathBuf,
        #[arg(long)]
        out: std::path::PathBuf,
        /// The log position to export changes after (0: everything; the previous export prints
        /// where it reached).
        #[arg(long, default_value_t = 0)]
        since: i64,
        #[command(flatten)]
        local: crate::sync_files::Local,
    },
    /// Import a peer's sync file into this server (its running `serve`), after checking it was
    /// signed by one of the peers given and meant for this server.
    Import {
        file: std::path::PathBuf,
        /// The public key file of a peer whose files this server accepts (repeat for several).
        #[arg(long = "from", required = true)]
        from: Vec<std::path::PathBuf>,
        #[command(flatten)]
        local: crate::sync_files::Local,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Empty a read model (all when no name is given) and replay the whole log into it.
    /// Stop the servers first, or they keep applying new events meanwhile (harmless, but slower).
    Rebuild { name: Option<String> },
    /// Each projector's position against the log's head.
    Status,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        // colours for a person at a terminal; a log file or a collector gets plain text
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("careledger: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve(serve) => {
            let config = Config::resolve(&cli.storage, &serve)?;
            if serve.fhir_system.is_none() && config.database_url.starts_with("postgres") {
                // each gateway would name its ids with its own data directory's system
                tracing::warn!(
                    system = %config.fhir_system,
                    "CARELEDGER_FHIR_SYSTEM is not set: gateways sharing this database must share one FHIR system; set it"
                );
            }
            tracing::info!(addr = %config.addr, database = %crate::server::redact(&config.database_url), "starting");
            let server = crate::start(config).await?;
            tracing::info!(addr = %server.addr, "listening");
            let shutdown = server.shutdown_handle();
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::info!("shutting down");
                shutdown.send_replace(true);
            });
            server.wait().await;
            Ok(())
        }
        Command::Migrate => {
            let config = Config::for_database(&cli.storage.database_url(), "");
            crate::server::open_store(&config).await?;
            println!("migrated {}", crate::server::redact(&config.database_url));
            Ok(())
        }
        Command::Token { sub, scope, client_id, health_facility, ttl } => {
            let secret = cli.storage.jwt_secret()?;
            let token = crate::auth::Keys::new(&secret).mint_scoped(
                &sub,
                &scope,
                client_id.as_deref(),
                health_facility.as_deref(),
                ttl,
            )?;
            println!("{token}");
            Ok(())
        }
        Command::Tail(args) => crate::tail::run(args, shutdown_signal()).await,
        Command::Sync { command: None, peer: Some(peer), token, retries, peer_ca, peer_system, local } => {
            let token = token.ok_or("--token (or CARELEDGER_SYNC_PEER_TOKEN): a token of the peer for this server")?;
            let peer = crate::sync_peer::Peer { url: peer, token, ca: peer_ca, system: peer_system };
            crate::sync_peer::run(&cli.storage, &local, peer, retries).await
        }
        Command::Sync { command: None, .. } => {
            Err("name a peer (--peer URL --token TOKEN) or a command (keys, export, import)".to_string())
        }
        Command::Sync { command: Some(SyncCommand::Keys { fhir_system, out }), .. } => {
            let system = cli.storage.fhir_system(fhir_system.as_deref())?;
            let public = cli.storage.sync_keys(&system)?.public().to_file();
            match out {
                Some(path) => {
                    std::fs::write(&path, format!("{public}\n"))
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    eprintln!(
                        "the public sync key of {system} is in {}: give it to this server's peers",
                        path.display()
                    );
                }
                None => println!("{public}"),
            }
            Ok(())
        }
        Command::Sync { command: Some(SyncCommand::Export { peer, out, since, local }), .. } => {
            crate::sync_files::export(&cli.storage, &local, &peer, &out, since).await
        }
        Command::Sync { command: Some(SyncCommand::Import { file, from, local }), .. } => {
            crate::sync_files::import(&cli.storage, &local, &file, &from).await
        }
        Command::Projections { command } => {
            let config = Config::for_database(&cli.storage.database_url(), "");
            let store = crate::server::open_store(&config).await?;
            let projections = careledger_projections::Projections::new(store.clone(), careledger_projections::all());
            match command {
                ProjectionsCommand::Status => {
                    for s in projections.status().await.map_err(|e| e.to_string())? {
                        let state = if s.is_stuck() {
                            format!(
                                "STUCK after {} failures in a row (last at {}): {}",
                                s.failures,
                                s.failed_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                                s.error.as_deref().unwrap_or("")
                            )
                        } else if s.position >= s.head {
                            "caught up".into()
                        } else {
                            "behind".into()
                        };
                        println!("{}\tposition {}\thead {}\t{state}", s.name, s.position, s.head);
                    }
                }
                ProjectionsCommand::Rebuild { name } => {
                    let names: Vec<String> = match name {
                        Some(n) => vec![n],
                        None => projections.names().into_iter().map(String::from).collect(),
                    };
                    for name in names {
                        let started = std::time::Instant::now();
                        let bar = ProgressBar::new(0);
                        bar.set_style(
                            ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {percent}%")
                                .unwrap_or_else(|_| ProgressStyle::default_bar()),
                        );
                        bar.set_message(format!("rebuilding {name}"));
                        let head = store.head().await.map_err(|e| e.to_string())?.max(1);
                        bar.set_length(100);
                        let progress = |position: i64, _head: i64| {
                            bar.set_position((position.saturating_mul(100) / head).clamp(0, 100) as u64);
                        };
                        let position = projections.rebuild(&name, &progress).await.map_err(|e| e.to_string())?;
                        bar.finish_and_clear();
                        println!("{name}: rebuilt to position {position} in {:.2}s", started.elapsed().as_secs_f64());
                    }
                }
            }
            store.db().close().await;
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
