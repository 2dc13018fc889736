//! restic-compatible exclude rules: `--exclude`, `--iexclude`, `--exclude-file`,
//! `--iexclude-file`, `--exclude-caches`, `--exclude-if-present` and `--exclude-larger-than`.
//!
//! Users move cron jobs from restic to cairn with their exclude files unchanged, so the
//! semantics follow restic's documentation ("Excluding Files") and its `internal/filter`
//! behaviour, not gitignore or globset conventions:
//!
//! - A pattern is split at `/` into components after lexical cleaning (`a//b/./c/` is `a/b/c`;
//!   a trailing `/` is ignored, so `foo/` also matches a *file* `foo`). Each component is a Go
//!   `filepath.Match` glob: `*` and `?` never cross `/`, `[...]` / `[^...]` classes with
//!   ranges and `\` escapes, `\x` matches `x`. A component that is exactly `**` matches any
//!   number (zero included) of path components. There is no `{a,b}` alternation: braces are
//!   literal, as in restic.
//! - A pattern starting with `/` is anchored at the root; any other pattern matches at any
//!   depth. Matching needs only a *leading part* of the path from that point, which is why a
//!   matched directory excludes everything beneath it (`foo` matches `/a/foo/b/c`).
//! - `!pattern` re-includes what an earlier pattern of the same list excluded; the last
//!   matching pattern wins. See [`Excluder::excludes_path`] for the directory limitation.
//! - Patterns are matched against path components as raw bytes, so non-UTF-8 file names
//!   work; a byte that is not valid UTF-8 counts as one character (for `?`) equal to U+FFFD.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

pub use super::pattern::GlobProblem;
use super::pattern::{expand_env, PatternList};

/// The exclude options of `cairn backup`, named after restic's flags.
#[derive(Clone, Debug, Default)]
pub struct ExcludeOptions {
    /// `--exclude PATTERN`: case-sensitive patterns, used verbatim (no trimming, no `$VAR`).
    pub patterns: Vec<String>,
    /// `--iexclude PATTERN`: like `patterns`, matched case-insensitively.
    pub ipatterns: Vec<String>,
    /// `--exclude-file FILE`: one pattern per line, appended after `patterns` (so a `!` line
    /// can re-include what an `--exclude` excluded, as in restic).
    pub pattern_files: Vec<PathBuf>,
    /// `--iexclude-file FILE`: like `pattern_files`, appended after `ipatterns`.
    pub ipattern_files: Vec<PathBuf>,
    /// `--exclude-caches`: skip the contents of directories tagged with a valid `CACHEDIR.TAG`.
    pub exclude_caches: bool,
    /// `--exclude-if-present NAME[:HEADER]`: skip the contents of directories containing a file
    /// `NAME` (that starts with the bytes `HEADER`, when given).
    pub exclude_if_present: Vec<String>,
    /// `--exclude-larger-than SIZE`, already parsed with [`parse_size`]: skip regular files
    /// strictly larger than this many bytes.
    pub exclude_larger_than: Option<u64>,
}

/// The file name of the Cache Directory Tagging Standard (<https://bford.info/cachedir/>).
pub const CACHEDIR_TAG_NAME: &str = "CACHEDIR.TAG";

/// The bytes a `CACHEDIR.TAG` file must start with to count as a tag.
pub const CACHEDIR_TAG_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Where a pattern came from, so an error can point the user at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatternOrigin {
    /// A command-line option such as `--exclude`.
    Option(&'static str),
    /// A line (1-based) of an exclude file.
    File {
        /// The exclude file as given.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },
}

impl fmt::Display for PatternOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternOrigin::Option(flag) => write!(f, "{flag}"),
            PatternOrigin::File { path, line } => write!(f, "{}:{line}", path.display()),
        }
    }
}

/// Why a size given to `--exclude-larger-than` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeProblem {
    /// The value is empty.
    #[error("it is empty")]
    Empty,
    /// The value is not digits followed by an optional `b`, `k`, `m`, `g` or `t`.
    #[error("expected a number of bytes with an optional k, m, g or t suffix")]
    Syntax,
    /// The value does not fit in 64 bits.
    #[error("it is too large")]
    Overflow,
}

