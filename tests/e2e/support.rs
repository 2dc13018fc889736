//! Shared helpers: running the real `cairn` binary, a declarative source-tree builder and a
//! tree comparer.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use filetime::FileTime;

pub use crate::compare::{assert_same, count_files};

/// The password of every test repository.
pub const PASSWORD: &str = "e2e-password";

/// KDF flags that keep `init` and `key add` fast.
pub const CHEAP_KDF: [&str; 4] = ["--kdf-memory-mib", "19", "--kdf-iterations", "1"];

/// The `cairn` binary under test: `$CAIRN_BIN`, else `<target>/debug/cairn` next to the
/// `deps/` directory holding this test executable. Panics (fails the test) when missing.
pub fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "CAIRN_BIN={} does not name an existing file",
            p.display()
        );
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("test executable has a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join("cairn");
    assert!(
        p.is_file(),
        "the cairn binary was not found at {}: run `cargo build -p cairn` before the e2e \
         tests, or set CAIRN_BIN",
        p.display()
    );
    p
}

/// Result of one command.
#[derive(Debug)]
pub struct Out {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// The last non-empty stdout line as JSON.
    pub fn json(&self) -> serde_json::Value {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("no output to parse as JSON: {self:#?}"));
        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON ({e}): {self:#?}"))
    }
}

/// How to run `cairn` against one repository.
#[derive(Clone, Debug)]
pub struct Cairn {
    /// `-r` value; `None` runs without `-r` (default repository).
    pub repo: Option<PathBuf>,
    /// `CAIRN_PASSWORD`.
    pub password: String,
    /// Extra environment.
    pub env: Vec<(OsString, OsString)>,
    /// Global options placed before the command (`-o sftp.identity=...`).
    pub opts: Vec<OsString>,
}

impl Cairn {
    /// A handle for the repository at `repo` (not created).
    pub fn new(repo: impl Into<PathBuf>) -> Self {
        Self {
            repo: Some(repo.into()),
            password: PASSWORD.into(),
            env: Vec::new(),
            opts: Vec::new(),
        }
    }

    /// The same repository with another password.
    pub fn with_password(&self, pw: &str) -> Self {
        let mut c = self.clone();
        c.password = pw.into();
        c
    }

    /// A command ready to run (cleaned of inherited CAIRN_* variables).
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(bin());
        remove_env(&mut cmd, &["CAIRN_"]);
        cmd.env("CAIRN_PASSWORD", &self.password);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(r) = &self.repo {
            cmd.arg("-r").arg(r);
        }
        cmd.args(&self.opts);
        cmd.args(args);
        cmd
    }

    /// Runs `cairn <args>` with `input` on standard input.
    pub fn run_input<S: AsRef<OsStr>>(&self, args: &[S], input: &[u8]) -> Out {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning cairn");
        let mut stdin = child.stdin.take().expect("stdin");
        let data = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().expect("waiting for cairn");
        let _ = writer.join();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `cairn <args>` with empty standard input.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        self.run_input(args, b"")
    }

    /// Runs and asserts exit code 0.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        let out = self.run(args);
        assert_eq!(out.code, 0, "cairn {:?} failed: {out:#?}", os_args(args));
        out
    }

    /// Runs with `--json`, asserts exit code 0, parses the last stdout line.
    pub fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> serde_json::Value {
        let mut a = os_args(args);
        a.push("--json".into());
        self.ok(&a).json()
    }

    /// `init` with a cheap KDF.
    pub fn init(&self) {
        let mut a = vec!["init"];
        a.extend(CHEAP_KDF);
        self.ok(&a);
    }
}

/// Keeps the variables starting with any of `prefixes` out of `cmd`'s environment, so a
/// test sees only what it sets (the developer's own CAIRN_PASSWORD must not leak in).
pub fn remove_env(cmd: &mut Command, prefixes: &[&str]) {
    for (k, _) in std::env::vars_os() {
        if prefixes
            .iter()
            .any(|p| k.as_bytes().starts_with(p.as_bytes()))
        {
            cmd.env_remove(&k);
        }
    }
}

