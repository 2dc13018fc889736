//! The retention policy and its evaluation: which snapshots of one group to keep, and why.
//!
//! The semantics are restic 0.14's `ApplyPolicy`, so that a restic user's `forget` line
//! keeps the same snapshots here (tests/e2e/forget.rs checks that against restic itself).
//! Where this differs from 0.14 it follows later restic releases, for safety:
//! `-1`/`unlimited` counts (0.16; 0.14 took `-1` as "keep none" and removed everything),
//! negative durations refused (0.16), and an empty policy is an error (0.17), not a no-op.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, TimeZone, Timelike};

use super::{PolicyError, Span};
use crate::snapshot::Snapshot;

/// How many snapshots a `--keep-*` count keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// This many (0 = the option is off).
    N(u32),
    /// Every one (`unlimited` or `-1`).
    Unlimited,
}

impl Default for Count {
    fn default() -> Self {
        Count::N(0)
    }
}

impl Count {
    fn is_off(self) -> bool {
        self == Count::N(0)
    }

    /// As restic's JSON counters print it: -1 for unlimited.
    pub fn as_i64(self) -> i64 {
        match self {
            Count::N(n) => i64::from(n),
            Count::Unlimited => -1,
        }
    }
}

impl FromStr for Count {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "unlimited" | "-1" => Ok(Count::Unlimited),
            t => t
                .parse::<u32>()
                .map(Count::N)
                .map_err(|_| PolicyError::Count(s.to_owned())),
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::N(n) => write!(f, "{n}"),
            Count::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// A comma-separated list of tags that must all be present (`--keep-tag a,b`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct TagList(pub Vec<String>);

impl TagList {
    /// Whether a snapshot with `tags` has every tag of the list. The empty tag matches
    /// snapshots without tags, so `--keep-tag ''` keeps the untagged ones (restic's rule).
    pub fn matches(&self, tags: &[String]) -> bool {
        for t in &self.0 {
            if t.is_empty() && tags.is_empty() {
                return true;
            }
            if !tags.contains(t) {
                return false;
            }
        }
        true
    }
}

impl FromStr for TagList {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(TagList(s.split(',').map(|t| t.trim().to_owned()).collect()))
    }
}

impl fmt::Display for TagList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.0.join(", "))
    }
}

/// Calendar buckets of the `--keep-<bucket>` and `--keep-within-<bucket>` options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    /// Every snapshot is its own bucket (`--keep-last`).
    Last,
    /// Calendar hour, local time.
    Hourly,
    /// Calendar day, local time.
    Daily,
    /// ISO 8601 week (Monday first; week-numbering year), local time.
    Weekly,
    /// Calendar month, local time.
    Monthly,
    /// Calendar year, local time.
    Yearly,
}

impl Bucket {
    /// A number naming the bucket of a snapshot at `t` that is `nr`-th newest.
    fn key<Tz: TimeZone>(self, t: &DateTime<Tz>, nr: usize) -> i64 {
        let (y, m, d, h) = (
            i64::from(t.year()),
            i64::from(t.month()),
            i64::from(t.day()),
            i64::from(t.hour()),
        );
        match self {
            Bucket::Last => nr as i64,
            Bucket::Hourly => ((y * 100 + m) * 100 + d) * 100 + h,
            Bucket::Daily => (y * 100 + m) * 100 + d,
            Bucket::Weekly => {
                let w = t.iso_week();
                i64::from(w.year()) * 100 + i64::from(w.week())
            }
            Bucket::Monthly => y * 100 + m,
            Bucket::Yearly => y,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Bucket::Last => "last",
            Bucket::Hourly => "hourly",
            Bucket::Daily => "daily",
            Bucket::Weekly => "weekly",
            Bucket::Monthly => "monthly",
            Bucket::Yearly => "yearly",
        }
    }
}

