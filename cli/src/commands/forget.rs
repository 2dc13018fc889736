//! `cairn forget`: removes snapshots chosen by a retention policy (or by id). Only the
//! snapshot files go; the data they reference stays until prune removes what nothing
//! references any more.
//!
//! Every key is the admin key today, so whoever can open the repository can forget.

use std::io::Write as _;
use std::sync::atomic::Ordering;

use anyhow::{bail, Context as _, Result};
use cairn_core::forget::{self, GroupKey, Policy};
use cairn_core::id::SnapshotId;
use cairn_core::repository::Repository;
use cairn_core::snapshot::Snapshot;
use serde_json::{json, Value};

use crate::args::ForgetArgs;
use crate::commands::{select, snapshots};
use crate::context::Context;

fn policy(a: &ForgetArgs) -> Policy {
    Policy {
        last: a.keep_last.unwrap_or_default(),
        hourly: a.keep_hourly.unwrap_or_default(),
        daily: a.keep_daily.unwrap_or_default(),
        weekly: a.keep_weekly.unwrap_or_default(),
        monthly: a.keep_monthly.unwrap_or_default(),
        yearly: a.keep_yearly.unwrap_or_default(),
        within: a.keep_within.unwrap_or_default(),
        within_hourly: a.keep_within_hourly.unwrap_or_default(),
        within_daily: a.keep_within_daily.unwrap_or_default(),
        within_weekly: a.keep_within_weekly.unwrap_or_default(),
        within_monthly: a.keep_within_monthly.unwrap_or_default(),
        within_yearly: a.keep_within_yearly.unwrap_or_default(),
        tags: a.keep_tags.clone(),
    }
}

/// One group's outcome, for printing and removal.
struct Group<'a> {
    key: GroupKey,
    keep: Vec<(&'a (SnapshotId, Snapshot), Vec<String>)>,
    keep_json: Vec<Value>,
    remove: Vec<&'a (SnapshotId, Snapshot)>,
}

impl Group<'_> {
    /// restic's forget JSON group: `host` is "" and `paths`/`tags` null when not grouped by.
    fn json(&self) -> Value {
        json!({
            "tags": self.key.tags,
            "host": self.key.hostname.clone().unwrap_or_default(),
            "paths": self.key.paths,
            "keep": self.keep.iter().map(|(x, _)| snapshots::json(&x.0, &x.1)).collect::<Vec<_>>(),
            "remove": self.remove.iter().map(|x| snapshots::json(&x.0, &x.1)).collect::<Vec<_>>(),
            "reasons": self.keep_json,
        })
    }

    fn header(&self) -> Option<String> {
        let k = &self.key;
        let mut parts = Vec::new();
        if let Some(h) = &k.hostname {
            parts.push(format!("host [{h}]"));
        }
        if let Some(t) = &k.tags {
            parts.push(format!("tags [{}]", t.join(", ")));
        }
        if let Some(p) = &k.paths {
            parts.push(format!("paths [{}]", p.join(", ")));
        }
        (!parts.is_empty()).then(|| format!("snapshots for ({}):", parts.join(", ")))
    }
}

/// A table like `snapshots` prints, with a column of reasons when there are any.
fn table(rows: &[(&(SnapshotId, Snapshot), Vec<String>)]) -> String {
    let with_reasons = rows.iter().any(|(_, r)| !r.is_empty());
    let rw = rows
        .iter()
        .flat_map(|(_, r)| r.iter().map(String::len))
        .max()
        .unwrap_or(0)
        .max(7);
    let mut t = String::new();
    let reasons_head = if with_reasons {
        format!("{:<rw$}  ", "Reasons")
    } else {
        String::new()
    };
    t.push_str(&format!(
        "{:<10} {:<19}  {:<16} {:<16} {reasons_head}Paths\n",
        "ID", "Time", "Host", "Tags"
    ));
    let rule = "-".repeat(66 + if with_reasons { rw + 2 } else { 0 } + 6);
    t.push_str(&rule);
    t.push('\n');
    for ((id, s), reasons) in rows {
        let lines = s.paths.len().max(reasons.len()).max(1);
        for i in 0..lines {
            let (idc, time, host, tags) = if i == 0 {
                (
                    id.short(),
                    select::time_str(s),
                    s.hostname.clone(),
                    s.tags.join(","),
                )
            } else {
                Default::default()
            };
            let reason = if with_reasons {
                format!("{:<rw$}  ", reasons.get(i).map_or("", String::as_str))
            } else {
                String::new()
            };
            let path = s.paths.get(i).map_or("", String::as_str);
            let line = format!("{idc:<10} {time:<19}  {host:<16} {tags:<16} {reason}{path}");
            t.push_str(line.trim_end());
            t.push('\n');
        }
    }
    t.push_str(&rule);
    t.push('\n');
    t.push_str(&format!("{} snapshots\n", rows.len()));
    t
}

