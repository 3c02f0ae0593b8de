//! A careledger server on a fresh database, for the service-level benchmarks.

use careledger_gateway::{Config, RunningServer};

pub const SECRET: &str = "bench-secret";
pub const SCOPE: &str = "111101 111102 101102 audit:read";

/// A fresh database (SQLite file in a temp dir, or a new PostgreSQL database) and its cleanup.
pub struct FreshDb {
    pub url: String,
    dir: std::path::PathBuf,
    pg: Option<(String, String)>,
}

impl FreshDb {
    pub async fn new(backend: &str, pg_admin: &str) -> Result<FreshDb, String> {
        let tag = uuid::Uuid::now_v7().simple().to_string();
        let dir = std::env::temp_dir().join(format!("careledger-bench-{tag}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if backend == "sqlite" {
            return Ok(FreshDb { url: format!("sqlite://{}", dir.join("bench.db").display()), dir, pg: None });
        }
        use sqlx::Connection;
        let name = format!("careledger_bench_{tag}");
        let mut conn = sqlx::PgConnection::connect(pg_admin).await.map_err(|e| format!("{pg_admin}: {e}"))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let base = pg_admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(pg_admin);
        Ok(FreshDb { url: format!("{base}/{name}"), dir, pg: Some((pg_admin.to_string(), name)) })
    }

    pub async fn drop_now(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((admin, name)) = &self.pg {
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

/// Starts a server on `url` with the benchmark's secret.
pub async fn serve(url: &str) -> Result<RunningServer, String> {
    let mut config = Config::for_database(url, SECRET);
    config.poll_interval = std::time::Duration::from_millis(10);
    config.max_body_bytes = 8 << 20;
    // the service's own setting, so a figure can be taken at another group-commit width
    if let Some(n) = std::env::var("CARELEDGER_PG_COMMITTERS").ok().and_then(|v| v.parse().ok()) {
        config.pg_committers = n;
    }
    careledger_gateway::start(config).await
}

/// GenerateCodes over HTTP: the new batch's id.
pub async fn generate_batch(
    client: &reqwest::Client,
    base: &str,
    holder_type: u8,
    holder_code: &str,
    number: usize,
) -> Result<String, String> {
    let r = client
        .post(format!("{base}/api/v1/code-batches"))
        .bearer_auth(token())
        .json(&serde_json::json!({ "holder_type": holder_type, "holder_code": holder_code, "number": number }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
    Ok(body["data"]["batch_id"].as_str().ok_or(format!("generation failed: {body}"))?.to_string())
}

pub fn token() -> String {
    careledger_gateway::auth::Keys::new(SECRET).mint("bench", SCOPE, Some("bench-le"), 24 * 3600).unwrap_or_default()
}

/// The p-th percentile (0..=100) of unsorted samples.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// The whole machine's busy CPU time so far, in ms over all cores (Linux `/proc/stat`, in its
/// fixed 100 ticks a second; steal excluded; `None` elsewhere). Between two readings, divided by
/// the operations done, it is what one operation costs the machine (the server, its database and
/// the client together): a figure that a slower or busier machine moves far less than a rate.
pub fn busy_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    // cpu  user nice system idle iowait irq softirq steal
    let ticks: Vec<f64> =
        stat.lines().next()?.split_whitespace().skip(1).take(8).filter_map(|t| t.parse().ok()).collect();
    let [user, nice, system, _idle, _iowait, irq, softirq, _steal] = ticks[..] else { return None };
    Some((user + nice + system + irq + softirq) * 10.0)
}

/// This process's CPU time so far (user and system, all threads), in ms (Linux `/proc/self/stat`,
/// 100 ticks a second; `None` elsewhere). For a benchmark that runs the server in-process, it is
/// the server's and the client's share of [`busy_cpu_ms`]: the part the database does not blur.
pub fn process_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // after the command name in parentheses: state is field 3, utime 14 and stime 15
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10.0)
}

/// Prints one figure as a JSON line on stdout.
pub fn figure(bench: &str, name: &str, value: f64, unit: &str, extra: serde_json::Value) {
    let mut line =
        serde_json::json!({ "bench": bench, "figure": name, "value": (value * 1000.0).round() / 1000.0, "unit": unit });
    if let (Some(obj), serde_json::Value::Object(more)) = (line.as_object_mut(), extra) {
        obj.extend(more);
    }
    // a reader that went away (`| head`) must not panic the run before it drops its database
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// The store alone (migrated), for work without a server.
pub async fn open(url: &str) -> Result<careledger_store::EventStore, String> {
    careledger_gateway::server::open_store(&Config::for_database(url, SECRET)).await
}
