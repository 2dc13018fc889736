//! `--metrics-file`: Prometheus text format for node_exporter's textfile collector.
//!
//! One file may serve several commands and repositories (the daily backup to B2, the
//! backup to the home server, the weekly check), so each run replaces only its own
//! samples — those labelled with its command and repository — and keeps the rest. The
//! file is written to a temporary name and renamed, so the collector never reads half.
//!
//! `cairn_last_success_timestamp_seconds` survives failed runs: it is what an alert such
//! as `time() - cairn_last_success_timestamp_seconds{command="backup"} > 86400 * 2`
//! needs, and a failed run must not reset it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use cairn_core::cost::{PriceTable, RequestClass, RequestCounts};

/// What one run reports.
pub struct Run<'a> {
    /// The command ("backup", "check", ...).
    pub command: &'a str,
    /// The repository location, credentials redacted.
    pub repository: &'a str,
    /// Exit code.
    pub exit_code: i32,
    /// Wall time.
    pub duration_s: f64,
    /// Figures the command recorded (bytes_added, files_new, ...).
    pub figures: &'a BTreeMap<&'static str, f64>,
    /// Figures with labels of their own (the hosts whose backups block a prune).
    pub labeled: &'a [crate::context::LabeledFigure],
    /// Storage requests.
    pub requests: RequestCounts,
    /// The backend's cost class, if a repository was opened.
    pub cost_class: Option<&'a str>,
}

