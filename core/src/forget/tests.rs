//! Golden tests: fixed snapshot times, keep sets checked by hand (calendar and ISO-week
//! facts are noted beside each time).

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone};

use super::*;
use crate::id::{Id, Id16};
use crate::snapshot::{Snapshot, Summary};

/// Newest first, numbered 1.. in the comments and the expected sets.
const TIMES: [&str; 16] = [
    "2024-03-10 12:00:00", //  1 Sun, ISO 2024-W10
    "2024-03-10 10:30:00", //  2 same day, other hour
    "2024-03-10 10:05:00", //  3 same hour as 2
    "2024-03-09 23:59:00", //  4 Sat, W10
    "2024-03-04 00:00:00", //  5 Mon, W10
    "2024-03-03 23:00:00", //  6 Sun, W09
    "2024-02-29 08:00:00", //  7 Thu, W09, leap day
    "2024-02-01 00:00:00", //  8 Thu, W05
    "2024-01-31 23:00:00", //  9 Wed, W05, January
    "2024-01-01 01:00:00", // 10 Mon, 2024-W01
    "2023-12-31 22:00:00", // 11 Sun, 2023-W52, year 2023
    "2023-01-01 10:00:00", // 12 Sun, ISO 2022-W52 although the year is 2023
    "2022-12-26 09:00:00", // 13 Mon, 2022-W52
    "2022-06-15 00:00:00", // 14 Wed, 2022-W24
    "2021-01-03 12:00:00", // 15 Sun, ISO 2020-W53, year 2021
    "2020-12-28 12:00:00", // 16 Mon, 2020-W53, year 2020
];

fn utc() -> FixedOffset {
    FixedOffset::east_opt(0).unwrap()
}

fn at(tz: &FixedOffset, t: &str) -> DateTime<FixedOffset> {
    let n = NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").unwrap();
    tz.from_local_datetime(&n).unwrap()
}

fn snap(time_ns: i64, tags: &[&str]) -> Snapshot {
    Snapshot {
        host_id: Id16::default(),
        time_ns,
        tree: Id::default(),
        paths: vec!["/data".into()],
        hostname: "h".into(),
        username: "u".into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        parent: None,
        program: "test".into(),
        summary: Summary::default(),
    }
}

/// The 16 snapshots (UTC times), oldest first as the repository lists them, with tags:
/// 3 "keep"; 12 "a", "b"; 14 "a".
fn snapshots() -> Vec<Snapshot> {
    let mut v: Vec<Snapshot> = TIMES
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let tags: &[&str] = match i + 1 {
                3 => &["keep"],
                12 => &["a", "b"],
                14 => &["a"],
                _ => &[],
            };
            snap(at(&utc(), t).timestamp_nanos_opt().unwrap(), tags)
        })
        .collect();
    v.reverse();
    v
}

/// Number (1 = newest) of the snapshot at input index `i`.
fn nr(i: usize) -> usize {
    TIMES.len() - i
}

