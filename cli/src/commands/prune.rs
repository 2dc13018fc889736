//! `cairn prune`: runs whichever phase is due and reports plan, estimate and outcome.

use std::sync::Mutex;

use anyhow::{anyhow, bail, Context as _, Result};
use cairn_core::clock::SystemClock;
use cairn_core::cost::{RequestClass, RequestCounts};
use cairn_core::prune::payback::{Action, Estimate, Policy};
use cairn_core::prune::price::PriceProfile;
use cairn_core::prune::{prune, LockOwner, PruneHooks, PruneOptions, PruneReport};
use cairn_core::source::exclude::parse_size;

use crate::args::{PruneArgs, PruneTuning};
use crate::context::Context;
use crate::output::{self, bytes};

/// A duration like `24h`, `90m`, `7d`, `2w` or `1d12h`, in ms.
pub fn parse_duration(s: &str) -> Result<u64> {
    let bad = || anyhow!("{s:?} is not a duration (e.g. 30m, 24h, 7d, 1d12h)");
    let mut total = 0u64;
    let mut digits = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 7 * 86_400_000,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| v.checked_add(total))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || s.trim().is_empty() {
        return Err(bad());
    }
    Ok(total)
}

fn parse_percent(s: &str) -> Result<f64> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| anyhow!("{s:?} is not a percentage (e.g. 5%)"))?;
    if !(0.0..=100.0).contains(&v) {
        bail!("{s:?} is not between 0% and 100%");
    }
    Ok(v / 100.0)
}

/// Whether the prune lock's holder ran on this machine and has ended. Only a process of
/// this machine can be seen to have ended; /proc is Linux's view.
pub fn local_holder_is_dead(holder: &LockOwner) -> bool {
    holder.hostname == crate::commands::backup::hostname()
        && holder.pid != std::process::id()
        && !std::path::Path::new("/proc")
            .join(holder.pid.to_string())
            .exists()
}

/// This process, as the prune lock records its holder.
pub fn lock_owner() -> LockOwner {
    LockOwner {
        hostname: crate::commands::backup::hostname(),
        pid: std::process::id(),
        since_ms: chrono::Utc::now().timestamp_millis(),
    }
}

/// Captures the request counters when Sweep starts and ends, so the measured side of the
/// summary is what the estimate priced.
struct Meter<'a> {
    ctx: &'a Context,
    marks: Mutex<(Option<RequestCounts>, Option<RequestCounts>)>,
}

impl PruneHooks for Meter<'_> {
    fn lock_holder_is_dead(&self, holder: &LockOwner) -> bool {
        local_holder_is_dead(holder)
    }

    fn sweep_started(&self) {
        if let Ok(mut m) = self.marks.lock() {
            // An instant prune may sweep twice: measure from the first start.
            m.0.get_or_insert_with(|| self.ctx.requests.snapshot());
        }
    }

    fn sweep_finished(&self) {
        if let Ok(mut m) = self.marks.lock() {
            m.1 = Some(self.ctx.requests.snapshot());
        }
    }
}

fn diff(a: &RequestCounts, b: &RequestCounts) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for c in RequestClass::ALL {
        m.insert(c.as_str().into(), (b.of(c) - a.of(c)).into());
    }
    serde_json::json!({
        "requests": m,
        "bytes_down": b.bytes_down - a.bytes_down,
        "bytes_up": b.bytes_up - a.bytes_up,
    })
}

/// Runs `prune`.
pub fn run(ctx: &Context, a: &PruneArgs) -> Result<i32> {
    // The census loads every host's index itself.
    let repo = ctx.open_without_index()?;
    prune_open(ctx, repo, &a.tuning, a.dry_run)
}

