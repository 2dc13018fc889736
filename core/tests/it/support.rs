//! Test repository setup with cheap parameters.

use std::path::Path;
use std::sync::Arc;

use cairn_core::backend::Backend;
use cairn_core::crypto::keyfile::{KdfParams, MIN_M_KIB};
use cairn_core::crypto::Password;
use cairn_core::repository::{InitOptions, Repository};
use cairn_core::testing::InMemoryBackend;

pub fn password() -> Password {
    Password::new("test password".into())
}

pub fn init_with(backend: Arc<dyn Backend>) -> Repository {
    let opts = InitOptions {
        kdf: KdfParams::with_cost(MIN_M_KIB, 1),
        key_in_repo: true,
        key_out: None,
        label: "test".into(),
        zstd_level: 3,
    };
    Repository::init(backend, &password(), &opts).unwrap()
}

pub fn init() -> (Arc<InMemoryBackend>, Repository) {
    let b = Arc::new(InMemoryBackend::new());
    let r = init_with(b.clone());
    (b, r)
}

pub fn write(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Deterministic pseudo-random bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.finalize_xof().fill(&mut out);
    out
}

/// Backup options for tests: no excludes, fixed host, user and time.
pub fn backup_opts(paths: Vec<std::path::PathBuf>) -> cairn_core::archiver::BackupOptions {
    use cairn_core::source::exclude::{ExcludeOptions, Excluder};
    cairn_core::archiver::BackupOptions {
        paths,
        hostname: "h".into(),
        username: "u".into(),
        tags: vec![],
        parent: None,
        excluder: Excluder::new(&ExcludeOptions::default()).unwrap(),
        one_file_system: false,
        dry_run: false,
        time_ns: 1,
        program: "test".into(),
        stdin_name: None,
    }
}

/// Backs `paths` up into `repo` with [`backup_opts`], failing the test on an error.
pub fn backup_of(
    repo: &Repository,
    paths: Vec<std::path::PathBuf>,
) -> cairn_core::archiver::BackupOutcome {
    cairn_core::archiver::backup(
        repo,
        &backup_opts(paths),
        None,
        &cairn_core::archiver::NoProgress,
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap()
}

/// Restore options for tests: verify, overwrite, nothing else.
pub fn ropts(target: &Path) -> cairn_core::restorer::RestoreOptions {
    cairn_core::restorer::RestoreOptions {
        target: target.to_path_buf(),
        subpath: None,
        include: None,
        exclude: None,
        verify: true,
        overwrite: cairn_core::restorer::Overwrite::Always,
        delete: false,
        dry_run: false,
    }
}

/// Restores snapshot `s` into a fresh directory, asserting it restored without errors and
/// verified; returns the directory.
pub fn restore_into(repo: &Repository, s: &cairn_core::snapshot::Snapshot) -> tempfile::TempDir {
    let dst = tempfile::tempdir().unwrap();
    let sum = cairn_core::restorer::restore(
        repo,
        &s.tree,
        &ropts(dst.path()),
        &cairn_core::restorer::NoRestoreProgress,
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap();
    assert!(
        sum.errors.is_empty() && sum.verify_failures.is_empty(),
        "{sum:?}"
    );
    dst
}
