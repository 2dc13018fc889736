use std::sync::Arc;

use cairn_core::backend::Backend;
use cairn_core::repository::Repository;
use cairn_core::testing::{FaultyBackend, InMemoryBackend, Op};

use crate::support::*;

#[test]
fn index_and_trees_come_from_the_cache_and_damage_falls_back() {
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("a/b.txt"), b"cached");
    write(&src.path().join("c.bin"), &noise(7, 100_000));
    let cache_dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyBackend::new(InMemoryBackend::new()));
    let backend: Arc<dyn Backend> = faulty.clone();
    let mut repo = init_with(backend.clone());
    repo.enable_cache(cache_dir.path());
    let out = backup_of(&repo, vec![src.path().to_path_buf()]);
    let tree = out.snapshot.tree;
    drop(repo);

    let mut repo = Repository::open(backend.clone(), &password(), None).unwrap();
    repo.enable_cache(cache_dir.path());
    let before = faulty.calls(Op::Read) + faulty.calls(Op::ReadStream);
    repo.load_index().unwrap();
    repo.load_tree(&tree).unwrap();
    let after = faulty.calls(Op::Read) + faulty.calls(Op::ReadStream);
    assert_eq!(
        after, before,
        "index files and trees were read from the cache"
    );

    // Damage every cached file: reads fall back to the repository and still succeed.
    let mut stack = vec![cache_dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mut b = std::fs::read(&p).unwrap();
                let n = b.len() / 2;
                b[n] ^= 0x55;
                std::fs::write(&p, b).unwrap();
            }
        }
    }
    let mut repo = Repository::open(backend, &password(), None).unwrap();
    repo.enable_cache(cache_dir.path());
    assert!(
        repo.load_index().unwrap().is_empty(),
        "damaged cache copies are not errors"
    );
    repo.load_tree(&tree).unwrap();
    assert!(
        faulty.calls(Op::Read) + faulty.calls(Op::ReadStream) > after,
        "fell back to the repository"
    );
}