/// Prunes an open repository (`prune`, and `forget --prune` without a second unlock).
pub fn prune_open(
    ctx: &Context,
    mut repo: cairn_core::repository::Repository,
    a: &PruneTuning,
    dry_run: bool,
) -> Result<i32> {
    if !repo.is_admin() {
        bail!("only the admin key prunes");
    }
    let class = ctx
        .cost_class
        .lock()
        .ok()
        .and_then(|c| *c)
        .unwrap_or("local");
    let price = match &a.price_profile {
        Some(n) => match PriceProfile::builtin(n) {
            Some(p) => p,
            None => crate::profile::custom_prices(ctx.global.config.as_deref(), n)?.ok_or_else(
                || {
                    anyhow!(
                        "unknown price profile {n:?}: neither built in ({}) nor a \
                         [prices.{n}] table of the configuration file",
                        PriceProfile::BUILTIN.join(", ")
                    )
                },
            )?,
        },
        None => PriceProfile::for_cost_class(class),
    };
    let remote = !matches!(class, "local");
    // Without a limit, assume typical rates; the summary shows what the run measured.
    let down_rate = ctx
        .global
        .limit_download
        .map(|k| k as f64 * 1024.0)
        .unwrap_or(if remote { 20e6 } else { 200e6 });
    let up_rate = ctx
        .global
        .limit_upload
        .map(|k| k as f64 * 1024.0)
        .unwrap_or(if remote { 10e6 } else { 100e6 });
    let opts = PruneOptions {
        grace_ms: parse_duration(&a.grace).context("--grace")?,
        dead_session_ms: parse_duration(&a.dead_session).context("--dead-session")?,
        instant: a.instant,
        dry_run,
        policy: Policy {
            max_payback_days: parse_duration(&a.max_payback).context("--max-payback")? as f64
                / 86_400_000.0,
            max_download: a.max_download.as_deref().map(parse_size).transpose()?,
            max_repack: a.max_repack.as_deref().map(parse_size).transpose()?,
            max_unused: a.max_unused.as_deref().map(parse_percent).transpose()?,
            // B2 (and versioned buckets) keep a deleted file's versions unless the backend
            // deletes them (s3.delete-versions) or a lifecycle rule expires them.
            delete_frees: !price.delete_hides
                || repo.deletes_versions()
                || a.hidden_versions_expire,
            down_rate,
            up_rate,
            pack_target: repo.config().pack_target,
            // The sweep adds this month's earlier prunes (from the last sweep record).
            egress_used: a
                .egress_used
                .as_deref()
                .map(parse_size)
                .transpose()?
                .unwrap_or(0),
        },
        price: price.clone(),
        owner: lock_owner(),
        delete_lists_versions: repo.deletes_versions(),
    };
    let meter = Meter {
        ctx,
        marks: Mutex::default(),
    };
    let report = prune(&mut repo, &opts, &SystemClock, &meter)?;
    let measured = match meter.marks.lock().map(|m| *m) {
        Ok((Some(a), Some(b))) => Some((a, b)),
        _ => None,
    };
    record_metrics(ctx, &report, &price, measured.as_ref());
    let mut json = serde_json::to_value(&report)?;
    json["message_type"] = "summary".into();
    json["price_as_of"] = price.as_of.clone().into();
    if let Some((a, b)) = &measured {
        json["measured"] = diff(a, b);
    }
    output::result(ctx, &json, || human(&report, &price, measured.as_ref()))?;
    Ok(0)
}