/// Kept numbers with their reasons, and removed numbers, for `policy` evaluated at
/// `now` (default: an hour after the newest) in time zone `tz`.
fn run_in(
    tz: &FixedOffset,
    policy: &Policy,
    now: Option<&str>,
) -> (Vec<(usize, Vec<String>)>, Vec<usize>) {
    let snaps = snapshots();
    let refs: Vec<&Snapshot> = snaps.iter().collect();
    let now = at(tz, now.unwrap_or("2024-03-10 13:00:00"));
    let d = apply(&refs, policy, &now).unwrap();
    let keep = d
        .keep
        .iter()
        .map(|k| {
            (
                nr(k.index),
                k.reasons.iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    (keep, d.remove.iter().map(|&i| nr(i)).collect())
}

fn kept(policy: &Policy) -> Vec<usize> {
    run_in(&utc(), policy, None)
        .0
        .into_iter()
        .map(|k| k.0)
        .collect()
}

fn span(s: &str) -> Span {
    s.parse().unwrap()
}

#[test]
fn keep_last() {
    let p = Policy {
        last: Count::N(3),
        ..Policy::default()
    };
    let (keep, remove) = run_in(&utc(), &p, None);
    assert_eq!(keep.iter().map(|k| k.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(keep.iter().all(|k| k.1 == ["last snapshot"]));
    assert_eq!(remove, (4..=16).collect::<Vec<_>>());
}

#[test]
fn hourly_daily_weekly_monthly_yearly_buckets() {
    let p = |f: fn(&mut Policy)| {
        let mut p = Policy::default();
        f(&mut p);
        p
    };
    // 3 shares 2's hour.
    assert_eq!(kept(&p(|p| p.hourly = Count::N(3))), [1, 2, 4]);
    // 2, 3 share 1's day.
    assert_eq!(kept(&p(|p| p.daily = Count::N(4))), [1, 4, 5, 6]);
    // ISO weeks: 1-5 W10, 6-7 W09, 8-9 W05, 10 2024-W01, 11 2023-W52.
    assert_eq!(kept(&p(|p| p.weekly = Count::N(5))), [1, 6, 8, 10, 11]);
    // 12 (1 Jan 2023) and 13 (26 Dec 2022) are one ISO week; so are 15 and 16.
    assert_eq!(
        kept(&p(|p| p.weekly = Count::Unlimited)),
        [1, 6, 8, 10, 11, 12, 14, 15]
    );
    assert_eq!(kept(&p(|p| p.monthly = Count::N(4))), [1, 7, 9, 11]);
    // More years asked for than exist: every year's newest, nothing more.
    assert_eq!(kept(&p(|p| p.yearly = Count::N(10))), [1, 11, 13, 15, 16]);
}

#[test]
fn several_rules_and_several_reasons() {
    let p = Policy {
        last: Count::N(2),
        daily: Count::N(3),
        yearly: Count::N(2),
        ..Policy::default()
    };
    let (keep, _) = run_in(&utc(), &p, None);
    let want: Vec<(usize, Vec<String>)> = vec![
        (
            1,
            vec![
                "last snapshot".into(),
                "daily snapshot".into(),
                "yearly snapshot".into(),
            ],
        ),
        (2, vec!["last snapshot".into()]),
        (4, vec!["daily snapshot".into()]),
        (5, vec!["daily snapshot".into()]),
        (11, vec!["yearly snapshot".into()]),
    ];
    assert_eq!(keep, want);
    let snaps = snapshots();
    let refs: Vec<&Snapshot> = snaps.iter().collect();
    let d = apply(&refs, &p, &at(&utc(), "2024-03-10 13:00:00")).unwrap();
    // After snapshot 1 each count is down by one.
    assert_eq!(
        (d.keep[0].counters.last, d.keep[0].counters.daily),
        (Count::N(1), Count::N(2))
    );
}

#[test]
fn keep_within_counts_back_from_the_newest_snapshot() {
    let within = |s: &str| Policy {
        within: span(s),
        ..Policy::default()
    };
    // 2024-03-10 12:00 - 1y2m3d4h = 2023-01-07 08:00: 1..=11 are after it, 12 is not.
    let (keep, _) = run_in(&utc(), &within("1y2m3d4h"), None);
    assert_eq!(
        keep.iter().map(|k| k.0).collect::<Vec<_>>(),
        (1..=11).collect::<Vec<_>>()
    );
    assert_eq!(keep[0].1, ["within 1y2m3d4h"]);
    // The bound is exclusive: 6d12h before the newest is exactly snapshot 5.
    assert_eq!(kept(&within("6d12h")), [1, 2, 3, 4]);
    // `now` years later changes nothing: the newest snapshot is the reference.
    let (late, _) = run_in(&utc(), &within("6d12h"), Some("2026-01-01 00:00:00"));
    assert_eq!(late.len(), 4);
}

#[test]
fn keep_within_buckets() {
    let p = Policy {
        within_daily: span("7d"),
        ..Policy::default()
    };
    // Since 2024-03-03 12:00: 1..=6, one per day.
    let (keep, _) = run_in(&utc(), &p, None);
    assert_eq!(keep.iter().map(|k| k.0).collect::<Vec<_>>(), [1, 4, 5, 6]);
    assert_eq!(keep[0].1, ["daily within 7d"]);
    let p = Policy {
        within_monthly: span("1y"),
        within_yearly: span("10y"),
        ..Policy::default()
    };
    let (keep, _) = run_in(&utc(), &p, None);
    let want: Vec<(usize, Vec<String>)> = vec![
        (
            1,
            vec!["monthly within 1y".into(), "yearly within 10y".into()],
        ),
        (7, vec!["monthly within 1y".into()]),
        (9, vec!["monthly within 1y".into()]),
        (
            11,
            vec!["monthly within 1y".into(), "yearly within 10y".into()],
        ),
        (13, vec!["yearly within 10y".into()]),
        (15, vec!["yearly within 10y".into()]),
        (16, vec!["yearly within 10y".into()]),
    ];
    assert_eq!(keep, want);
}

#[test]
fn future_snapshots_are_not_the_reference() {
    let mut snaps = snapshots();
    let future = at(&utc(), "2024-03-20 00:00:00")
        .timestamp_nanos_opt()
        .unwrap();
    snaps.push(snap(future, &[]));
    let refs: Vec<&Snapshot> = snaps.iter().collect();
    let p = Policy {
        within: span("1d"),
        ..Policy::default()
    };
    // Reference is snapshot 1 (12:00 on the 10th), not the future one, which is kept too.
    let d = apply(&refs, &p, &at(&utc(), "2024-03-10 13:00:00")).unwrap();
    let keep: Vec<usize> = d.keep.iter().map(|k| k.index).collect();
    assert_eq!(keep, [16, 15, 14, 13, 12]);
    // When every snapshot is in the future, every one is within.
    let d = apply(&refs, &p, &at(&utc(), "2000-01-01 00:00:00")).unwrap();
    assert_eq!(d.keep.len(), 17);
}

#[test]
fn keep_tag() {
    let tags = |lists: &[&str]| Policy {
        tags: lists.iter().map(|l| l.parse().unwrap()).collect(),
        ..Policy::default()
    };
    // A list needs all its tags.
    assert_eq!(kept(&tags(&["a,b"])), [12]);
    let (keep, _) = run_in(&utc(), &tags(&["keep", "a"]), None);
    let want: Vec<(usize, Vec<String>)> = vec![
        (3, vec!["has tags [keep]".into()]),
        (12, vec!["has tags [a]".into()]),
        (14, vec!["has tags [a]".into()]),
    ];
    assert_eq!(keep, want);
    // The empty tag keeps the untagged snapshots.
    assert_eq!(
        kept(&tags(&[""])),
        [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 16]
    );
}

#[test]
fn buckets_follow_the_time_zone_of_now() {
    let p = Policy {
        daily: Count::N(2),
        ..Policy::default()
    };
    assert_eq!(kept(&p), [1, 4]);
    // At +02:00 snapshot 4 (23:59 UTC on the 9th) is 01:59 on the 10th, 1's day.
    let plus2 = FixedOffset::east_opt(2 * 3600).unwrap();
    let (keep, _) = run_in(&plus2, &p, None);
    assert_eq!(keep.iter().map(|k| k.0).collect::<Vec<_>>(), [1, 5]);
}

#[test]
fn ties_keep_input_order() {
    let snaps = [snap(5, &["first"]), snap(5, &["second"]), snap(1, &[])];
    let refs: Vec<&Snapshot> = snaps.iter().collect();
    let p = Policy {
        last: Count::N(1),
        ..Policy::default()
    };
    let d = apply(&refs, &p, &at(&utc(), "2024-01-01 00:00:00")).unwrap();
    assert_eq!(d.keep[0].index, 0);
    assert_eq!(d.remove, [1, 2]);
}

#[test]
fn empty_policy_is_refused() {
    let snaps = snapshots();
    let refs: Vec<&Snapshot> = snaps.iter().collect();
    let now = at(&utc(), "2024-03-10 13:00:00");
    assert_eq!(
        apply(&refs, &Policy::default(), &now),
        Err(PolicyError::Empty)
    );
    // Zero counts and zero durations are "not given", as in restic.
    let zero = Policy {
        last: Count::N(0),
        within: span("0d"),
        ..Policy::default()
    };
    assert_eq!(apply(&refs, &zero, &now), Err(PolicyError::Empty));
    // No snapshots is fine.
    assert_eq!(
        apply(
            &[],
            &Policy {
                last: Count::N(1),
                ..Policy::default()
            },
            &now
        ),
        Ok(Decision::default())
    );
}

#[test]
fn counts_parse() {
    assert_eq!("5".parse(), Ok(Count::N(5)));
    assert_eq!("unlimited".parse(), Ok(Count::Unlimited));
    assert_eq!("-1".parse(), Ok(Count::Unlimited));
    for bad in ["-2", "x", "", "1.5"] {
        assert!(bad.parse::<Count>().is_err(), "{bad:?} parsed");
    }
}

#[test]
fn policy_reads_like_restic() {
    let p = Policy {
        last: Count::N(5),
        daily: Count::N(6),
        weekly: Count::Unlimited,
        within_daily: span("7d"),
        tags: vec!["a,b".parse().unwrap()],
        within: span("2y"),
        ..Policy::default()
    };
    assert_eq!(
        p.to_string(),
        "keep 5 latest, 6 daily, all weekly snapshots, daily snapshots within 7d \
         and all snapshots with tags [[a, b]] and all snapshots within 2y of the newest"
    );
}

#[test]
fn grouping() {
    assert_eq!(
        "".parse::<GroupBy>(),
        Ok(GroupBy {
            host: false,
            paths: false,
            tags: false
        })
    );
    assert_eq!("host,paths".parse::<GroupBy>(), Ok(GroupBy::default()));
    assert_eq!(
        "hosts,tag".parse::<GroupBy>(),
        Ok(GroupBy {
            host: true,
            paths: false,
            tags: true
        })
    );
    assert!("host,color".parse::<GroupBy>().is_err());

    let mut a = snap(1, &["y", "x"]);
    a.hostname = "a".into();
    let mut b = snap(2, &[]);
    b.hostname = "b".into();
    let mut c = snap(3, &["x", "y"]);
    c.hostname = "a".into();
    c.paths = vec!["/z".into(), "/a".into()];
    let refs = [&a, &b, &c];
    let g = group(&refs, GroupBy::default());
    assert_eq!(g.len(), 3);
    let g = group(&refs, "host".parse().unwrap());
    assert_eq!(g[0].0.hostname.as_deref(), Some("a"));
    assert_eq!(g[0].1, [0, 2]);
    let g = group(&refs, "tags".parse().unwrap());
    assert_eq!(g[1].0.tags, Some(vec!["x".to_owned(), "y".to_owned()]));
    assert_eq!(g[1].1, [0, 2]);
    let g = group(&refs, "".parse().unwrap());
    assert_eq!(g, vec![(GroupKey::default(), vec![0, 1, 2])]);
}