/// Which snapshots to keep. Everything not kept by at least one rule is removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// The newest N snapshots.
    pub last: Count,
    /// The newest snapshot of each of the newest N hours that have one.
    pub hourly: Count,
    /// ... days.
    pub daily: Count,
    /// ... ISO weeks.
    pub weekly: Count,
    /// ... months.
    pub monthly: Count,
    /// ... years.
    pub yearly: Count,
    /// Every snapshot newer than this span before the newest snapshot.
    pub within: Span,
    /// The newest snapshot of each hour within this span of the newest snapshot.
    pub within_hourly: Span,
    /// ... day ...
    pub within_daily: Span,
    /// ... week ...
    pub within_weekly: Span,
    /// ... month ...
    pub within_monthly: Span,
    /// ... year ...
    pub within_yearly: Span,
    /// Every snapshot that has all the tags of at least one list.
    pub tags: Vec<TagList>,
}

impl Policy {
    /// Whether no rule is set: such a policy would remove everything, so it is refused.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(c, _)| c.is_off())
            && self.within.is_zero()
            && self.withins().iter().all(|(s, _)| s.is_zero())
            && self.tags.is_empty()
    }

    fn counts(&self) -> [(Count, Bucket); 6] {
        [
            (self.last, Bucket::Last),
            (self.hourly, Bucket::Hourly),
            (self.daily, Bucket::Daily),
            (self.weekly, Bucket::Weekly),
            (self.monthly, Bucket::Monthly),
            (self.yearly, Bucket::Yearly),
        ]
    }

    fn withins(&self) -> [(Span, Bucket); 5] {
        [
            (self.within_hourly, Bucket::Hourly),
            (self.within_daily, Bucket::Daily),
            (self.within_weekly, Bucket::Weekly),
            (self.within_monthly, Bucket::Monthly),
            (self.within_yearly, Bucket::Yearly),
        ]
    }
}

impl fmt::Display for Policy {
    /// One line for humans, restic's wording: "keep 5 latest, 3 daily snapshots, ...".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let counts: Vec<String> = self
            .counts()
            .iter()
            .filter(|(c, _)| !c.is_off())
            .map(|(c, b)| {
                let what = if *b == Bucket::Last {
                    "latest"
                } else {
                    b.name()
                };
                match c {
                    Count::Unlimited => format!("all {what}"),
                    Count::N(n) => format!("{n} {what}"),
                }
            })
            .collect();
        if !counts.is_empty() {
            parts.push(format!("{} snapshots", counts.join(", ")));
        }
        for (s, b) in self.withins() {
            if !s.is_zero() {
                parts.push(format!("{} snapshots within {s}", b.name()));
            }
        }
        let mut text = parts.join(", ");
        let mut and = |t: String| {
            if !text.is_empty() {
                text.push_str(" and ");
            }
            text.push_str(&t);
        };
        if !self.tags.is_empty() {
            let lists: Vec<String> = self.tags.iter().map(ToString::to_string).collect();
            and(format!("all snapshots with tags [{}]", lists.join(" ")));
        }
        if !self.within.is_zero() {
            and(format!(
                "all snapshots within {} of the newest",
                self.within
            ));
        }
        if text.is_empty() {
            f.write_str("keep nothing")
        } else {
            write!(f, "keep {text}")
        }
    }
}

/// Why a snapshot is kept. `Display` gives restic's wording (its JSON `matches`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// It has all the tags of a `--keep-tag` list.
    Tags(TagList),
    /// It is within `--keep-within` of the newest snapshot.
    Within(Span),
    /// It is the newest snapshot of a bucket the count still covered.
    Bucket(Bucket),
    /// It is the newest snapshot of a bucket within `--keep-within-<bucket>`.
    WithinBucket(Bucket, Span),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Tags(l) => write!(f, "has tags {l}"),
            Reason::Within(s) => write!(f, "within {s}"),
            Reason::Bucket(b) => write!(f, "{} snapshot", b.name()),
            Reason::WithinBucket(b, s) => write!(f, "{} within {s}", b.name()),
        }
    }
}

/// What is left of each count after a kept snapshot was counted (restic's `counters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `--keep-last`.
    pub last: Count,
    /// `--keep-hourly`.
    pub hourly: Count,
    /// `--keep-daily`.
    pub daily: Count,
    /// `--keep-weekly`.
    pub weekly: Count,
    /// `--keep-monthly`.
    pub monthly: Count,
    /// `--keep-yearly`.
    pub yearly: Count,
}