fn os_args<S: AsRef<OsStr>>(args: &[S]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_owned()).collect()
}

/// A temporary directory holding a repository (`repo/`), ready to use.
pub struct Fixture {
    /// Owns the directory.
    pub dir: tempfile::TempDir,
    /// The runner.
    pub cairn: Cairn,
    /// Where the repository's files are on this machine (`None` for S3).
    pub local_repo: Option<PathBuf>,
}

impl Fixture {
    /// Creates a directory and `init`s a repository in it.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let cairn = Cairn::new(dir.path().join("repo"));
        cairn.init();
        let local_repo = Some(dir.path().join("repo"));
        Self {
            dir,
            cairn,
            local_repo,
        }
    }

    /// A path in the fixture directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The repository's directory on this machine (local, or the SFTP server's chroot).
    pub fn repo(&self) -> PathBuf {
        self.local_repo
            .clone()
            .expect("this test needs the repository's files on this machine")
    }

    /// Where `src` lands inside a full restore into `target`.
    pub fn restored(target: &Path, src: &Path) -> PathBuf {
        target.join(src.strip_prefix("/").expect("absolute source"))
    }
}

/// A deterministic pseudo-random byte stream (splitmix64).
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Whether the test runs as root (ownership and device nodes are then covered).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether a test may mount a tmpfs (it needs root). Outside CI it says why it skips;
/// under CI, not being root is a failure: CI must not pass by testing less.
pub fn can_mount() -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must run the e2e tests as root"
    );
    eprintln!("skipped: mounting a tmpfs needs root");
    false
}

const MIB: u64 = 1 << 20;

/// One declared entry or attribute of a source tree. Paths are relative, as raw bytes.
#[derive(Clone, Debug)]
pub enum Item {
    /// A regular file of `size` seeded pseudo-random bytes.
    File(Vec<u8>, usize, u64),
    /// A regular file with exactly these bytes.
    Bytes(Vec<u8>, Vec<u8>),
    /// A file of `size` bytes: `edge` random bytes, zeros written out, `edge` random bytes.
    ZeroMiddle(Vec<u8>, u64, u64),
    /// A file of some random head bytes then extended with `set_len` (a real hole).
    Holey(Vec<u8>, usize, u64),
    /// A directory.
    Dir(Vec<u8>),
    /// A symlink with this target.
    Symlink(Vec<u8>, Vec<u8>),
    /// A hard link to an earlier declared file.
    HardLink(Vec<u8>, Vec<u8>),
    /// A named pipe.
    Fifo(Vec<u8>),
    /// A character device (major, minor); root only.
    CharDev(Vec<u8>, u64, u64),
    /// Mode bits.
    Mode(Vec<u8>, u32),
    /// Modification time in ns since the epoch (also atime); applied last, deepest first.
    Mtime(Vec<u8>, i64),
    /// An extended attribute.
    Xattr(Vec<u8>, String, Vec<u8>),
    /// Owner (uid, gid); root only.
    Owner(Vec<u8>, u32, u32),
}

/// A declarative source tree.
#[derive(Clone, Debug, Default)]
pub struct TreeSpec {
    /// The declarations, created in order.
    pub items: Vec<Item>,
    /// Set by [`TreeSpec::build`]: the file system refused user xattrs (ENOTSUP).
    pub xattrs_unsupported: bool,
}

fn b(p: impl AsRef<[u8]>) -> Vec<u8> {
    p.as_ref().to_vec()
}

