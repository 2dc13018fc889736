//! Finding entries by glob: `*`, `?` and `[...]` against the name, or against the whole
//! absolute path when the pattern contains a `/`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::{walk, Visit};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repository::{Repository, TreeCache};
use crate::tree::Node;

/// Compiled find patterns.
pub struct Matcher {
    names: GlobSet,
    paths: GlobSet,
}

impl Matcher {
    /// Compiles `patterns`; `ignore_case` applies to all of them.
    pub fn new(patterns: &[String], ignore_case: bool) -> Result<Self> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in patterns {
            // `*` must not cross `/` in a path pattern, like restic's filepath.Match.
            let g = GlobBuilder::new(p)
                .case_insensitive(ignore_case)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::InvalidInput(format!("pattern {p:?}: {e}")))?;
            if p.contains('/') {
                paths.add(g);
            } else {
                names.add(g);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::InvalidInput(format!("patterns: {e}")))
        };
        Ok(Self {
            names: build(names)?,
            paths: build(paths)?,
        })
    }

    /// Whether the entry at `path` named `name` matches a pattern.
    pub fn is_match(&self, path: &Path, name: &[u8]) -> bool {
        self.names.is_match(OsStr::from_bytes(name)) || self.paths.is_match(path)
    }
}

/// Every entry of the tree `root` that matches, in walk order.
pub fn find(
    repo: &Repository,
    cache: &TreeCache,
    root: &Id,
    m: &Matcher,
) -> Result<Vec<(PathBuf, Node)>> {
    let mut out = Vec::new();
    walk(repo, cache, root, Path::new("/"), &mut |p, n| {
        if m.is_match(p, &n.name) {
            out.push((p.to_path_buf(), n.clone()));
        }
        Ok::<_, Error>(Visit::Continue)
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &[&str], i: bool) -> Matcher {
        let v: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        match Matcher::new(&v, i) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn name_and_path_patterns() {
        let x = m(&["*.txt"], false);
        assert!(x.is_match(Path::new("/a/b.txt"), b"b.txt"));
        assert!(!x.is_match(Path::new("/a/b.TXT"), b"b.TXT"));
        assert!(m(&["*.txt"], true).is_match(Path::new("/a/b.TXT"), b"b.TXT"));
        let p = m(&["/a/*.txt"], false);
        assert!(p.is_match(Path::new("/a/b.txt"), b"b.txt"));
        assert!(!p.is_match(Path::new("/a/c/b.txt"), b"b.txt"));
        assert!(m(&["f?o[0-9]"], false).is_match(Path::new("/fxo7"), b"fxo7"));
        // Non-UTF-8 names are matched on their bytes.
        assert!(m(&["*.bin"], false).is_match(Path::new("/x"), b"\xff\xfe.bin"));
    }
}