/// A refused exclude option.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExcludeError {
    /// A pattern is not a valid glob.
    #[error("invalid exclude pattern \"{pattern}\" ({origin}): {problem}")]
    BadPattern {
        /// Where the pattern came from (option, or exclude file and line).
        origin: PatternOrigin,
        /// The pattern after trimming and `$VAR` expansion.
        pattern: String,
        /// What is wrong with it.
        problem: GlobProblem,
    },
    /// An exclude file could not be read.
    #[error("cannot read exclude file {}: {source}", path.display())]
    ReadFile {
        /// The exclude file as given.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An exclude file line is neither UTF-8 nor UTF-16 with a byte-order mark.
    #[error("exclude file {}:{line} is not valid UTF-8 text", path.display())]
    NotText {
        /// The exclude file as given.
        path: PathBuf,
        /// The 1-based line number (0 when the whole UTF-16 file is malformed).
        line: usize,
    },
    /// A `$VAR` in an exclude file names a variable whose value is not UTF-8.
    #[error("exclude file {}:{line}: environment variable {var} is not valid UTF-8", path.display())]
    EnvNotUnicode {
        /// The exclude file as given.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The variable's name.
        var: String,
    },
    /// An `--exclude-if-present` value has an empty file name or one containing `/`.
    #[error("invalid --exclude-if-present value \"{spec}\": expected a file name, optionally followed by :HEADER")]
    BadTagSpec {
        /// The value as given.
        spec: String,
    },
    /// An `--exclude-larger-than` value is not a size.
    #[error("invalid size \"{value}\": {problem}")]
    BadSize {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        problem: SizeProblem,
    },
}

/// Parses a size the way restic's `--exclude-larger-than` does: a plain number of bytes, or a
/// number followed by `k`, `m`, `g` or `t` (any case, powers of 1024). restic also accepts a
/// `b`/`B` suffix meaning bytes, so we do too. No fractions, signs or spaces.
pub fn parse_size(s: &str) -> Result<u64, ExcludeError> {
    let bad = |problem| ExcludeError::BadSize {
        value: s.to_owned(),
        problem,
    };
    let (digits, shift) = match s.as_bytes().last() {
        None => return Err(bad(SizeProblem::Empty)),
        Some(b'b' | b'B') => (&s[..s.len() - 1], 0),
        Some(b'k' | b'K') => (&s[..s.len() - 1], 10),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 20),
        Some(b'g' | b'G') => (&s[..s.len() - 1], 30),
        Some(b't' | b'T') => (&s[..s.len() - 1], 40),
        Some(_) => (s, 0),
    };
    // `u64::from_str` would accept a leading `+`; restic's sizes are plain digits.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(SizeProblem::Syntax));
    }
    let n: u64 = digits.parse().map_err(|_| bad(SizeProblem::Overflow))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| bad(SizeProblem::Overflow))
}

/// Reads an exclude file as text: UTF-8 (an optional byte-order mark is skipped) or UTF-16
/// with a byte-order mark, like restic. Returns `(line number, line)` pairs.
fn read_lines(path: &Path) -> Result<Vec<(usize, String)>, ExcludeError> {
    let data = std::fs::read(path).map_err(|source| ExcludeError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let not_text = |line| ExcludeError::NotText {
        path: path.to_owned(),
        line,
    };
    let utf16 = |be: bool| -> Result<Vec<u8>, ExcludeError> {
        let units = data[2..].chunks(2).map(|c| match (c, be) {
            ([a, b], true) => Ok(u16::from_be_bytes([*a, *b])),
            ([a, b], false) => Ok(u16::from_le_bytes([*a, *b])),
            _ => Err(not_text(0)),
        });
        let units: Vec<u16> = units.collect::<Result<_, _>>()?;
        String::from_utf16(&units)
            .map(String::into_bytes)
            .map_err(|_| not_text(0))
    };
    let text: Cow<'_, [u8]> = match data.as_slice() {
        [0xEF, 0xBB, 0xBF, rest @ ..] => Cow::Borrowed(rest),
        [0xFE, 0xFF, ..] => Cow::Owned(utf16(true)?),
        [0xFF, 0xFE, ..] => Cow::Owned(utf16(false)?),
        _ => Cow::Borrowed(data.as_slice()),
    };
    let mut lines = Vec::new();
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(raw).map_err(|_| not_text(i + 1))?;
        lines.push((i + 1, line.to_owned()));
    }
    Ok(lines)
}

