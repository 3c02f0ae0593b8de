//! Building and running the service: store, migrations, projectors, router, graceful shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use careledger_projections::Projections;
use careledger_projections::claims::ReferenceCache;
use careledger_store::{EventStore, StoreOptions};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use crate::Config;
use crate::auth::Keys;
use crate::handler::AggregateCache;
use crate::state::{AppState, Services};

/// The metrics recorder is process-wide; servers in one process (tests) share it.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // another recorder may already be installed (a test harness): keep ours readable anyway
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Opens and migrates the store.
pub async fn open_store(config: &Config) -> Result<EventStore, String> {
    if let Some(path) = config.database_url.strip_prefix("sqlite://")
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut options = StoreOptions::new(&config.database_url);
    options.max_connections = config.db_connections;
    options.poll_interval = config.poll_interval;
    options.committers = config.pg_committers;
    let store =
        EventStore::open(&options).await.map_err(|e| format!("cannot open {}: {e}", redact(&config.database_url)))?;
    store.migrate().await.map_err(|e| format!("cannot migrate: {e}"))?;
    Ok(store)
}

/// A URL without the credentials in it, for logs and messages: the one function for the
/// database URL and the NATS URL alike. A password (`user:secret@`) becomes `user:***@`; a user
/// alone is kept in a PostgreSQL URL (a role name) and hidden in any other (NATS takes
/// `nats://<token>@host`); a `password=` of the query (libpq's form) becomes `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_string() };
    let (scheme, rest) = (&url[..scheme_end], &url[scheme_end + 3..]);
    // the user information ends at the last `@` before the query (a password left unencoded
    // may hold an `@` or a `/`)
    let (head, tail) = rest.split_at(rest.find(['?', '#']).unwrap_or(rest.len()));
    let head = match head.rfind('@') {
        Some(at) => {
            let (userinfo, host) = (&head[..at], &head[at + 1..]);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None if matches!(scheme, "postgres" | "postgresql") => format!("{userinfo}@{host}"),
                None => format!("***@{host}"),
            }
        }
        None => head.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", pairs.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{head}{tail}")
}

/// A server listening on its address, with its projectors running.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Projector tasks and the relay's: stopped with the server.
    projectors: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting, finishes requests in flight, stops projectors, closes the database.
    pub async fn stop(self) {
        self.shutdown.send_replace(true);
        let _ = self.server.await;
        for p in self.projectors {
            let _ = p.await;
        }
        self.state.store.db().close().await;
    }

    /// Waits until the server ends (after a shutdown signal).
    pub async fn wait(self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|s| *s).await;
        self.stop().await;
    }

    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Opens the store, starts the projectors and serves HTTP on `config.addr` (port 0: any free).
pub async fn start(config: Config) -> Result<RunningServer, String> {
    // the background sync's client, and any a test or benchmark builds beside the server
    crate::http_client::install_crypto_provider();
    // the recorder first: what projectors and the relay record as soon as they start must count
    let metrics = metrics_handle();
    let store = open_store(&config).await?;
    let projections = Projections::new(store.clone(), careledger_projections::all());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut projectors = projections.spawn(shutdown_rx.clone());
    let relay = config.relay.clone().map(|relay| {
        let (task, status) = crate::relay::spawn(store.clone(), relay, shutdown_rx.clone());
        projectors.push(task);
        status
    });
    let intake = config.intake.as_ref().map(crate::intake::status_channel);
    let sync = config.sync_peer.as_ref().map(crate::sync_peer::status_channel);
    let state = AppState::new(Services {
        store,
        projections,
        keys: Keys::new(&config.jwt_secret),
        metrics,
        batches: Arc::new(AggregateCache::new(64)),
        relay,
        intake: intake.as_ref().map(|(_, rx)| rx.clone()),
        sync: sync.as_ref().map(|(_, rx)| rx.clone()),
        encounters: Arc::new(AggregateCache::new(4096)),
        claims: Arc::new(AggregateCache::new(16384)),
        registry: Arc::default(),
        claims_reference: Arc::new(ReferenceCache::new()),
        config: Arc::new(config),
    });
    let listener = tokio::net::TcpListener::bind(state.config.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", state.config.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let router = crate::http::router(state.clone());
    if let (Some(config), Some((status, _))) = (state.config.intake.clone(), intake) {
        // commands over NATS go through this same router: one set of rules for both ways in
        projectors.push(crate::intake::spawn(router.clone(), config, status, shutdown_rx.clone()));
    }
    if let (Some(config), Some((status, _))) = (state.config.sync_peer.clone(), sync) {
        // the round goes through this server's own HTTP API, as `careledger sync --peer` does
        let local = match addr.ip().is_unspecified() {
            true => SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port()),
            false => addr,
        };
        let round = crate::sync_peer::Round {
            system: state.config.fhir_system.clone(),
            jwt_secret: state.config.jwt_secret.clone(),
            cursors: config.cursors.clone(),
            local: format!("http://{local}"),
            peer: config.peer.clone(),
            // the loop waits and tries again itself
            retries: 0,
        };
        projectors.push(crate::sync_peer::spawn(round, config, status, shutdown_rx.clone()));
    }
    let mut stop = shutdown_rx;
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    });
    Ok(RunningServer { addr, state, shutdown, server, projectors })
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_are_redacted_from_database_and_nats_urls() {
        assert_eq!(redact("postgres://app:s3cr@t@db:5432/careledger"), "postgres://app:***@db:5432/careledger");
        assert_eq!(redact("postgres://app@db/careledger"), "postgres://app@db/careledger");
        assert_eq!(
            redact("postgres://db/careledger?user=app&password=s3cret"),
            "postgres://db/careledger?user=app&password=***"
        );
        assert_eq!(redact("sqlite://./data/careledger.db"), "sqlite://./data/careledger.db");
        assert_eq!(redact("nats://user:pa55@nats:4222"), "nats://user:***@nats:4222");
        assert_eq!(redact("nats://s3cret-token@nats:4222"), "nats://***@nats:4222");
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact("tls://a:b@nats"), "tls://a:***@nats");
        assert_eq!(redact("postgres://app:a/b@db/x"), "postgres://app:***@db/x");
    }
}