#[allow(missing_docs)]
impl TreeSpec {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn file(mut self, p: impl AsRef<[u8]>, size: usize, seed: u64) -> Self {
        self.items.push(Item::File(b(p), size, seed));
        self
    }
    pub fn text(mut self, p: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Self {
        self.items.push(Item::Bytes(b(p), b(data)));
        self
    }
    pub fn zero_middle(mut self, p: impl AsRef<[u8]>, size: u64, edge: u64) -> Self {
        self.items.push(Item::ZeroMiddle(b(p), size, edge));
        self
    }
    pub fn holey(mut self, p: impl AsRef<[u8]>, head: usize, len: u64) -> Self {
        self.items.push(Item::Holey(b(p), head, len));
        self
    }
    pub fn dir(mut self, p: impl AsRef<[u8]>) -> Self {
        self.items.push(Item::Dir(b(p)));
        self
    }
    pub fn symlink(mut self, p: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        self.items.push(Item::Symlink(b(p), b(target)));
        self
    }
    pub fn hardlink(mut self, p: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Self {
        self.items.push(Item::HardLink(b(p), b(to)));
        self
    }
    pub fn fifo(mut self, p: impl AsRef<[u8]>) -> Self {
        self.items.push(Item::Fifo(b(p)));
        self
    }
    pub fn chardev(mut self, p: impl AsRef<[u8]>, major: u64, minor: u64) -> Self {
        self.items.push(Item::CharDev(b(p), major, minor));
        self
    }
    pub fn mode(mut self, p: impl AsRef<[u8]>, mode: u32) -> Self {
        self.items.push(Item::Mode(b(p), mode));
        self
    }
    pub fn mtime(mut self, p: impl AsRef<[u8]>, ns: i64) -> Self {
        self.items.push(Item::Mtime(b(p), ns));
        self
    }
    pub fn xattr(mut self, p: impl AsRef<[u8]>, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.items.push(Item::Xattr(b(p), name.into(), b(value)));
        self
    }
    pub fn owner(mut self, p: impl AsRef<[u8]>, uid: u32, gid: u32) -> Self {
        self.items.push(Item::Owner(b(p), uid, gid));
        self
    }

    /// Creates the tree under `root` (created if needed). Attributes are applied after all
    /// entries exist: owners, modes, xattrs, then times, deepest first.
    pub fn build(&mut self, root: &Path) {
        std::fs::create_dir_all(root).expect("create root");
        let at = |p: &[u8]| root.join(OsStr::from_bytes(p));
        let parent = |p: &Path| {
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
            }
        };
        let write = |p: &Path, data: &[u8]| {
            parent(p);
            std::fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        };
        for it in &self.items {
            match it {
                Item::File(p, size, seed) => write(&at(p), &bytes(*seed, *size)),
                Item::Bytes(p, data) => write(&at(p), data),
                Item::ZeroMiddle(p, size, edge) => {
                    let p = at(p);
                    parent(&p);
                    let mut f = std::fs::File::create(&p).expect("create");
                    f.write_all(&bytes(1, *edge as usize)).expect("write");
                    let zeros = vec![0u8; MIB as usize];
                    let mut left = size - 2 * edge;
                    while left > 0 {
                        let n = left.min(MIB);
                        f.write_all(&zeros[..n as usize]).expect("write");
                        left -= n;
                    }
                    f.write_all(&bytes(2, *edge as usize)).expect("write");
                }
                Item::Holey(p, head, len) => {
                    let p = at(p);
                    write(&p, &bytes(3, *head));
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&p)
                        .expect("open");
                    f.set_len(*len).expect("set_len");
                }
                Item::Dir(p) => std::fs::create_dir_all(at(p)).expect("mkdir"),
                Item::Symlink(p, t) => {
                    let p = at(p);
                    parent(&p);
                    std::os::unix::fs::symlink(OsStr::from_bytes(t), &p).expect("symlink");
                }
                Item::HardLink(p, to) => {
                    let p = at(p);
                    parent(&p);
                    std::fs::hard_link(at(to), &p).expect("hard link");
                }
                Item::Fifo(p) => {
                    let p = at(p);
                    parent(&p);
                    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o640))
                        .expect("mkfifo");
                }
                Item::CharDev(p, major, minor) => {
                    let p = at(p);
                    parent(&p);
                    nix::sys::stat::mknod(
                        &p,
                        nix::sys::stat::SFlag::S_IFCHR,
                        nix::sys::stat::Mode::from_bits_truncate(0o666),
                        nix::sys::stat::makedev(*major, *minor),
                    )
                    .expect("mknod (needs root)");
                }
                Item::Mode(..) | Item::Mtime(..) | Item::Xattr(..) | Item::Owner(..) => {}
            }
        }
        for it in &self.items {
            if let Item::Owner(p, uid, gid) = it {
                std::os::unix::fs::lchown(at(p), Some(*uid), Some(*gid)).expect("lchown");
            }
        }
        for it in &self.items {
            if let Item::Mode(p, mode) = it {
                std::fs::set_permissions(at(p), std::fs::Permissions::from_mode(*mode))
                    .expect("chmod");
            }
        }
        for it in &self.items {
            if let Item::Xattr(p, name, value) = it {
                match xattr::set(at(p), name, value) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                        eprintln!("note: user xattrs unsupported here ({e}); not checked");
                        self.xattrs_unsupported = true;
                    }
                    Err(e) => panic!("setxattr {name}: {e}"),
                }
            }
        }
        let mut times: Vec<(&Vec<u8>, i64)> = self
            .items
            .iter()
            .filter_map(|it| match it {
                Item::Mtime(p, ns) => Some((p, *ns)),
                _ => None,
            })
            .collect();
        times.sort_by_key(|(p, _)| std::cmp::Reverse(p.iter().filter(|c| **c == b'/').count()));
        for (p, ns) in times {
            let t = FileTime::from_unix_time(
                ns.div_euclid(1_000_000_000),
                ns.rem_euclid(1_000_000_000) as u32,
            );
            filetime::set_symlink_file_times(at(p), t, t).expect("set times");
        }
    }
}

