//! `check` over the prune state: damaged plans, sweep records and session markers are
//! errors naming their file; a stale session, a held prune lock and a sweep record without
//! its plan are warnings; every host's markers are checked, none is junk.

use std::sync::Arc;

use cairn_core::backend::layout::{self, HostDir};
use cairn_core::backend::Backend;
use cairn_core::check::{check, CheckOptions, CheckReport, NoCheckProgress, ProblemKind};
use cairn_core::id::{Id, Id16};
use cairn_core::prune::lock::PruneLock;
use cairn_core::prune::plan::{Plan, SweepRecord};
use cairn_core::prune::LockOwner;
use cairn_core::repository::Repository;
use cairn_core::session::{SessionMarker, SessionState};
use cairn_core::testing::InMemoryBackend;

use crate::support::*;

const DAY: i64 = 24 * 3_600_000;

struct Fixture {
    b: Arc<InMemoryBackend>,
    repo: Repository,
    _src: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("a.txt"), b"hello");
    let (b, repo) = init();
    backup_of(&repo, vec![src.path().to_path_buf()]);
    Fixture { b, repo, _src: src }
}

fn run(f: &Fixture) -> CheckReport {
    check(&f.repo, &CheckOptions::default(), &NoCheckProgress).unwrap()
}

fn describe(r: &CheckReport) -> String {
    let show = |v: &[cairn_core::check::Problem]| -> Vec<String> {
        v.iter().map(|p| format!("{:?} {p}", p.kind)).collect()
    };
    format!(
        "errors: {:#?}\nwarnings: {:#?}",
        show(&r.errors),
        show(&r.warnings)
    )
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn plan(gen: u64) -> Plan {
    Plan {
        gen,
        published_ms: now_ms() - DAY,
        grace_ms: DAY as u64,
        packs: vec![],
        unindexed_seen: vec![],
    }
}

fn record(gen: u64, plan: Id) -> SweepRecord {
    SweepRecord {
        gen,
        plan,
        finished_ms: now_ms(),
        deleted: vec![],
        rescued: 0,
        month: 202611,
        month_egress: 0,
    }
}

fn marker(sid: u8, state: SessionState, at_ms: i64) -> SessionMarker {
    SessionMarker {
        sid: Id16([sid; 16]),
        started_ms: at_ms - 1000,
        at_ms,
        gen_seen: 1,
        state,
        snapshot: None,
    }
}

fn flip(b: &InMemoryBackend, path: &str) {
    let mut v = b.read(path, None).unwrap();
    let at = v.len() / 2;
    v[at] ^= 0x10;
    b.put_raw(path, v);
}

/// A finished generation 1 (plan and record), its condemned pack long gone, and sessions of
/// two hosts: one ended, one running now.
fn with_state(f: &Fixture) -> (Id, Id, String) {
    let mut p = plan(1);
    p.packs.push(cairn_core::prune::plan::CondemnedPack {
        pack: cairn_core::id::PackId::new(f.repo.host_id(), Id([7; 32])),
        len: 100,
        ids: vec![],
        unindexed: true,
    });
    let plan_name = f.repo.save_plan(&p).unwrap();
    let rec = f.repo.save_sweep_record(&record(1, plan_name)).unwrap();
    let other = f.repo.as_host(Id16([9; 16]));
    let name = other
        .save_session_marker(&marker(1, SessionState::Running, now_ms()))
        .unwrap();
    f.repo
        .save_session_marker(&marker(2, SessionState::Committed, now_ms()))
        .unwrap();
    let other_marker = layout::host_file(&Id16([9; 16]), HostDir::Sessions, &name);
    (plan_name, rec, other_marker)
}

#[test]
fn finished_prune_state_and_other_hosts_markers_are_clean() {
    let f = fixture();
    with_state(&f);
    let r = run(&f);
    assert!(
        r.errors.is_empty() && r.warnings.is_empty(),
        "{}",
        describe(&r)
    );
}

#[test]
fn damaged_plan_and_sweep_record_are_named() {
    let f = fixture();
    let (plan_name, rec, _) = with_state(&f);
    let plan_path = layout::admin_file(layout::PLANS, &plan_name);
    flip(&f.b, &plan_path);
    let r = run(&f);
    assert!(
        r.errors.len() == 1
            && r.errors[0].kind == ProblemKind::PlanDamaged
            && r.errors[0].path == plan_path,
        "{}",
        describe(&r)
    );
    // Without its plan, the newest record is a leftover worth a warning.
    assert!(
        r.warnings.len() == 1
            && r.warnings[0].kind == ProblemKind::SweepRecordWithoutPlan
            && r.warnings[0].path == layout::admin_file(layout::SWEEPS, &rec),
        "{}",
        describe(&r)
    );

    let f = fixture();
    let (_, rec, _) = with_state(&f);
    let rec_path = layout::admin_file(layout::SWEEPS, &rec);
    f.b.put_raw(&rec_path, b"not a sweep record".to_vec());
    let r = run(&f);
    assert!(
        r.errors.len() == 1
            && r.errors[0].kind == ProblemKind::SweepRecordDamaged
            && r.errors[0].path == rec_path,
        "{}",
        describe(&r)
    );
    assert!(r.warnings.is_empty(), "{}", describe(&r));
}

#[test]
fn plan_signed_by_another_admin_is_an_error() {
    let f = fixture();
    let (other_b, other) = init();
    let name = other.save_plan(&plan(1)).unwrap();
    let path = layout::admin_file(layout::PLANS, &name);
    // The foreign repository's plan fails our AEAD (another group key) before its
    // signature is even looked at; either way it must be named.
    f.b.put_raw(&path, other_b.read(&path, None).unwrap());
    let r = run(&f);
    assert!(
        r.errors.len() == 1
            && r.errors[0].kind == ProblemKind::PlanDamaged
            && r.errors[0].path == path,
        "{}",
        describe(&r)
    );
}

#[test]
fn newest_sweep_record_without_plan_is_a_warning() {
    let f = fixture();
    let (plan_name, _, _) = with_state(&f);
    let rec = f.repo.save_sweep_record(&record(2, Id([3; 32]))).unwrap();
    let r = run(&f);
    assert!(r.errors.is_empty(), "{}", describe(&r));
    assert!(
        r.warnings.len() == 1
            && r.warnings[0].kind == ProblemKind::SweepRecordWithoutPlan
            && r.warnings[0].path == layout::admin_file(layout::SWEEPS, &rec)
            && r.warnings[0].detail.contains("generation 2"),
        "{}",
        describe(&r)
    );
    // An older record without its plan is what every sweep leaves until the next one.
    f.repo.save_plan(&plan(2)).unwrap();
    f.b.remove(&layout::admin_file(layout::PLANS, &plan_name))
        .unwrap();
    let r = run(&f);
    assert!(
        r.errors.is_empty() && r.warnings.is_empty(),
        "{}",
        describe(&r)
    );
}

#[test]
fn damaged_marker_of_another_host_is_named() {
    let f = fixture();
    let (_, _, other_marker) = with_state(&f);
    flip(&f.b, &other_marker);
    let r = run(&f);
    assert!(
        r.errors.len() == 1
            && r.errors[0].kind == ProblemKind::SessionMarkerDamaged
            && r.errors[0].path == other_marker,
        "{}",
        describe(&r)
    );
    assert!(r.warnings.is_empty(), "{}", describe(&r));
}

#[test]
fn session_running_without_heartbeat_for_a_week_is_a_warning() {
    let f = fixture();
    let host = Id16([9; 16]);
    let other = f.repo.as_host(host);
    let old = now_ms() - 8 * DAY;
    // Session 1 died: its newest marker is a heartbeat 8 days old.
    other
        .save_session_marker(&marker(1, SessionState::Running, old - DAY))
        .unwrap();
    let stale = other
        .save_session_marker(&marker(1, SessionState::Running, old))
        .unwrap();
    // Session 2 ended long ago; session 3 runs now: neither is stale.
    other
        .save_session_marker(&marker(2, SessionState::Running, old))
        .unwrap();
    other
        .save_session_marker(&marker(2, SessionState::Aborted, old - 5))
        .unwrap();
    f.repo
        .save_session_marker(&marker(3, SessionState::Running, now_ms() - DAY))
        .unwrap();
    let r = run(&f);
    assert!(r.errors.is_empty(), "{}", describe(&r));
    let w = &r.warnings;
    assert!(
        w.len() == 1
            && w[0].kind == ProblemKind::StaleSession
            && w[0].path == layout::host_file(&host, HostDir::Sessions, &stale)
            && w[0].detail.contains(&host.to_hex())
            && w[0].detail.contains(&Id16([1; 16]).to_hex()),
        "{}",
        describe(&r)
    );
}

#[test]
fn held_prune_lock_is_a_warning_naming_its_holder() {
    let f = fixture();
    let owner = LockOwner {
        hostname: "admin-box".into(),
        pid: 4242,
        since_ms: now_ms(),
    };
    let lock = PruneLock::acquire(&f.repo, &owner, &|_| false).unwrap();
    let r = run(&f);
    assert!(r.errors.is_empty(), "{}", describe(&r));
    assert!(
        r.warnings.len() == 1
            && r.warnings[0].kind == ProblemKind::PruneLocked
            && r.warnings[0].path == layout::PRUNE_LOCK
            && r.warnings[0].detail.contains("admin-box")
            && r.warnings[0].detail.contains("4242"),
        "{}",
        describe(&r)
    );
    lock.release().unwrap();
    let r = run(&f);
    assert!(r.warnings.is_empty(), "{}", describe(&r));
}