/// Adds an exclude file's patterns to `list`: lines are trimmed, blank lines and lines
/// starting with `#` skipped, `$VAR` expanded.
fn add_file(list: &mut PatternList, path: &Path) -> Result<(), ExcludeError> {
    for (line, text) in read_lines(path)? {
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let lookup = |name: &str| match std::env::var(name) {
            Ok(v) => Ok(v),
            Err(std::env::VarError::NotPresent) => Ok(String::new()),
            Err(std::env::VarError::NotUnicode(_)) => Err(name.to_owned()),
        };
        let pattern = expand_env(text, lookup).map_err(|var| ExcludeError::EnvNotUnicode {
            path: path.to_owned(),
            line,
            var,
        })?;
        list.push(&pattern)
            .map_err(|problem| ExcludeError::BadPattern {
                origin: PatternOrigin::File {
                    path: path.to_owned(),
                    line,
                },
                pattern,
                problem,
            })?;
    }
    Ok(())
}

/// A "skip this directory's contents" rule: `--exclude-if-present` or `--exclude-caches`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TagRule {
    name: OsString,
    header: Vec<u8>,
}

/// The compiled exclude options. Cheap to share between walker threads (`Sync`).
#[derive(Clone, Debug, Default)]
pub struct Excluder {
    sensitive: PatternList,
    insensitive: PatternList,
    tags: Vec<TagRule>,
    max_size: Option<u64>,
}

impl Excluder {
    /// Compiles the options, reading the exclude files now so a bad pattern fails the backup
    /// before it starts (restic does the same).
    pub fn new(opts: &ExcludeOptions) -> Result<Excluder, ExcludeError> {
        let mut sensitive = PatternList::new(false);
        let mut insensitive = PatternList::new(true);
        fn bad(flag: &'static str, pattern: &str) -> impl FnOnce(GlobProblem) -> ExcludeError {
            let pattern = pattern.to_owned();
            move |problem| ExcludeError::BadPattern {
                origin: PatternOrigin::Option(flag),
                pattern,
                problem,
            }
        }
        for p in &opts.patterns {
            sensitive.push(p).map_err(bad("--exclude", p))?;
        }
        for f in &opts.pattern_files {
            add_file(&mut sensitive, f)?;
        }
        for p in &opts.ipatterns {
            insensitive.push(p).map_err(bad("--iexclude", p))?;
        }
        for f in &opts.ipattern_files {
            add_file(&mut insensitive, f)?;
        }
        let mut tags = Vec::new();
        if opts.exclude_caches {
            tags.push(TagRule {
                name: CACHEDIR_TAG_NAME.into(),
                header: CACHEDIR_TAG_SIGNATURE.to_vec(),
            });
        }
        for spec in &opts.exclude_if_present {
            // restic splits at the first `:`; the header may itself contain `:`.
            let (name, header) = spec.split_once(':').unwrap_or((spec.as_str(), ""));
            if name.is_empty() || name.contains('/') {
                return Err(ExcludeError::BadTagSpec { spec: spec.clone() });
            }
            let rule = TagRule {
                name: name.into(),
                header: header.as_bytes().to_vec(),
            };
            if !tags.contains(&rule) {
                tags.push(rule);
            }
        }
        Ok(Excluder {
            sensitive,
            insensitive,
            tags,
            max_size: opts.exclude_larger_than,
        })
    }

    /// Whether the `--exclude*` patterns exclude `path` (absolute, as the walker sees it).
    ///
    /// `is_dir` is accepted for the walker's convenience but does not change the answer:
    /// restic ignores a trailing `/`, so `foo/` excludes a file named `foo` too.
    ///
    /// Each path is judged on its own, by prefix: `foo` excludes `/a/foo` and `/a/foo/b`.
    /// Limitation (same as restic and gitignore): the walker does not descend into an excluded
    /// directory, so `!` can re-include an excluded *directory* or *file* it names, but not a
    /// file inside a directory that stays excluded. E.g. `$HOME/*` then `!$HOME/Documents`
    /// keeps all of `~/Documents`, whereas `cache` then `!cache/keep` keeps nothing (this
    /// function returns `false` for `/a/cache/keep`, but `/a/cache` itself is never entered).
    pub fn excludes_path(&self, path: &Path, is_dir: bool) -> bool {
        // `is_dir` deliberately unused, see above.
        let _ = is_dir;
        self.sensitive.excludes(path) || self.insensitive.excludes(path)
    }

