//! The pattern engine behind `--exclude`: Go `filepath.Match` globs per path component, `**`
//! across components, restic's anchoring, prefix matching and `!` negation. The rules are
//! described in [`super::exclude`]; this module only implements them.

use std::borrow::Cow;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// Why a glob component is malformed (the cases Go's `filepath.Match` rejects).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GlobProblem {
    /// A `[` without its closing `]`.
    #[error("unclosed character class")]
    UnclosedClass,
    /// `[]` or `[^]`.
    #[error("empty character class")]
    EmptyClass,
    /// A `-` or `]` where a class character was expected, or a range like `z-a`.
    #[error("malformed character range")]
    BadRange,
    /// The pattern ends in a single `\`.
    #[error("trailing backslash")]
    TrailingBackslash,
}

/// One element of a glob component.
#[derive(Clone, Debug)]
enum Tok {
    Lit(char),
    Any,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Tok {
    fn matches(&self, c: char) -> bool {
        match self {
            Tok::Lit(l) => *l == c,
            Tok::Any => true,
            Tok::Star => false,
            Tok::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// Parses one component with Go `filepath.Match` syntax, rejecting what Go rejects.
fn parse_glob(pat: &str) -> Result<Vec<Tok>, GlobProblem> {
    let mut toks = Vec::new();
    let mut chars = pat.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '*' => Tok::Star,
            '?' => Tok::Any,
            '\\' => Tok::Lit(chars.next().ok_or(GlobProblem::TrailingBackslash)?),
            '[' => parse_class(&mut chars)?,
            c => Tok::Lit(c),
        });
    }
    Ok(toks)
}

/// Parses a class after its `[`; consumes the closing `]`.
fn parse_class(chars: &mut std::str::Chars<'_>) -> Result<Tok, GlobProblem> {
    // A class character: `\` escapes anything; a bare `-` or `]` is an error (Go's rule).
    fn class_char(chars: &mut std::str::Chars<'_>) -> Result<char, GlobProblem> {
        match chars.next() {
            None => Err(GlobProblem::UnclosedClass),
            Some('\\') => chars.next().ok_or(GlobProblem::UnclosedClass),
            Some('-' | ']') => Err(GlobProblem::BadRange),
            Some(c) => Ok(c),
        }
    }
    let negated = chars.as_str().starts_with('^');
    if negated {
        chars.next();
    }
    let mut ranges = Vec::new();
    loop {
        if chars.as_str().starts_with(']') {
            chars.next();
            if ranges.is_empty() {
                return Err(GlobProblem::EmptyClass);
            }
            return Ok(Tok::Class { negated, ranges });
        }
        let lo = class_char(chars)?;
        let mut hi = lo;
        if chars.as_str().starts_with('-') {
            chars.next();
            hi = class_char(chars)?;
            if hi < lo {
                return Err(GlobProblem::BadRange);
            }
        }
        ranges.push((lo, hi));
    }
}

/// Decodes the next character of a path component; an invalid byte is U+FFFD of width 1.
fn next_char(s: &[u8]) -> (char, usize) {
    // A UTF-8 character is at most 4 bytes, so the first chunk of 4 bytes decides.
    let chunk = s[..s.len().min(4)].utf8_chunks().next();
    match chunk.and_then(|c| c.valid().chars().next()) {
        Some(c) => (c, c.len_utf8()),
        None => (char::REPLACEMENT_CHARACTER, 1),
    }
}

/// Matches one glob component against one path component (both whole).
fn glob_match(toks: &[Tok], s: &[u8]) -> bool {
    let (mut ti, mut si) = (0, 0);
    // Where to resume after the last `*` if the rest fails: (token after it, input position).
    let mut resume: Option<(usize, usize)> = None;
    loop {
        if let Some(tok) = toks.get(ti) {
            if let Tok::Star = tok {
                resume = Some((ti + 1, si));
                ti += 1;
                continue;
            }
            if si < s.len() {
                let (c, w) = next_char(&s[si..]);
                if tok.matches(c) {
                    ti += 1;
                    si += w;
                    continue;
                }
            }
        } else if si == s.len() {
            return true;
        }
        // Let the last `*` swallow one more character and retry from there.
        match resume {
            Some((rt, rs)) if rs < s.len() => {
                let next = rs + next_char(&s[rs..]).1;
                resume = Some((rt, next));
                ti = rt;
                si = next;
            }
            _ => return false,
        }
    }
}

/// One component of a pattern.
#[derive(Clone, Debug)]
enum Part {
    /// `**`: zero or more components.
    AnyDepth,
    /// No wildcards: compared as bytes (the common case, kept cheap).
    Literal(Vec<u8>),
    Glob(Vec<Tok>),
}

impl Part {
    fn matches(&self, comp: &[u8]) -> bool {
        match self {
            Part::AnyDepth => true,
            Part::Literal(l) => l == comp,
            Part::Glob(toks) => glob_match(toks, comp),
        }
    }
}

/// A parsed pattern.
#[derive(Clone, Debug)]
struct Pattern {
    negated: bool,
    anchored: bool,
    parts: Vec<Part>,
}

/// Whether `parts` match a leading run of `comps` (the rest of the path may follow).
fn match_prefix(parts: &[Part], comps: &[&[u8]]) -> bool {
    match parts.split_first() {
        None => true,
        Some((Part::AnyDepth, rest)) => (0..=comps.len()).any(|k| match_prefix(rest, &comps[k..])),
        Some((part, rest)) => match comps.split_first() {
            Some((first, tail)) => part.matches(first) && match_prefix(rest, tail),
            None => false,
        },
    }
}

impl Pattern {
    /// Parses `raw` (already trimmed/expanded); `None` for the empty pattern, which restic
    /// ignores.
    fn parse(raw: &str, case_insensitive: bool) -> Result<Option<Pattern>, GlobProblem> {
        let (negated, body) = match raw.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        if raw.is_empty() {
            return Ok(None);
        }
        // restic lower-cases both pattern and path for the case-insensitive variants.
        let body: Cow<'_, str> = if case_insensitive {
            Cow::Owned(body.to_lowercase())
        } else {
            Cow::Borrowed(body)
        };
        let anchored = body.starts_with('/');
        let mut parts = Vec::new();
        for comp in clean_components(&body, anchored) {
            parts.push(if comp == "**" {
                Part::AnyDepth
            } else if !comp.contains(['*', '?', '[', '\\']) {
                Part::Literal(comp.as_bytes().to_vec())
            } else {
                Part::Glob(parse_glob(comp)?)
            });
        }
        // A relative pattern that cleans to nothing ("." or "!.") is Go's ".": it only
        // matches a component named ".", which clean paths never have.
        if parts.is_empty() && !anchored {
            parts.push(Part::Literal(b".".to_vec()));
        }
        Ok(Some(Pattern {
            negated,
            anchored,
            parts,
        }))
    }