/// The relative path (bytes) of the deepest directory of [`full_tree`]'s long path.
pub fn long_dir(root: &Path, target_len: usize) -> Vec<u8> {
    let mut rel: Vec<u8> = b"long".to_vec();
    let base = root.as_os_str().len() + 1;
    let mut i = 0u8;
    loop {
        // Each component: 200 bytes.
        let mut comp = vec![b'a' + (i % 26); 199];
        comp.push(b'0' + i % 10);
        if base + rel.len() + 1 + comp.len() + 20 > target_len {
            break;
        }
        rel.push(b'/');
        rel.extend_from_slice(&comp);
        i += 1;
    }
    rel
}

/// The full declared tree used by the round-trip tests (about 26 MiB).
pub fn full_tree(root: &Path) -> TreeSpec {
    let t0: i64 = 1_600_000_000_123_456_789;
    let long = long_dir(root, 3900);
    let mut long_file = long.clone();
    long_file.extend_from_slice(b"/deep.txt");
    let mut s = TreeSpec::new()
        .file("a.txt", 1000, 1)
        .file("sub/b.bin", 300_000, 2)
        .file("sub/deeper/c.bin", 2_500_000, 3)
        .file("sub/deeper/d.txt", 17, 4)
        .text("empty", "")
        .zero_middle("sparse.img", 20 * MIB, MIB)
        .holey("holey.bin", 4096, 8 * MIB)
        .symlink("link-rel", "sub/b.bin")
        .symlink("sub/link-up", "../a.txt")
        .symlink("link-abs", "/etc/hostname")
        .symlink("link-dangling", "does/not/exist")
        .file("hard1", 5000, 5)
        .hardlink("sub/hard2", "hard1")
        .fifo("fifo")
        .file(b"caf\xe9".as_slice(), 123, 6)
        .dir(b"dir-\xff\xfe".as_slice())
        .file(b"dir-\xff\xfe/inner\x80".as_slice(), 77, 7)
        .file(&long_file, 4321, 8)
        .file("private.key", 64, 9)
        .mode("private.key", 0o600)
        .file("run.sh", 200, 10)
        .mode("run.sh", 0o755)
        .file("readonly.txt", 300, 11)
        .mode("readonly.txt", 0o444)
        .dir("shared")
        .file("shared/x", 10, 12)
        .mode("shared", 0o2775)
        .xattr("a.txt", "user.comment", "hello")
        .xattr("a.txt", "user.bin", [0u8, 1, 2, 255])
        .xattr("sub", "user.dir", "on a directory")
        .mtime("a.txt", t0)
        .mtime("sub/b.bin", t0 + 1)
        .mtime("sub/deeper", t0 + 2)
        .mtime("sub", t0 + 3)
        .mtime("link-rel", t0 + 4)
        .mtime("shared", t0 + 5)
        .mtime("readonly.txt", t0 + 6)
        .mtime("empty", 0)
        .mtime("fifo", t0 + 7);
    if is_root() {
        s = s
            // A POSIX ACL (user 1234 may read) and a file capability travel as the
            // system.posix_acl_access and security.capability xattrs.
            .file("acl.txt", 50, 14)
            .mode("acl.txt", 0o640)
            .xattr(
                "acl.txt",
                "system.posix_acl_access",
                posix_acl(&[
                    (0x01, 6, u32::MAX),
                    (0x02, 4, 1234),
                    (0x04, 4, u32::MAX),
                    (0x10, 4, u32::MAX),
                    (0x20, 0, u32::MAX),
                ]),
            )
            .file("capable", 60, 15)
            .mode("capable", 0o755)
            .xattr("capable", "security.capability", file_capability(10))
            .chardev("null-dev", 1, 3)
            .file("owned", 100, 13)
            .owner("owned", 1234, 5678)
            .mode("owned", 0o640)
            .owner("link-dangling", 4321, 8765);
    }
    s
}

