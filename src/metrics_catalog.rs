//! Every Prometheus metric the bridge exports (`/metrics`, the text exposition format): name,
//! type, labels and help text, in one list. The help texts are registered with the recorder at
//! start, `discourse-oidc-bridge metrics reference` prints the list as Markdown (committed as
//! `docs/metrics.md`), and tests check that every metric the code records is listed here and
//! that the dashboard and alert rules in `deploy/` use only listed metrics.

use std::fmt::Write as _;

/// A metric's Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    /// Exported as `<name>_bucket`, `<name>_sum` and `<name>_count`.
    Histogram,
}

impl MetricKind {
    /// The type's name in the exposition format.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: MetricKind,
    /// Label names, each with its possible values (or what they are).
    pub labels: &'static [(&'static str, &'static str)],
    /// The `# HELP` text.
    pub help: &'static str,
}

const fn metric(
    name: &'static str,
    kind: MetricKind,
    labels: &'static [(&'static str, &'static str)],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        labels,
        help,
    }
}

use MetricKind::{Counter, Gauge, Histogram};

/// Every metric, grouped by what it is about.
pub const METRICS: &[Metric] = &[
    metric(
        "bridge_build_info",
        Gauge,
        &[("version", "the bridge's version")],
        "Always 1; the version label says which build runs.",
    ),
    metric(
        "bridge_logins_started_total",
        Counter,
        &[],
        "Logins started: valid DiscourseConnect requests sent on to the identity provider.",
    ),
    metric(
        "bridge_logins_completed_total",
        Counter,
        &[],
        "Logins completed: users sent back to Discourse with a signed payload.",
    ),
    metric(
        "bridge_logins_denied_total",
        Counter,
        &[(
            "rule",
            "the configuration key that refused, e.g. access.allowed_groups, \
             mapping.email_verified, mapping.email",
        )],
        "Logins refused by the [mapping], [groups] or [access] rules, by refusing rule.",
    ),
    metric(
        "bridge_request_errors_total",
        Counter,
        &[(
            "reason",
            "bad_signature, malformed_request, foreign_return_url, unknown_state, \
             login_expired, logout_state_mismatch, malformed_callback, idp_refused, denied, \
             idp_unavailable, idp_invalid, not_ready, internal",
        )],
        "Requests answered with an error page, by reason.",
    ),
    metric(
        "bridge_idp_request_duration_seconds",
        Histogram,
        &[(
            "endpoint",
            "the IdP endpoint: discovery, jwks, token, userinfo",
        )],
        "Duration of requests to the identity provider, successful or not, by endpoint.",
    ),
    metric(
        "bridge_jwks_refreshes_total",
        Counter,
        &[],
        "Refetches of the IdP's signing keys caused by an unknown key id.",
    ),
    metric(
        "bridge_groups_unknown_total",
        Counter,
        &[("reason", "unreadable, overage, graph_failed, missing")],
        "Logins whose groups could not be known (unreadable claim, overage, Graph failure, \
         missing), so no group or role changes were sent or the login was refused.",
    ),
    metric(
        "bridge_graph_lookups_total",
        Counter,
        &[("outcome", "fetched, failed")],
        "Microsoft Graph lookups for Entra overage logins, by outcome (fetched, failed).",
    ),
    metric(
        "bridge_rate_limited_total",
        Counter,
        &[("limit", "failures")],
        "Requests answered 429 because the client address spent its budget of refused requests.",
    ),
    metric(
        "bridge_logout_cross_site_total",
        Counter,
        &[],
        "GET /logout requests another site started; they changed nothing.",
    ),
    metric(
        "bridge_backchannel_received_total",
        Counter,
        &[],
        "Back-channel logout requests received from the identity provider.",
    ),
    metric(
        "bridge_backchannel_rejected_total",
        Counter,
        &[("reason", "why the logout token was refused")],
        "Back-channel logout requests refused, by reason.",
    ),
    metric(
        "bridge_backchannel_relayed_total",
        Counter,
        &[("outcome", "logged_out, no_such_user")],
        "Logout relay jobs delivered to Discourse, by outcome.",
    ),
    metric(
        "bridge_relay_pending_jobs",
        Gauge,
        &[],
        "Logout relay jobs waiting for delivery to Discourse (updated by the relay worker and \
         by /readyz).",
    ),
    metric(
        "bridge_relay_retries_total",
        Counter,
        &[(
            "error",
            "the kind of failure that made the job wait for a retry",
        )],
        "Logout relay attempts that failed and will be retried, by error kind.",
    ),
    metric(
        "bridge_relay_given_up_total",
        Counter,
        &[("cause", "why the job was abandoned")],
        "Logout relay jobs abandoned (retry period over, or refused by Discourse), by cause.",
    ),
    metric(
        "bridge_relay_takeovers_total",
        Counter,
        &[],
        "Relay jobs taken over from a holder whose lease ended without finishing (a replica \
         died mid-delivery); Discourse may see such a delivery twice.",
    ),
    metric(
        "bridge_store_logins_buffered",
        Gauge,
        &[],
        "Completed logins held in memory because the store could not be written.",
    ),
    metric(
        "bridge_store_logins_dropped_total",
        Counter,
        &[],
        "Completed logins lost because the in-memory buffer ([store] login_buffer) was full or \
         the bridge stopped while the store was down; back-channel logout cannot find them.",
    ),
    metric(
        "bridge_store_login_commits_total",
        Counter,
        &[],
        "Commits of completed logins to the store (one commit can hold several logins).",
    ),
    metric(
        "bridge_store_logins_recorded_total",
        Counter,
        &[],
        "Completed logins written to the store.",
    ),
    metric(
        "bridge_store_errors_total",
        Counter,
        &[(
            "operation",
            "the store operation that failed: record_logins, login_state, relay_outcome, scim",
        )],
        "Store operations that failed, by operation.",
    ),
    metric(
        "bridge_scim_requests_total",
        Counter,
        &[
            (
                "operation",
                "the SCIM operation, or auth for a refused bearer token",
            ),
            ("result", "the HTTP status code answered"),
        ],
        "SCIM requests answered, by operation and status.",
    ),
    metric(
        "bridge_scim_jobs_queued_total",
        Counter,
        &[(
            "kind",
            "scim_sync, scim_log_out, scim_suspend, scim_unsuspend",
        )],
        "Jobs SCIM changes queued for delivery to Discourse, by kind.",
    ),
    metric(
        "bridge_scim_jobs_delivered_total",
        Counter,
        &[(
            "kind",
            "scim_sync, scim_log_out, scim_suspend, scim_unsuspend",
        )],
        "SCIM jobs that took effect in Discourse, by kind.",
    ),
    metric(
        "bridge_config_reloads_total",
        Counter,
        &[("outcome", "applied, rejected")],
        "Configuration reloads: applied, or rejected because the new file is invalid.",
    ),
];