    fn matches(&self, comps: &[&[u8]]) -> bool {
        if self.anchored {
            return match_prefix(&self.parts, comps);
        }
        (0..comps.len()).any(|start| match_prefix(&self.parts, &comps[start..]))
    }
}

/// Lexically cleans a `/`-separated pattern like Go's `filepath.Clean` and returns its
/// components: empty and `.` components go, `..` removes the previous one (and is dropped
/// at the root of an anchored pattern).
fn clean_components(p: &str, anchored: bool) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for comp in p.split('/') {
        match comp {
            "" | "." => {}
            ".." => match out.last() {
                Some(&last) if last != ".." => {
                    out.pop();
                }
                _ if anchored => {}
                _ => out.push(".."),
            },
            c => out.push(c),
        }
    }
    out
}

/// An ordered pattern list with restic's "last match wins" negation.
#[derive(Clone, Debug, Default)]
pub(crate) struct PatternList {
    patterns: Vec<Pattern>,
    case_insensitive: bool,
    has_negation: bool,
}

impl PatternList {
    /// An empty list; `case_insensitive` for the `--iexclude` variants.
    pub(crate) fn new(case_insensitive: bool) -> PatternList {
        PatternList {
            case_insensitive,
            ..PatternList::default()
        }
    }

    /// Appends a pattern; the empty pattern is ignored, as restic does.
    pub(crate) fn push(&mut self, raw: &str) -> Result<(), GlobProblem> {
        if let Some(p) = Pattern::parse(raw, self.case_insensitive)? {
            self.has_negation |= p.negated;
            self.patterns.push(p);
        }
        Ok(())
    }

