//! The monitoring that docker-compose.yml runs beside the service, checked with the real tools:
//! Prometheus' configuration with `promtool`, a real scrape of a running server by Debian's
//! `prometheus` with that configuration, every query of the operations dashboard answered by it,
//! and Grafana's provisioning naming the data sources the dashboards use.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use careledger_tests::{ALL, Kind, TestServer};
use serde_json::{Value, json};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn dashboard(name: &str) -> Value {
    let path = repository().join("monitoring/grafana/dashboards").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Every target of every panel of a dashboard, with its data source's uid.
fn targets(dashboard: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let uid = target["datasource"]["uid"].as_str().or(panel["datasource"]["uid"].as_str()).unwrap();
            out.push((uid.to_string(), target.clone()));
        }
    }
    out
}

#[test]
fn promtool_accepts_the_prometheus_configuration() {
    let out = std::process::Command::new("promtool")
        .args(["check", "config"])
        .arg(repository().join("monitoring/prometheus.yml"))
        .output()
        .expect("promtool (Debian prometheus; tests/run installs it)");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_dashboards_use_the_provisioned_data_sources() {
    let provisioning =
        std::fs::read_to_string(repository().join("monitoring/grafana/provisioning/datasources/careledger.yml"))
            .unwrap();
    for name in ["operations.json", "business.json"] {
        let d = dashboard(name);
        assert!(d["uid"].as_str().is_some_and(|u| u.starts_with("careledger-")), "{name}");
        let used = targets(&d);
        assert!(used.len() >= 8, "{name}: {} queries", used.len());
        for (uid, _) in used {
            assert!(provisioning.contains(&format!("uid: {uid}")), "{name} uses {uid}, which is not provisioned");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_scrapes_a_running_server_and_answers_every_operations_query() {
    let s = TestServer::start(Kind::Sqlite).await;
    let generated = s
        .post("/api/v1/code-batches", &s.token(ALL), json!({ "holder_type": 1, "holder_code": "P", "number": 10 }))
        .await;
    assert_eq!(generated.status, reqwest::StatusCode::CREATED);

    // the repository's configuration, its target this server, scraping every second
    let config = std::fs::read_to_string(repository().join("monitoring/prometheus.yml")).unwrap();
    let addr = s.base.trim_start_matches("http://");
    assert!(config.contains("\"careledger:8080\"") && config.contains("scrape_interval: 15s"));
    let config = config
        .replace("\"careledger:8080\"", &format!("\"{addr}\""))
        .replace("scrape_interval: 15s", "scrape_interval: 1s");
    let dir = std::env::temp_dir().join(format!("careledger-prometheus-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut prometheus = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .expect("prometheus (Debian prometheus; tests/run installs it)");
    let client = reqwest::Client::new();
    let query = |q: String| {
        let client = client.clone();
        async move {
            let url = url::Url::parse_with_params(&format!("http://127.0.0.1:{port}/api/v1/query"), [("query", q)]);
            let answer = client.get(url.unwrap()).send().await;
            match answer {
                Ok(a) => a.json::<Value>().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            }
        }
    };
    // scraped: `up` is 1 and the service's own counter is there
    let started = Instant::now();
    let scraped = loop {
        let up = query("up{job=\"careledger\"}".into()).await;
        let commands = query("careledger_commands_total".into()).await;
        if up["data"]["result"][0]["value"][1] == "1"
            && commands["data"]["result"].as_array().is_some_and(|r| !r.is_empty())
        {
            break true;
        }
        if started.elapsed() > Duration::from_secs(60) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let log = || std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    if !scraped {
        prometheus.kill().ok();
        panic!("prometheus did not scrape the server:\n{}", log());
    }
    // every query of the operations dashboard is one Prometheus answers
    for (_, target) in targets(&dashboard("operations.json")) {
        let expr = target["expr"].as_str().unwrap().to_string();
        let answer = query(expr.clone()).await;
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
    }
    prometheus.kill().ok();
    prometheus.wait().ok();
    std::fs::remove_dir_all(&dir).ok();
}