/// One kept snapshot: its index in the input and every reason that kept it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// Index into the slice given to [`apply`].
    pub index: usize,
    /// Reasons, in restic's order: tags, within, counted buckets, within-buckets.
    pub reasons: Vec<Reason>,
    /// Counts left after this snapshot.
    pub counters: Counters,
}

/// The outcome for one group; both lists newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Snapshots to keep.
    pub keep: Vec<Kept>,
    /// Indices (into the input) of snapshots to remove.
    pub remove: Vec<usize>,
}

/// Applies `policy` to one group of snapshots. Pure: the result depends only on the
/// snapshots' times and tags, the policy, and `now`, whose time zone is the calendar of
/// the hourly/daily/... buckets (the CLI passes local time, as restic uses).
///
/// Snapshots are taken newest first; ties in time keep their input order. `now` matters
/// only to find "the newest snapshot" for the `within` rules, which count back from the
/// newest snapshot that is not in the future, not from `now` (restic 0.14).
pub fn apply<Tz: TimeZone>(
    snaps: &[&Snapshot],
    policy: &Policy,
    now: &DateTime<Tz>,
) -> Result<Decision, PolicyError> {
    if policy.is_empty() {
        return Err(PolicyError::Empty);
    }
    let tz = now.timezone();
    let at = |s: &Snapshot| tz.timestamp_nanos(s.time_ns);
    let mut order: Vec<usize> = (0..snaps.len()).collect();
    order.sort_by(|&a, &b| snaps[b].time_ns.cmp(&snaps[a].time_ns));

    let now_ns = now.timestamp_nanos_opt().unwrap_or(i64::MAX);
    // `None` when every snapshot is in the future: restic then counts back from the year
    // 1, so every snapshot is "within".
    let newest = snaps
        .iter()
        .map(|s| s.time_ns)
        .filter(|&t| t < now_ns)
        .max()
        .map(|t| tz.timestamp_nanos(t));
    let since = |span: &Span| -> Option<i64> {
        let t = span.before(newest.as_ref()?)?;
        t.timestamp_nanos_opt()
    };
    let within_since = since(&policy.within);

    let mut counted: Vec<(Count, Bucket, Option<i64>)> = policy
        .counts()
        .into_iter()
        .map(|(c, b)| (c, b, None))
        .collect();
    let mut within_buckets: Vec<(Span, Bucket, Option<i64>, Option<i64>)> = policy
        .withins()
        .into_iter()
        .map(|(s, b)| (s, b, since(&s), None))
        .collect();

    let mut out = Decision::default();
    for (nr, &i) in order.iter().enumerate() {
        let s = snaps[i];
        let t = at(s);
        let mut reasons = Vec::new();
        for l in &policy.tags {
            if l.matches(&s.tags) {
                reasons.push(Reason::Tags(l.clone()));
            }
        }
        if !policy.within.is_zero() && within_since.is_none_or(|w| s.time_ns > w) {
            reasons.push(Reason::Within(policy.within));
        }
        for (count, bucket, last) in &mut counted {
            if count.is_off() {
                continue;
            }
            let key = bucket.key(&t, nr);
            if *last != Some(key) {
                *last = Some(key);
                if let Count::N(n) = count {
                    *n -= 1;
                }
                reasons.push(Reason::Bucket(*bucket));
            }
        }
        for (span, bucket, since, last) in &mut within_buckets {
            if span.is_zero() || since.is_some_and(|w| s.time_ns <= w) {
                continue;
            }
            let key = bucket.key(&t, nr);
            if *last != Some(key) {
                *last = Some(key);
                reasons.push(Reason::WithinBucket(*bucket, *span));
            }
        }
        if reasons.is_empty() {
            out.remove.push(i);
        } else {
            out.keep.push(Kept {
                index: i,
                reasons,
                counters: Counters {
                    last: counted[0].0,
                    hourly: counted[1].0,
                    daily: counted[2].0,
                    weekly: counted[3].0,
                    monthly: counted[4].0,
                    yearly: counted[5].0,
                },
            });
        }
    }
    Ok(out)
}