fn record_metrics(
    ctx: &Context,
    r: &PruneReport,
    price: &PriceProfile,
    measured: Option<&(RequestCounts, RequestCounts)>,
) {
    ctx.figure("prune_blocked_sessions", r.blocked_by.len() as f64);
    for b in &r.blocked_by {
        ctx.labeled_figure(
            "prune_blocked_session",
            vec![
                ("host", b.host.clone()),
                ("session", b.session.chars().take(8).collect()),
            ],
            (b.last_seen_ms / 1000) as f64,
        );
    }
    if let Some(e) = &r.estimate {
        ctx.figure("prune_estimated_cost_usd", e.cost_now);
        ctx.figure("prune_estimated_saved_usd_per_month", e.saved_per_month);
    }
    if let Some((a, b)) = measured {
        let spent: f64 = RequestClass::ALL
            .iter()
            .map(|c| price.requests(*c, b.of(*c) - a.of(*c)))
            .sum::<f64>()
            + price.egress(b.bytes_down - a.bytes_down, r.bytes_before, 0);
        ctx.figure("prune_spent_cost_usd", spent);
    }
    if let Some(after) = r.bytes_after {
        ctx.figure(
            "prune_bytes_freed",
            r.bytes_before.saturating_sub(after) as f64,
        );
        ctx.figure("repository_bytes", after as f64);
    }
    if r.phases.contains(&"sweep") {
        ctx.figure(
            "prune_last_sweep_timestamp_seconds",
            chrono::Utc::now().timestamp() as f64,
        );
    }
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn estimate_lines(e: &Estimate, price: &PriceProfile) -> String {
    let reqs = e
        .requests
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut t = format!(
        "  packs:     {} deleted, {} repacked, {} left with {} unused\n  transfer:  {} down, {} up; requests: {}\n",
        e.packs_deleted,
        e.packs_repacked,
        e.packs_kept,
        bytes(e.bytes_unused_kept),
        bytes(e.bytes_down),
        bytes(e.bytes_up),
        if reqs.is_empty() { "none".into() } else { reqs },
    );
    if price.priced {
        t.push_str(&format!(
            "  money:     ${:.4} now, saves ${:.4}/month{} ({} prices of {})\n",
            e.cost_now,
            e.saved_per_month,
            match e.payback_days {
                Some(d) => format!(", pays back in {d:.1} days"),
                None => String::new(),
            },
            price.name,
            price.as_of
        ));
    }
    t.push_str(&format!(
        "  time:      about {:.0} s of transfer; frees {}\n",
        e.seconds,
        bytes(e.bytes_freed)
    ));
    t
}

fn human(
    r: &PruneReport,
    price: &PriceProfile,
    measured: Option<&(RequestCounts, RequestCounts)>,
) -> String {
    let mut t = String::new();
    for w in &r.warnings {
        t.push_str(&format!("warning: {w}\n"));
    }
    let gen = r.plan_gen.unwrap_or(0);
    if r.phases.contains(&"dry-run") {
        t.push_str(&format!(
            "dry run: a sweep of plan {gen} now ({} blobs unused) would do:\n",
            r.condemned_blobs
        ));
    }
    if r.phases.contains(&"waiting") {
        t.push_str(&format!(
            "plan {gen} ({} blobs unused) waits for its grace period: sweep due after {}\n",
            r.condemned_blobs,
            time(r.sweep_due_ms.unwrap_or(0))
        ));
    }
    if r.phases.contains(&"blocked") {
        t.push_str(&format!(
            "plan {gen} is due, but backups that started before it are still running; the \
             sweep waits for them (run prune again later):\n"
        ));
        for b in &r.blocked_by {
            t.push_str(&format!(
                "  host {} session {} started {}, last heartbeat {}\n",
                b.host,
                &b.session[..8.min(b.session.len())],
                time(b.started_ms),
                time(b.last_seen_ms)
            ));
        }
        // Heartbeats come every 10 minutes: a longer silence is a crash or a suspended
        // machine, which only the admin can tell apart.
        let now = chrono::Utc::now().timestamp_millis();
        if r.blocked_by
            .iter()
            .any(|b| now - b.last_seen_ms > 30 * 60_000)
        {
            t.push_str(
                "  a session silent this long was killed or its machine sleeps; if it was \
                 killed, sweep now with --dead-session set below its silence (a backup \
                 that wakes up later stores again what the sweep removed)\n",
            );
        }
    }
    if r.phases.contains(&"sweep") {
        t.push_str(&format!(
            "swept: {} packs written, {} index files rewritten, {} blobs rescued\n",
            r.packs_written, r.index_files_written, r.rescued
        ));
    }
    if let Some(e) = &r.estimate {
        if r.phases.contains(&"sweep") {
            t.push_str("estimate:\n");
        }
        t.push_str(&estimate_lines(e, price));
        for p in &r.packs {
            if let Action::Keep { reason } = &p.action {
                if r.phases.contains(&"dry-run") {
                    t.push_str(&format!("  keep {}: {reason}\n", &p.pack[..8]));
                }
            }
        }
    }
    if let Some((a, b)) = measured {
        let reqs = RequestClass::ALL
            .iter()
            .map(|c| format!("{} {}", b.of(*c) - a.of(*c), c.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        t.push_str(&format!(
            "measured:\n  transfer:  {} down, {} up; requests: {reqs}\n",
            bytes(b.bytes_down - a.bytes_down),
            bytes(b.bytes_up - a.bytes_up),
        ));
    }
    if let Some(after) = r.bytes_after {
        t.push_str(&format!(
            "repository: {} before, {} after\n",
            bytes(r.bytes_before),
            bytes(after)
        ));
    }
    if r.phases.contains(&"clean") {
        t.push_str("nothing unused: no plan needed\n");
    }
    if r.phases.contains(&"mark") && !r.phases.contains(&"sweep") {
        t.push_str(&format!(
            "plan {gen} published: {} blobs unused; sweep due after {} (run prune again then)\n",
            r.condemned_blobs,
            time(r.sweep_due_ms.unwrap_or(0))
        ));
    }
    t.trim_end().to_owned()
}

/// Runs `unlock`: removes the prune lock a prune that died on another machine left.
pub fn unlock(ctx: &Context) -> Result<i32> {
    let repo = ctx.open_without_index()?;
    match cairn_core::prune::lock::force_unlock(&repo)? {
        Some(o) => eprintln!(
            "removed the prune lock of host {} pid {} (taken {})",
            o.hostname,
            o.pid,
            time(o.since_ms)
        ),
        None => eprintln!("no prune lock"),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h").ok(), Some(86_400_000));
        assert_eq!(parse_duration("1d12h").ok(), Some(129_600_000));
        assert_eq!(parse_duration("0s").ok(), Some(0));
        for bad in ["", "h", "12", "3x", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_percent("5%").ok(), Some(0.05));
        assert!(parse_percent("105%").is_err());
    }
}
