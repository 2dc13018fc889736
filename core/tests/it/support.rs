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