    /// Whether the list excludes `path`: the last matching pattern decides.
    pub(crate) fn excludes(&self, path: &Path) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let comps: Vec<&[u8]> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.as_bytes()),
                Component::ParentDir => Some(b"..".as_slice()),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
            })
            .collect();
        if !self.case_insensitive {
            return self.excludes_comps(&comps);
        }
        let lower: Vec<Cow<'_, [u8]>> = comps.iter().map(|c| lowercase_bytes(c)).collect();
        let lower: Vec<&[u8]> = lower.iter().map(|c| c.as_ref()).collect();
        self.excludes_comps(&lower)
    }

    fn excludes_comps(&self, comps: &[&[u8]]) -> bool {
        let mut excluded = false;
        for p in &self.patterns {
            if p.negated {
                excluded = excluded && !p.matches(comps);
            } else if !excluded && p.matches(comps) {
                excluded = true;
                // Without `!` patterns nothing can re-include the path.
                if !self.has_negation {
                    break;
                }
            }
        }
        excluded
    }
}

/// Lower-cases a path component for `--iexclude`: valid UTF-8 runs are lower-cased like the
/// pattern was; invalid bytes are kept as they are.
fn lowercase_bytes(comp: &[u8]) -> Cow<'_, [u8]> {
    if comp.is_ascii() {
        if !comp.iter().any(u8::is_ascii_uppercase) {
            return Cow::Borrowed(comp);
        }
        return Cow::Owned(comp.to_ascii_lowercase());
    }
    let mut out = Vec::with_capacity(comp.len());
    for chunk in comp.utf8_chunks() {
        out.extend_from_slice(chunk.valid().to_lowercase().as_bytes());
        out.extend_from_slice(chunk.invalid());
    }
    Cow::Owned(out)
}