/// Asserts the file at `p` occupies well under half its size on disk.
pub fn assert_sparse(p: &Path) {
    let m = std::fs::metadata(p).expect("stat");
    let allocated = m.blocks() * 512;
    assert!(
        allocated < m.size() / 2,
        "{} is not sparse: {allocated} bytes allocated for {} bytes",
        p.display(),
        m.size()
    );
}

/// Every file below `dir` (recursively), as paths.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Pack files of the repository (not temporary files).
pub fn packs(repo: &Path) -> Vec<PathBuf> {
    files_under(&repo.join("hosts"))
        .into_iter()
        .filter(|p| {
            p.components().any(|c| c.as_os_str() == "packs")
                && !p
                    .file_name()
                    .is_some_and(|n| n.as_bytes().starts_with(b".tmp-"))
        })
        .collect()
}

/// Files of one kind (`index`, `tindex`, `snapshots`) of every host.
pub fn host_files(repo: &Path, kind: &str) -> Vec<PathBuf> {
    files_under(&repo.join("hosts"))
        .into_iter()
        .filter(|p| {
            p.parent().and_then(Path::file_name) == Some(OsStr::new(kind))
                && !p
                    .file_name()
                    .is_some_and(|n| n.as_bytes().starts_with(b".tmp-"))
        })
        .collect()
}

/// A path as `&str` (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

/// The kernel's binary form of a POSIX ACL xattr: version 2, then (tag, perm, id) entries.
fn posix_acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// A VFS v2 file capability granting (permitted, effective) capability number `cap`.
fn file_capability(cap: u32) -> Vec<u8> {
    let mut v = (0x0200_0000u32 | 1).to_le_bytes().to_vec();
    for word in [1u32 << cap, 0, 0, 0] {
        v.extend_from_slice(&word.to_le_bytes());
    }
    v
}