/// The metric named `name`, if the bridge exports it.
pub fn find(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|metric| metric.name == name)
}

/// Whether `series` (as written in a PromQL expression) is a series the bridge exports: a
/// listed name, or a histogram's `_bucket`, `_sum` or `_count` series.
pub fn exports_series(series: &str) -> bool {
    if find(series).is_some() {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        series
            .strip_suffix(suffix)
            .and_then(find)
            .is_some_and(|metric| metric.kind == Histogram)
    })
}

/// Registers every metric's help text with the installed recorder.
pub fn describe_all() {
    for metric in METRICS {
        match metric.kind {
            Counter => metrics::describe_counter!(metric.name, metric.help),
            Gauge => metrics::describe_gauge!(metric.name, metric.help),
            Histogram => metrics::describe_histogram!(metric.name, metric.help),
        }
    }
}

/// The reference as Markdown, exactly as committed in `docs/metrics.md`.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Metrics reference\n\n\
         <!-- Generated by `discourse-oidc-bridge metrics reference`; do not edit. A test fails \
         when this file differs from the command's output. -->\n\n\
         The bridge serves these metrics at `/metrics` in the Prometheus text format, on \
         its own listener, `[server] metrics_listen` (default `127.0.0.1:9090`), or on \
         `[server] listen` with `metrics_public = true` (see docs/endpoints.md). Histograms use the buckets 5 ms to 10 s. A counter appears after \
         its first increment. `deploy/grafana/` has a dashboard and `deploy/prometheus/` alert \
         rules over these metrics.\n\n\
         | Metric | Type | Labels | Meaning |\n\
         |---|---|---|---|\n",
    );
    for metric in METRICS {
        let labels = if metric.labels.is_empty() {
            "".to_owned()
        } else {
            metric
                .labels
                .iter()
                .map(|(name, values)| format!("`{name}`: {values}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            metric.name,
            metric.kind.as_str(),
            labels,
            metric.help
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric name used in a `metrics::counter!`, `gauge!` or `histogram!` call in the
    /// crate's sources.
    fn recorded_names() -> Vec<(String, String)> {
        let call =
            regex::Regex::new(r#"metrics::(counter|gauge|histogram)!\(\s*"([a-z0-9_]+)""#).unwrap();
        let mut found = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for capture in call.captures_iter(&text) {
                        found.push((capture[2].to_owned(), capture[1].to_owned()));
                    }
                }
            }
        }
        found
    }

    #[test]
    fn every_recorded_metric_is_listed_with_its_type() {
        let recorded = recorded_names();
        assert!(recorded.len() >= 10, "the scan finds the metric calls");
        for (name, kind) in &recorded {
            let listed = find(name).unwrap_or_else(|| {
                panic!("{name} is recorded but not listed in metrics_catalog::METRICS")
            });
            assert_eq!(listed.kind.as_str(), kind, "{name}");
        }
        for metric in METRICS {
            assert!(
                recorded.iter().any(|(name, _)| name == metric.name),
                "{} is listed but never recorded",
                metric.name
            );
            assert!(!metric.help.is_empty(), "{}", metric.name);
        }
    }

    /// Every `bridge_*` series the dashboard and the alert rules in `deploy/` use.
    fn series_used_in(path: &str) -> Vec<String> {
        let text =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        let name = regex::Regex::new(r"\bbridge_[a-z0-9_]+").unwrap();
        name.find_iter(&text)
            .map(|m| m.as_str().to_owned())
            .collect()
    }

    #[test]
    fn the_dashboard_and_alerts_use_only_exported_metrics() {
        for path in [
            "deploy/grafana/discourse-oidc-bridge.json",
            "deploy/prometheus/alerts.yml",
        ] {
            let used = series_used_in(path);
            assert!(!used.is_empty(), "{path} uses no bridge metric");
            let unknown: Vec<&String> = used.iter().filter(|s| !exports_series(s)).collect();
            assert!(
                unknown.is_empty(),
                "{path} uses metrics the bridge does not export: {unknown:?}"
            );
        }
        // And every metric has a place on the dashboard.
        let dashboard = series_used_in("deploy/grafana/discourse-oidc-bridge.json");
        for metric in METRICS {
            let shown = dashboard
                .iter()
                .any(|s| s == metric.name || s.starts_with(&format!("{}_", metric.name)));
            assert!(shown, "the dashboard has no panel for {}", metric.name);
        }
    }

    #[test]
    fn histogram_series_are_recognised() {
        assert!(exports_series("bridge_idp_request_duration_seconds_bucket"));
        assert!(exports_series("bridge_logins_started_total"));
        assert!(!exports_series("bridge_logins_started_total_count"));
        assert!(!exports_series("bridge_nonexistent"));
    }
}