/// Expands `$VAR`, `${VAR}` and `$$` the way restic expands exclude-file lines (Go's
/// `os.Expand` with `$$` meaning a literal `$`): an unset variable expands to nothing; `$`
/// followed by something that is not a name stays as it is; `${}` and an unclosed `${` are
/// dropped; `$` followed by one of `*#@!?-` or a digit names that one-character variable.
/// `lookup` returns `Err(name)` for a value that is not UTF-8.
pub(crate) fn expand_env<F>(s: &str, lookup: F) -> Result<String, String>
where
    F: Fn(&str) -> Result<String, String>,
{
    let special = |b: u8| b"*#$@!?-".contains(&b) || b.is_ascii_digit();
    let name_char = |b: u8| b == b'_' || b.is_ascii_alphanumeric();
    let value = |name: &str| {
        if name == "$" {
            Ok("$".to_owned())
        } else {
            lookup(name)
        }
    };
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut copied, mut j) = (0, 0);
    while j < bytes.len() {
        if bytes[j] != b'$' || j + 1 == bytes.len() {
            j += 1;
            continue;
        }
        out.push_str(&s[copied..j]);
        let rest = &bytes[j + 1..];
        // (name, bytes consumed after the `$`); every boundary below is an ASCII byte, so
        // the slices stay on char boundaries.
        let (name, used): (Option<&str>, usize) = if rest[0] == b'{' {
            match rest.iter().position(|&b| b == b'}') {
                Some(1) => (None, 2),
                Some(end) => (Some(&s[j + 2..j + 1 + end]), end + 1),
                None => (None, 1),
            }
        } else if special(rest[0]) {
            (Some(&s[j + 1..j + 2]), 1)
        } else {
            let n = rest.iter().take_while(|&&b| name_char(b)).count();
            if n == 0 {
                out.push('$');
                (None, 0)
            } else {
                (Some(&s[j + 1..j + 1 + n]), n)
            }
        };
        if let Some(name) = name {
            out.push_str(&value(name)?);
        }
        j += 1 + used;
        copied = j;
    }
    out.push_str(&s[copied..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn list(patterns: &[&str], ci: bool) -> PatternList {
        let mut l = PatternList::new(ci);
        for p in patterns {
            let pushed = l.push(p);
            assert!(pushed.is_ok(), "pattern {p} should parse: {pushed:?}");
        }
        l
    }

    /// Checks `(pattern, path, excluded)` rows, each pattern alone.
    fn check(rows: &[(&str, &str, bool)]) {
        for &(pat, path, want) in rows {
            let got = list(&[pat], false).excludes(Path::new(path));
            assert!(
                got == want,
                "pattern {pat} on {path}: expected excluded={want}, got {got}"
            );
        }
    }

    #[test]
    fn restic_documented_examples() {
        check(&[
            // "Patterns need to match on complete path components."
            ("foo", "/dir1/foo/dir2/file", true),
            ("foo", "/dir/foo", true),
            ("foo", "/dir/foobar", false),
            ("foo", "/dir/barfoo", false),
            // A leading `/` anchors; a trailing `/` is ignored.
            ("/bin", "/bin/bash", true),
            ("/bin", "/usr/bin/restic", false),
            ("/bin/", "/bin", true),
            ("file/", "/a/file", true),
            // Wildcards do not cross `/`.
            ("b*ash", "/bin/bash", true),
            ("b*ash", "/bin/ash", false),
            // `**` spans any number of components, zero included.
            ("foo/**/bar", "/dir1/foo/dir2/bar/file", true),
            ("foo/**/bar", "/foo/bar/file", true),
            ("foo/**/bar", "/tmp/foo/bar", true),
            ("foo/**/bar", "/foo/x/y/z/bar", true),
            ("foo/**/bar", "/foo/x/barn", false),
            ("*.go", "/home/u/src/main.go", true),
            ("*.go", "/home/u/src/main.gox", false),
            ("*.c", "/a/b.c/inner", true),
        ]);
    }

    #[test]
    fn unanchored_dirs_exclude_their_subtree() {
        check(&[
            (".cache", "/home/u/.cache", true),
            (".cache", "/home/u/.cache/pip/x.whl", true),
            (".cache", "/home/u/cache", false),
            ("*.o", "/src/a/b.o", true),
            ("*.o", "/src/a/b.obj", false),
            ("node_modules", "/p/node_modules/x/y.js", true),
            ("u/.cache", "/home/u/.cache/x", true),
            ("u/.cache", "/home/v/.cache/x", false),
        ]);
    }

    #[test]
    fn anchored_patterns() {
        check(&[
            ("/home/*/.cache", "/home/u/.cache/x", true),
            ("/home/*/.cache", "/srv/home/u/.cache", false),
            ("/home/**/tmp", "/home/a/b/c/tmp/f", true),
            ("/home/**", "/home", true),
            ("/home/**", "/homes/x", false),
            ("/", "/anything/at/all", true),
            ("/var/log/*.gz", "/var/log/syslog.1.gz", true),
            ("/var/log/*.gz", "/var/log/nginx/a.gz", false),
            ("/a/./b//c/", "/a/b/c", true),
            ("/a/x/../b", "/a/b/f", true),
        ]);
    }

    #[test]
    fn double_star_edge_cases() {
        check(&[
            ("**", "/x", true),
            ("**/*.tmp", "/a/b.tmp", true),
            ("a/**", "/z/a", true),
            ("a/**/b/**/c", "/a/b/c", true),
            ("a/**/b/**/c", "/a/1/b/2/3/c/4", true),
            ("a/**/b/**/c", "/a/1/c/2/b", false),
        ]);
    }

    #[test]
    fn glob_syntax() {
        check(&[
            ("?.txt", "/d/a.txt", true),
            ("?.txt", "/d/ab.txt", false),
            ("?.txt", "/d/é.txt", true),
            ("[abc].txt", "/d/b.txt", true),
            ("[a-c].txt", "/d/d.txt", false),
            ("[^a-c].txt", "/d/d.txt", true),
            ("[^a-c].txt", "/d/a.txt", false),
            ("[\\]x].txt", "/d/].txt", true),
            ("\\*.txt", "/d/*.txt", true),
            ("\\*.txt", "/d/a.txt", false),
            // Braces are literal in Go globs (no alternation).
            ("{a,b}.txt", "/d/a.txt", false),
            ("{a,b}.txt", "/d/{a,b}.txt", true),
            // `!` starts a class negation only in globset, not in Go: here it is literal.
            ("[!a].txt", "/d/!.txt", true),
            ("[!a].txt", "/d/b.txt", false),
            ("a*b*c", "/d/aXbYbZc", true),
            ("a*b*c", "/d/aXbYbZ", false),
            ("*", "/d", true),
        ]);
    }

    #[test]
    fn bad_globs() {
        for (pat, want) in [
            ("[abc", GlobProblem::UnclosedClass),
            ("a/[", GlobProblem::UnclosedClass),
            ("[]", GlobProblem::EmptyClass),
            ("[^]", GlobProblem::EmptyClass),
            ("[z-a]", GlobProblem::BadRange),
            ("[-a]", GlobProblem::BadRange),
            ("[a-]", GlobProblem::BadRange),
            ("abc\\", GlobProblem::TrailingBackslash),
        ] {
            let got = PatternList::new(false).push(pat);
            assert!(
                got == Err(want),
                "pattern {pat}: expected {want:?}, got {got:?}"
            );
        }
    }

    #[test]
    fn negation_last_match_wins() {
        let home = list(
            &["/home/u/*", "!/home/u/Documents", "!/home/u/code", "*.o"],
            false,
        );
        for (path, want) in [
            ("/home/u/Music", true),
            ("/home/u/Music/a.mp3", true),
            ("/home/u/Documents", false),
            ("/home/u/Documents/cv.pdf", false),
            ("/home/u/code/x/main.c", false),
            ("/home/u/code/x/main.o", true),
            ("/home/v/Music", false),
        ] {
            let got = home.excludes(Path::new(path));
            assert!(got == want, "{path}: expected excluded={want}, got {got}");
        }
        // A `!` before the pattern it should cancel has no effect.
        let early = list(&["!*.log", "*.log"], false);
        assert!(
            early.excludes(Path::new("/a/b.log")),
            "negation only undoes earlier matches"
        );
        // Re-included file by name inside a directory still excluded by its parent's rule.
        let inner = list(&["cache", "!cache/keep"], false);
        assert!(
            inner.excludes(Path::new("/a/cache")),
            "directory itself stays excluded"
        );
        assert!(
            !inner.excludes(Path::new("/a/cache/keep")),
            "path judged alone is re-included"
        );
    }

    #[test]
    fn case_insensitive() {
        let l = list(&["*.JPG", "/Users/*/Library", "ÉTÉ"], true);
        for (path, want) in [
            ("/a/photo.jpg", true),
            ("/a/PHOTO.Jpg", true),
            ("/users/bob/LIBRARY/x", true),
            ("/a/été/x", true),
            ("/a/photo.png", false),
        ] {
            let got = l.excludes(Path::new(path));
            assert!(got == want, "{path}: expected excluded={want}, got {got}");
        }
        let sensitive = list(&["*.JPG"], false);
        assert!(
            !sensitive.excludes(Path::new("/a/p.jpg")),
            "--exclude is case-sensitive"
        );
    }

    #[test]
    fn non_utf8_components() {
        let bytes = |b: &'static [u8]| Path::new(OsStr::from_bytes(b));
        let l = list(&["*.bin", "/data/?x"], false);
        assert!(
            l.excludes(bytes(b"/data/\xff\xfe.bin")),
            "star crosses invalid bytes"
        );
        assert!(
            l.excludes(bytes(b"/data/\xffx")),
            "an invalid byte is one character for ?"
        );
        assert!(
            !l.excludes(bytes(b"/data/\xff\xfex")),
            "two invalid bytes are two characters"
        );
        assert!(!l.excludes(bytes(b"/data/\xff.txt")), "non-matching suffix");
        let ci = list(&["/DATA/*.BIN"], true);
        assert!(
            ci.excludes(bytes(b"/data/\xffA.bin")),
            "case-insensitive keeps invalid bytes"
        );
    }

    #[test]
    fn empty_and_dot_patterns() {
        let l = list(&["", "!"], false);
        assert!(
            !l.excludes(Path::new("/a")),
            "empty patterns exclude nothing"
        );
        let dot = list(&["."], false);
        assert!(
            !dot.excludes(Path::new("/a/b")),
            "'.' matches no clean path"
        );
    }

    #[test]
    fn env_expansion_follows_go() {
        let lookup = |name: &str| match name {
            "USER" => Ok("bob".to_owned()),
            "1" => Ok("one".to_owned()),
            "BAD" => Err("BAD".to_owned()),
            _ => Ok(String::new()),
        };
        for (input, want) in [
            ("/home/$USER/foo", "/home/bob/foo"),
            ("/home/${USER}/foo", "/home/bob/foo"),
            ("/a/$USER.txt", "/a/bob.txt"),
            ("/a/$$USER", "/a/$USER"),
            ("/a/$$", "/a/$"),
            ("/a/${$}", "/a/$"),
            ("/a/$UNSET/b", "/a//b"),
            ("/a/$1", "/a/one"),
            ("/a/$", "/a/$"),
            ("/a/$/b", "/a/$/b"),
            ("/a/${}b", "/a/b"),
            ("/a/${USER", "/a/USER"),
            ("/é/$USER/ü", "/é/bob/ü"),
        ] {
            let got = expand_env(input, lookup);
            assert!(
                got.as_deref() == Ok(want),
                "{input}: expected {want}, got {got:?}"
            );
        }
        assert!(
            expand_env("$BAD", lookup) == Err("BAD".to_owned()),
            "non-UTF-8 value is reported"
        );
    }
}