    /// Whether `--exclude-larger-than` excludes an entry: only regular files (`is_file`)
    /// strictly larger than the limit, as in restic.
    pub fn excludes_by_size(&self, size: u64, is_file: bool) -> bool {
        is_file && self.max_size.is_some_and(|max| size > max)
    }

    /// The tag files in `dir` that trigger `--exclude-caches` / `--exclude-if-present`, empty
    /// when the directory's contents are to be kept.
    ///
    /// A tag `NAME` counts when `dir/NAME` exists (any type, symlinks not followed) and, when
    /// a header is required, starts with exactly those bytes; a file shorter than the header
    /// does not count. `CACHEDIR.TAG` needs the standard signature.
    ///
    /// Contract for the walker (restic's behaviour): when this is non-empty, back up the
    /// directory itself and the returned tag files, and nothing else in it. Deviation: with
    /// several different tags present restic drops each tag file via the other's rule; we
    /// keep every returned tag file.
    pub fn matching_tag_files(&self, dir: &Path) -> std::io::Result<Vec<OsString>> {
        let mut found = Vec::new();
        for rule in &self.tags {
            if tag_matches(&dir.join(&rule.name), &rule.header)? {
                found.push(rule.name.clone());
            }
        }
        Ok(found)
    }

    /// Whether the contents of `dir` are excluded by `--exclude-caches` or
    /// `--exclude-if-present`; see [`Excluder::matching_tag_files`] for what is kept. An I/O
    /// error other than "not found" is returned so the walker can warn and back up.
    pub fn excludes_dir_contents(&self, dir: &Path) -> std::io::Result<bool> {
        Ok(!self.matching_tag_files(dir)?.is_empty())
    }

    /// Whether any tag rule is configured (lets the walker skip the per-directory checks).
    pub fn has_tag_rules(&self) -> bool {
        !self.tags.is_empty()
    }
}

