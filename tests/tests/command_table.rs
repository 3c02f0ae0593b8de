//! One table of commands (`careledger_app::COMMANDS`, issue #18): the NATS subjects, the
//! metrics and every event's `metadata.command` name the same commands, in the same contexts.
//! Before, six claim commands were `SelectClaimsForFeedback`, ... on NATS and
//! `ChangeFeedbackStatus` in metrics and event metadata.

use std::collections::BTreeSet;

use careledger_app::{COMMANDS, commands::named};
use careledger_gateway::intake::commands::COMMANDS as NATS_COMMANDS;
use careledger_tests::{ALL, Kind, TestServer};

#[test]
fn every_command_is_reachable_over_nats_under_its_context() {
    let table: BTreeSet<(&str, &str)> = COMMANDS.iter().map(|c| (c.context.name(), c.name)).collect();
    let nats: BTreeSet<(&str, &str)> = NATS_COMMANDS.iter().map(|c| (c.context(), c.name)).collect();
    assert_eq!(table, nats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_and_metrics_name_commands_of_the_table() {
    let s = TestServer::start(Kind::Sqlite).await;
    let scenario = careledger_tests::scenario::every_event_type(&s).await;
    let last = careledger_tests::scenario::every_claims_event_type(&s).await.max(scenario.last);
    assert!(s.state().projections.wait_for(last, std::time::Duration::from_secs(10)).await);
    let log = careledger_tests::whole_log(&s.state().store).await;
    let mut recorded = BTreeSet::new();
    for event in &log {
        let command = named(&event.metadata.command)
            .unwrap_or_else(|| panic!("{} recorded by {}, not in the table", event.event_type, event.metadata.command));
        // a command appends to its context's streams; a registration also assigns its code, on
        // the batch's stream, in the same append
        let context = careledger_events::stream_context(&event.stream);
        let assigns_its_code = command.name == "RegisterInsuree" && event.event_type == "CodeAssigned";
        assert!(command.context.name() == context || assigns_its_code, "{event:?}");
        recorded.insert(command.name);
    }
    let metrics = s.get("/metrics", &s.token(ALL)).await.text;
    let counted: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("careledger_commands_total{"))
        .filter_map(|l| l.split("command=\"").nth(1)?.split('"').next())
        .collect();
    for name in &counted {
        assert!(named(name).is_some(), "metrics count {name}, not in the table");
    }
    for name in &recorded {
        assert!(counted.contains(name), "{name} appended events but metrics do not count it");
    }
    assert!(recorded.len() >= 30, "the scenario runs most commands: {recorded:?}");
}

/// The API description names, on each operation that runs a command, the command of the table
/// it runs: the very route the NATS intake sends that command through.
#[test]
fn the_api_description_names_the_command_of_each_route() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../gateway/openapi.json")).unwrap();
    let spec: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut described = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if let Some(name) = operation["x-careledger-command"].as_str() {
                described.insert((name.to_string(), method.to_uppercase(), path.clone()));
            }
            for (action, name) in operation["x-careledger-commands"].as_object().into_iter().flatten() {
                let path = path.replace("{action}", action);
                described.insert((name.as_str().unwrap().to_string(), method.to_uppercase(), path));
            }
        }
    }
    let routed: BTreeSet<(String, String, String)> =
        NATS_COMMANDS.iter().map(|c| (c.name.to_string(), c.method.to_string(), c.path.to_string())).collect();
    assert_eq!(described, routed);
    let named: BTreeSet<&str> = COMMANDS.iter().map(|c| c.name).collect();
    assert_eq!(described.iter().map(|(n, _, _)| n.as_str()).collect::<BTreeSet<_>>(), named);
}