/// Applies the policy to each group.
fn decide<'a>(
    snaps: &'a [(SnapshotId, Snapshot)],
    a: &ForgetArgs,
    policy: &Policy,
) -> Result<Vec<Group<'a>>> {
    let refs: Vec<&Snapshot> = snaps.iter().map(|(_, s)| s).collect();
    let now = chrono::Local::now();
    let mut out = Vec::new();
    for (key, members) in forget::group(&refs, a.group_by) {
        let group: Vec<&Snapshot> = members.iter().map(|&i| refs[i]).collect();
        let d = forget::apply(&group, policy, &now)?;
        let pick = |i: usize| &snaps[members[i]];
        let keep_json = d
            .keep
            .iter()
            .map(|k| {
                let (id, s) = pick(k.index);
                let c = &k.counters;
                // restic leaves out zero counters (omitempty).
                let counters: serde_json::Map<String, Value> = [
                    ("last", c.last),
                    ("hourly", c.hourly),
                    ("daily", c.daily),
                    ("weekly", c.weekly),
                    ("monthly", c.monthly),
                    ("yearly", c.yearly),
                ]
                .into_iter()
                .filter(|(_, n)| n.as_i64() != 0)
                .map(|(name, n)| (name.to_owned(), n.as_i64().into()))
                .collect();
                json!({
                    "snapshot": snapshots::json(id, s),
                    "matches": k.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "counters": counters,
                })
            })
            .collect();
        out.push(Group {
            key,
            keep: d
                .keep
                .iter()
                .map(|k| {
                    (
                        pick(k.index),
                        k.reasons.iter().map(ToString::to_string).collect(),
                    )
                })
                .collect(),
            keep_json,
            remove: d.remove.iter().map(|&i| pick(i)).collect(),
        });
    }
    Ok(out)
}

/// Removes the snapshot files, stopping at the first failure or at Ctrl-C.
fn remove(ctx: &Context, repo: &Repository, doomed: &[&(SnapshotId, Snapshot)]) -> Result<()> {
    for (id, _) in doomed {
        if ctx.cancel.load(Ordering::SeqCst) {
            return Err(cairn_core::Error::Cancelled.into());
        }
        repo.remove_snapshot(id)
            .with_context(|| format!("removing snapshot {}", id.short()))?;
    }
    Ok(())
}

/// Runs `forget`.
pub fn run(ctx: &Context, a: &ForgetArgs) -> Result<i32> {
    let policy = policy(a);
    if !a.ids.is_empty() && !policy.is_empty() {
        bail!("give either snapshot ids or a --keep-* policy, not both");
    }
    if a.ids.is_empty() && policy.is_empty() {
        return Err(forget::PolicyError::Empty.into());
    }
    let repo = ctx.open_without_index()?;
    let human = !ctx.global.json && !ctx.global.quiet;
    let snaps;
    let groups = if a.ids.is_empty() {
        snaps = select::all(&repo)?
            .into_iter()
            .filter(|(_, s)| select::matches(s, &a.filters))
            .collect::<Vec<_>>();
        if human {
            writeln!(std::io::stdout(), "Applying policy: {policy}")?;
        }
        decide(&snaps, a, &policy)?
    } else {
        let f = &a.filters;
        if !(f.hosts.is_empty() && f.tags.is_empty() && f.paths.is_empty()) && human {
            eprintln!("warning: snapshot ids given: the filters only apply to \"latest\"");
        }
        snaps = select::many(&repo, &a.ids, &a.filters)?;
        vec![Group {
            key: GroupKey::default(),
            keep: Vec::new(),
            keep_json: Vec::new(),
            remove: snaps.iter().collect(),
        }]
    };
    // Written, not println!'d, so that a closed pipe is an error (exit 0 via BrokenPipe)
    // rather than a panic.
    let mut stdout = std::io::stdout().lock();
    if human {
        for g in &groups {
            if let Some(h) = g.header() {
                writeln!(stdout, "{h}")?;
            }
            if !g.keep.is_empty() {
                writeln!(
                    stdout,
                    "keep {} snapshots:\n{}",
                    g.keep.len(),
                    table(&g.keep)
                )?;
            }
            if !g.remove.is_empty() {
                let rows: Vec<_> = g.remove.iter().map(|x| (*x, Vec::new())).collect();
                writeln!(
                    stdout,
                    "remove {} snapshots:\n{}",
                    g.remove.len(),
                    table(&rows)
                )?;
            }
        }
    }
    let doomed: Vec<&(SnapshotId, Snapshot)> = groups
        .iter()
        .flat_map(|g| g.remove.iter().copied())
        .collect();
    if !a.dry_run {
        remove(ctx, &repo, &doomed)?;
    }
    let removed = if a.dry_run { 0 } else { doomed.len() };
    ctx.figure("forget_removed", removed as f64);
    if ctx.global.json {
        let v = Value::Array(groups.iter().map(Group::json).collect());
        writeln!(stdout, "{v}")?;
    } else if human {
        match (a.dry_run, doomed.len()) {
            (_, 0) => writeln!(stdout, "no snapshots to remove")?,
            (true, n) => writeln!(stdout, "dry run: would remove {n} snapshots")?,
            (false, n) if a.prune => writeln!(stdout, "removed {n} snapshots")?,
            (false, n) => writeln!(
                stdout,
                "removed {n} snapshots (their data stays until a prune)"
            )?,
        }
    }
    if a.prune {
        drop(stdout);
        return crate::commands::prune::prune_open(ctx, repo, &a.tuning, a.dry_run);
    }
    Ok(0)
}