fn tag_matches(tag: &Path, header: &[u8]) -> std::io::Result<bool> {
    match std::fs::symlink_metadata(tag) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    if header.is_empty() {
        return Ok(true);
    }
    let mut buf = vec![0u8; header.len()];
    match std::fs::File::open(tag)?.read_exact(&mut buf) {
        Ok(()) => Ok(buf == header),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
        let p = dir.join(name);
        let written = std::fs::write(&p, data);
        assert!(written.is_ok(), "write {}: {written:?}", p.display());
        p
    }

    fn build(opts: &ExcludeOptions) -> Excluder {
        match Excluder::new(opts) {
            Ok(e) => e,
            Err(e) => panic!("options should compile: {e}"),
        }
    }

    fn tmp() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        }
    }

    #[test]
    fn sizes() {
        for (s, want) in [
            ("10", 10),
            ("0", 0),
            ("1k", 1024),
            ("1K", 1024),
            ("500M", 500 << 20),
            ("500m", 500 << 20),
            ("2G", 2 << 30),
            ("3t", 3 << 40),
            ("7b", 7),
        ] {
            let got = parse_size(s);
            assert!(
                matches!(got, Ok(n) if n == want),
                "{s}: expected {want}, got {got:?}"
            );
        }
        for (s, want) in [
            ("", SizeProblem::Empty),
            ("k", SizeProblem::Syntax),
            ("1.5G", SizeProblem::Syntax),
            ("-1", SizeProblem::Syntax),
            ("+1", SizeProblem::Syntax),
            ("1 G", SizeProblem::Syntax),
            ("1KB", SizeProblem::Syntax),
            ("10x", SizeProblem::Syntax),
            ("99999999999999999999", SizeProblem::Overflow),
            ("16777216T", SizeProblem::Overflow),
        ] {
            let got = parse_size(s);
            assert!(
                matches!(got, Err(ExcludeError::BadSize { problem, .. }) if problem == want),
                "{s}: expected {want:?}, got {got:?}"
            );
        }
    }

    #[test]
    fn size_rule_applies_to_regular_files_only() {
        let ex = build(&ExcludeOptions {
            exclude_larger_than: Some(1024),
            ..Default::default()
        });
        assert!(ex.excludes_by_size(1025, true), "larger file is excluded");
        assert!(
            !ex.excludes_by_size(1024, true),
            "a file of exactly the limit is kept"
        );
        assert!(
            !ex.excludes_by_size(1 << 30, false),
            "directories are never size-excluded"
        );
        let none = build(&ExcludeOptions::default());
        assert!(
            !none.excludes_by_size(u64::MAX, true),
            "no limit, no exclusion"
        );
    }

    #[test]
    fn exclude_file_lines() {
        let dir = tmp();
        let file = write(
            dir.path(),
            "excludes.txt",
            b"# exclude go-files\n*.go\n\n   \n  foo/**/bar  \r\n# notes\n\t/abs/dir\t\n",
        );
        let ex = build(&ExcludeOptions {
            patterns: vec!["*.c".into()],
            pattern_files: vec![file],
            ..Default::default()
        });
        for (path, want) in [
            ("/w/main.go", true),
            ("/w/main.c", true),
            ("/w/foo/x/y/z/bar", true),
            ("/w/foo/bar", true),
            ("/abs/dir/f", true),
            ("/w/# notes", false),
            ("/w/main.rs", false),
            ("/w/abs/dir", false),
        ] {
            let got = ex.excludes_path(Path::new(path), false);
            assert!(got == want, "{path}: expected excluded={want}, got {got}");
        }
    }

    #[test]
    fn file_negation_overrides_command_line() {
        let dir = tmp();
        let file = write(dir.path(), "ex", b"!/keep/important.log\n");
        let ex = build(&ExcludeOptions {
            patterns: vec!["*.log".into()],
            pattern_files: vec![file],
            ..Default::default()
        });
        assert!(
            ex.excludes_path(Path::new("/keep/other.log"), false),
            "*.log still applies"
        );
        assert!(
            !ex.excludes_path(Path::new("/keep/important.log"), false),
            "re-included"
        );
    }

    #[test]
    fn exclude_file_env_vars() {
        let Ok(home) = std::env::var("HOME") else {
            return;
        };
        let dir = tmp();
        let file = write(
            dir.path(),
            "ex",
            b"$HOME/Downloads\n${HOME}/tmp\n/x/$$literal\n",
        );
        let ex = build(&ExcludeOptions {
            pattern_files: vec![file],
            ..Default::default()
        });
        for (path, want) in [
            (format!("{home}/Downloads/a.iso"), true),
            (format!("{home}/tmp"), true),
            ("/x/$literal".to_owned(), true),
            ("/x/literal".to_owned(), false),
        ] {
            let got = ex.excludes_path(Path::new(&path), true);
            assert!(got == want, "{path}: expected excluded={want}, got {got}");
        }
    }

    #[test]
    fn iexclude_file_and_encodings() {
        let dir = tmp();
        let mut utf16 = vec![0xFF, 0xFE];
        for u in "*.ISO\n".encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
        let bom8 = write(dir.path(), "bom8", b"\xEF\xBB\xBF*.TMP\n");
        let bom16 = write(dir.path(), "bom16", &utf16);
        let ex = build(&ExcludeOptions {
            ipatterns: vec!["/DATA".into()],
            ipattern_files: vec![bom8, bom16],
            ..Default::default()
        });
        for (path, want) in [
            ("/data/x", true),
            ("/a/b.tmp", true),
            ("/a/B.Iso", true),
            ("/a/b.txt", false),
        ] {
            let got = ex.excludes_path(Path::new(path), false);
            assert!(got == want, "{path}: expected excluded={want}, got {got}");
        }
    }

    #[test]
    fn bad_pattern_names_file_and_line() {
        let dir = tmp();
        let file = write(dir.path(), "ex", b"# ok\n*.o\n\nfoo/[bar\n");
        let err = Excluder::new(&ExcludeOptions {
            pattern_files: vec![file.clone()],
            ..Default::default()
        });
        let Err(err) = err else {
            panic!("unclosed class must be refused")
        };
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{}:4", file.display())),
            "message names file:line: {msg}"
        );
        assert!(msg.contains("foo/[bar"), "message names the pattern: {msg}");
        let cli = Excluder::new(&ExcludeOptions {
            ipatterns: vec!["a\\".into()],
            ..Default::default()
        });
        assert!(
            matches!(
                cli,
                Err(ExcludeError::BadPattern {
                    origin: PatternOrigin::Option("--iexclude"),
                    ..
                })
            ),
            "command-line pattern error names its flag: {cli:?}"
        );
    }

    #[test]
    fn unreadable_or_binary_exclude_file() {
        let dir = tmp();
        let missing = dir.path().join("nope");
        let err = Excluder::new(&ExcludeOptions {
            pattern_files: vec![missing],
            ..Default::default()
        });
        assert!(
            matches!(err, Err(ExcludeError::ReadFile { .. })),
            "missing file: {err:?}"
        );
        let bin = write(dir.path(), "bin", b"ok\n\xff\xfe\xfd\n");
        let err = Excluder::new(&ExcludeOptions {
            pattern_files: vec![bin],
            ..Default::default()
        });
        assert!(
            matches!(err, Err(ExcludeError::NotText { line: 2, .. })),
            "non-UTF-8 line is reported with its number: {err:?}"
        );
    }

    fn tagged(opts: &ExcludeOptions, files: &[(&str, &[u8])]) -> (bool, Vec<OsString>) {
        let dir = tmp();
        for (name, data) in files {
            write(dir.path(), name, data);
        }
        let ex = build(opts);
        let excluded = ex.excludes_dir_contents(dir.path());
        let kept = ex.matching_tag_files(dir.path());
        match (excluded, kept) {
            (Ok(e), Ok(k)) => (e, k),
            other => panic!("tag check failed: {other:?}"),
        }
    }

    #[test]
    fn cachedir_tag() {
        let caches = ExcludeOptions {
            exclude_caches: true,
            ..Default::default()
        };
        let good = b"Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache tag.\n";
        let (excluded, kept) = tagged(&caches, &[("CACHEDIR.TAG", good), ("blob", b"x")]);
        assert!(excluded, "valid CACHEDIR.TAG excludes the contents");
        assert!(
            kept == vec![OsString::from("CACHEDIR.TAG")],
            "the tag file itself is kept"
        );
        let wrong = b"Signature: 0000000000000000000000000000000\n";
        assert!(
            !tagged(&caches, &[("CACHEDIR.TAG", wrong)]).0,
            "wrong signature is ignored"
        );
        assert!(
            !tagged(&caches, &[("CACHEDIR.TAG", b"Signature: 8a47")]).0,
            "short file ignored"
        );
        assert!(
            !tagged(&caches, &[("cachedir.tag", good)]).0,
            "the name is case-sensitive"
        );
        let off = ExcludeOptions::default();
        assert!(
            !tagged(&off, &[("CACHEDIR.TAG", good)]).0,
            "off unless --exclude-caches"
        );
    }

    #[test]
    fn exclude_if_present() {
        let plain = ExcludeOptions {
            exclude_if_present: vec![".nobackup".into()],
            ..Default::default()
        };
        assert!(
            tagged(&plain, &[(".nobackup", b"")]).0,
            "an empty marker file is enough"
        );
        assert!(
            !tagged(&plain, &[("other", b"")]).0,
            "no marker, no exclusion"
        );
        let header = ExcludeOptions {
            exclude_if_present: vec!["MARK:skip: yes".into()],
            ..Default::default()
        };
        assert!(
            tagged(&header, &[("MARK", b"skip: yes, please")]).0,
            "header after first ':'"
        );
        assert!(
            !tagged(&header, &[("MARK", b"skip: no")]).0,
            "wrong header is ignored"
        );
        for spec in ["", ":hdr", "a/b"] {
            let err = Excluder::new(&ExcludeOptions {
                exclude_if_present: vec![spec.into()],
                ..Default::default()
            });
            assert!(
                matches!(err, Err(ExcludeError::BadTagSpec { .. })),
                "{spec}: {err:?}"
            );
        }
        let none = build(&ExcludeOptions::default());
        assert!(!none.has_tag_rules(), "no tag rules by default");
    }

    #[test]
    fn is_dir_does_not_change_pattern_result() {
        let ex = build(&ExcludeOptions {
            patterns: vec!["build/".into()],
            ..Default::default()
        });
        assert!(
            ex.excludes_path(Path::new("/p/build"), true),
            "directory build/"
        );
        assert!(
            ex.excludes_path(Path::new("/p/build"), false),
            "file build too, as in restic"
        );
    }
}
