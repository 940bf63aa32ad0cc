//! `/metrics` is valid Prometheus text (read by a parser of that format), every
//! counter is there from the start, and every series the alert rules and the
//! Grafana dashboard in `config/monitoring/` use exists — with the label values
//! they select.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::support::{origin, proxy, Http};

/// Series names and the label values each was seen with, from a parsed scrape.
struct Exported {
    names: HashSet<String>,
    labels: HashMap<(String, String), HashSet<String>>,
}

fn parse(text: &str) -> Exported {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics is Prometheus text format");
    assert!(!scrape.samples.is_empty());
    let mut names = HashSet::new();
    let mut labels: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for sample in &scrape.samples {
        names.insert(sample.metric.clone());
        if let prometheus_parse::Value::Histogram(_) = sample.value {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{}{suffix}", sample.metric));
            }
        }
        for (k, v) in sample.labels.iter() {
            labels
                .entry((sample.metric.clone(), k.clone()))
                .or_default()
                .insert(v.clone());
        }
    }
    // Every family has its help and type.
    for name in scrape.docs.keys() {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} has no TYPE"
        );
    }
    Exported { names, labels }
}

/// Each `waitroom_…` series in `text`, with its `label="value"` matchers.
fn selectors(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("waitroom_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].to_owned();
        let mut matchers = Vec::new();
        if let Some(body) = tail[end..].strip_prefix('{') {
            let close = body.find('}').expect("a closed selector");
            for m in body[..close].split(',') {
                // Exact matchers only (`=~` selects by pattern).
                if let Some((k, v)) = m.split_once('=') {
                    if !v.starts_with('~') {
                        matchers.push((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()));
                    }
                }
            }
        }
        found.push((name, matchers));
        rest = &tail[end..];
    }
    found
}

#[tokio::test]
async fn metrics_parse_and_every_series_the_alerts_and_dashboard_use_exists_from_the_start() {
    let origin = origin(50, 0).await;
    let proxy = proxy(&origin).admission(600, 1, "10m").start().await;
    // A fresh proxy, before any visitor: the gauges of the line come with the
    // first pump rounds.
    let mut text = proxy.metrics().await;
    for _ in 0..100 {
        if text.contains("waitroom_line{what=\"outflow_per_minute\"}") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        text = proxy.metrics().await;
    }
    let exported = parse(&text);

    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/monitoring");
    let rules = std::fs::read_to_string(format!("{root}/alerts.yml")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut used = selectors(&rules);
    assert!(used.len() >= 10, "{used:?}");
    for e in &exprs {
        used.extend(selectors(e));
    }
    for (name, matchers) in &used {
        assert!(
            exported.names.contains(name),
            "{name} is used but not exported:\n{text}"
        );
        for (label, value) in matchers {
            let seen = exported
                .labels
                .get(&(name.clone(), label.clone()))
                .unwrap_or_else(|| panic!("{name} has no label {label}"));
            assert!(
                seen.contains(value),
                "{name}{{{label}=\"{value}\"}} is not exported: {seen:?}"
            );
        }
    }

    // After some traffic it still parses, and the new series are counted.
    let http = Http::new();
    let mut first = proxy.visitor(&http);
    assert!(first.get("/").await.unwrap().is_from_origin());
    let mut second = proxy.visitor(&http);
    second.status().await.unwrap();
    let text = proxy.metrics().await;
    parse(&text);
    assert_eq!(
        proxy
            .metric("waitroom_origin_responses_total{class=\"2xx\"}")
            .await,
        1.0
    );
    assert_eq!(proxy.metric("waitroom_places_issued_total").await, 1.0);
    assert_eq!(proxy.state().await["places_issued"], 1);
}