/// Help text of each metric we write; figures not listed get a generic one.
fn help(name: &str) -> &'static str {
    match name {
        "cairn_last_run_timestamp_seconds" => "When the last run of this command ended.",
        "cairn_last_run_success" => "1 if the last run succeeded (exit code 0 or 3), else 0.",
        "cairn_last_run_exit_code" => "Exit code of the last run.",
        "cairn_last_run_duration_seconds" => "Wall time of the last run.",
        "cairn_last_success_timestamp_seconds" => "When this command last succeeded.",
        "cairn_requests" => "Storage requests of the last run, by billing class.",
        "cairn_request_errors" => "Failed storage requests of the last run (retries included).",
        "cairn_transfer_bytes" => "Bytes moved to or from storage by the last run.",
        "cairn_prune_blocked_session" => {
            "A backup session that keeps prune's sweep waiting; the value is its last \
             heartbeat (Unix seconds)."
        }
        "cairn_estimated_cost_usd" => {
            "Estimated request and egress cost of the last run at list prices."
        }
        _ => "A figure of the last run of this command.",
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One sample line: name, the label text inside braces, value.
type Sample = (String, String, String);

fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (name_labels, value) = l.rsplit_once(' ')?;
            let (name, labels) = match name_labels.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (name_labels, ""),
            };
            Some((name.to_owned(), labels.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Writes (merges) the run into the metrics file at `path`.
pub fn write(path: &Path, run: &Run<'_>) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let ours = format!(
        "command=\"{}\",repository=\"{}\"",
        escape(run.command),
        escape(run.repository)
    );
    let mut samples: Vec<Sample> = parse(&old);
    let previous_success = samples
        .iter()
        .find(|(n, l, _)| n == "cairn_last_success_timestamp_seconds" && *l == ours)
        .map(|s| s.2.clone());
    samples.retain(|(_, l, _)| l != &ours && !l.starts_with(&format!("{ours},")));

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let success = matches!(run.exit_code, 0 | 3);
    let mut add = |name: &str, extra: &str, value: String| {
        let labels = if extra.is_empty() {
            ours.clone()
        } else {
            format!("{ours},{extra}")
        };
        samples.push((name.to_owned(), labels, value));
    };
    add("cairn_last_run_timestamp_seconds", "", format!("{now:.3}"));
    add("cairn_last_run_success", "", u8::from(success).to_string());
    add("cairn_last_run_exit_code", "", run.exit_code.to_string());
    add(
        "cairn_last_run_duration_seconds",
        "",
        format!("{:.3}", run.duration_s),
    );
    match (success, previous_success) {
        (true, _) => add(
            "cairn_last_success_timestamp_seconds",
            "",
            format!("{now:.3}"),
        ),
        (false, Some(prev)) => add("cairn_last_success_timestamp_seconds", "", prev),
        (false, None) => {}
    }
    for (name, value) in run.figures {
        add(&format!("cairn_{name}"), "", value.to_string());
    }
    for (name, labels, value) in run.labeled {
        let extra = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",");
        add(&format!("cairn_{name}"), &extra, value.to_string());
    }
    for class in RequestClass::ALL {
        add(
            "cairn_requests",
            &format!("class=\"{}\"", class.as_str()),
            run.requests.of(class).to_string(),
        );
    }
    add("cairn_request_errors", "", run.requests.errors.to_string());
    add(
        "cairn_transfer_bytes",
        "direction=\"up\"",
        run.requests.bytes_up.to_string(),
    );
    add(
        "cairn_transfer_bytes",
        "direction=\"down\"",
        run.requests.bytes_down.to_string(),
    );
    if let Some(class) = run.cost_class {
        let cost = PriceTable::for_class(class).cost(&run.requests);
        add("cairn_estimated_cost_usd", "", format!("{cost:.6}"));
    }

    // The text format wants each metric's samples together under one HELP/TYPE.
    let mut by_name: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for s in &samples {
        by_name.entry(s.0.as_str()).or_default().push(s);
    }
    let mut text = String::new();
    for (name, group) in by_name {
        text.push_str(&format!(
            "# HELP {name} {}\n# TYPE {name} gauge\n",
            help(name)
        ));
        for (_, labels, value) in group {
            text.push_str(&format!("{name}{{{labels}}} {value}\n"));
        }
    }

    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".cairn-metrics-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing metrics to {}", path.display()))?;
    // Readable by node_exporter, which usually runs as its own user.
    let _ = std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    );
    tmp.persist(path)
        .with_context(|| format!("replacing metrics file {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<'a>(command: &'a str, code: i32, figures: &'a BTreeMap<&'static str, f64>) -> Run<'a> {
        Run {
            command,
            repository: "/srv/repo",
            exit_code: code,
            duration_s: 1.5,
            figures,
            labeled: &[],
            requests: RequestCounts::default(),
            cost_class: Some("b2"),
        }
    }

    #[test]
    fn labeled_figures_carry_their_labels() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("m.prom");
        let figures = BTreeMap::new();
        let labeled = vec![(
            "prune_blocked_session",
            vec![
                ("host", "lap\"top".to_owned()),
                ("session", "abcd1234".to_owned()),
            ],
            1700000000.0,
        )];
        let mut r = run("prune", 0, &figures);
        r.labeled = &labeled;
        write(&path, &r).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            text.contains(
                "cairn_prune_blocked_session{command=\"prune\",repository=\"/srv/repo\",host=\"lap\\\"top\",session=\"abcd1234\"} 1700000000"
            ),
            "{text}"
        );
    }

    #[test]
    fn merges_runs_and_keeps_last_success() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("cairn.prom");
        let mut figs = BTreeMap::new();
        figs.insert("bytes_added", 42.0);
        write(&p, &run("backup", 0, &figs)).expect("first");
        write(&p, &run("check", 0, &BTreeMap::new())).expect("check");
        let before = std::fs::read_to_string(&p).expect("read");
        let success = |text: &str| {
            parse(text)
                .into_iter()
                .find(|(n, l, _)| {
                    n == "cairn_last_success_timestamp_seconds"
                        && l.starts_with("command=\"backup\"")
                })
                .map(|s| s.2)
        };
        let first = success(&before).expect("a success time");
        write(&p, &run("backup", 1, &BTreeMap::new())).expect("failed run");
        let after = std::fs::read_to_string(&p).expect("read");
        assert_eq!(success(&after), Some(first), "{after}");
        assert!(
            after.contains("cairn_last_run_success{command=\"backup\",repository=\"/srv/repo\"} 0")
        );
        assert!(
            after.contains("cairn_last_run_success{command=\"check\""),
            "{after}"
        );
        assert!(
            !after.contains("cairn_bytes_added"),
            "stale figure kept: {after}"
        );
        // One HELP per metric name.
        assert_eq!(after.matches("# HELP cairn_last_run_success ").count(), 1);
    }
}
