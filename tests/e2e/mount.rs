//! `cairn mount` on the real FUSE device: the restic layout, `cp -a` of whole trees
//! compared with their source (contents, modes, owners, times, symlinks, hard links,
//! xattrs, device nodes), a large file read at random offsets, and both ways of
//! unmounting, on local and remote repositories.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::servers::Remote;
use crate::support::{assert_same, bytes, full_tree, is_root, s, Fixture};

/// Whether this machine can mount FUSE file systems; under CI it must.
fn fuse_available() -> bool {
    let ok = is_root() && Path::new("/dev/fuse").exists();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run the mount tests as root with /dev/fuse"
        );
        eprintln!("skipped: mounting needs root and /dev/fuse");
    }
    ok
}

/// Whether `dir` is a mountpoint now (from /proc/self/mountinfo).
fn is_mounted(dir: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let want = s(dir);
    info.lines().any(|l| l.split(' ').nth(4) == Some(want))
}

/// A running `cairn mount`.
struct Mounted {
    child: Child,
    at: PathBuf,
}

impl Mounted {
    fn start(f: &Fixture, at: &Path, extra: &[&str]) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let mut args = vec!["mount", s(at)];
        args.extend(extra);
        let child = f
            .cairn
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning cairn mount");
        let mut m = Mounted {
            child,
            at: at.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !is_mounted(at) {
            if let Some(st) = m.child.try_wait().unwrap() {
                panic!("cairn mount exited with {st} before mounting");
            }
            assert!(Instant::now() < deadline, "not mounted after 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    /// Waits for `cairn mount` to end by itself; its exit code.
    fn wait(mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(!is_mounted(&self.at), "still mounted after cairn ended");
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = Command::new("umount").arg("-l").arg(&self.at).status();
                panic!("cairn mount did not end after unmounting");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // A failed assertion must not leave a mount behind for the next test.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
    }
}

/// The unmount command a user has: fusermount3 (fuse3), else fusermount, else umount.
fn unmount_command(at: &Path) -> Command {
    for bin in ["fusermount3", "fusermount"] {
        if Command::new(bin).arg("-V").output().is_ok() {
            let mut c = Command::new(bin);
            c.arg("-u").arg(at);
            return c;
        }
    }
    let mut c = Command::new("umount");
    c.arg(at);
    c
}

/// Reads up to `len` bytes at `off`, as many preads as it takes.
fn read_full_at(file: &std::fs::File, off: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let mut n = 0;
    while n < len {
        match file.read_at(&mut buf[n..], off + n as u64).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    buf.truncate(n);
    buf
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn mount_browse_and_copy(remote: Remote) {
    if !fuse_available() {
        return;
    }
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let src = f.path("src");
    let mut spec = full_tree(&src);
    spec.build(&src);
    let big = src.join("big.bin");
    let big_bytes = bytes(99, 24 << 20);
    std::fs::write(&big, &big_bytes).unwrap();
    let first = f.cairn.json(&["backup", s(&src), "--tag", "daily"]);
    let id = first["snapshot_id"].as_str().unwrap()[..8].to_owned();
    let second = f.cairn.json(&["backup", s(&src), "--host", "vps"]);
    let id2 = second["snapshot_id"].as_str().unwrap()[..8].to_owned();

    let mnt = f.path("mnt");
    let m = Mounted::start(&f, &mnt, &[]);
    assert_eq!(names(&mnt), ["hosts", "ids", "snapshots", "tags"]);
    let mut ids = vec![id.clone(), id2.clone()];
    ids.sort();
    assert_eq!(names(&mnt.join("ids")), ids);
    assert_eq!(names(&mnt.join("tags")), ["daily"]);
    assert!(names(&mnt.join("hosts")).contains(&"vps".to_owned()));
    let snaps = names(&mnt.join("snapshots"));
    assert_eq!(snaps.len(), 3, "two snapshots and latest: {snaps:?}");
    let latest = std::fs::read_link(mnt.join("snapshots/latest")).unwrap();
    assert!(snaps.contains(&latest.to_string_lossy().into_owned()));
    let vps = names(&mnt.join("hosts/vps"));
    assert_eq!(vps.len(), 2, "one snapshot and latest: {vps:?}");
    let vps_latest = std::fs::read_link(mnt.join("hosts/vps/latest")).unwrap();
    assert!(vps.contains(&vps_latest.to_string_lossy().into_owned()));

    // cp -a out of the mount gives back the source, metadata and hard links included.
    let inside = |top: &str| mnt.join(top).join(src.strip_prefix("/").unwrap());
    let out = f.path("out");
    std::fs::create_dir(&out).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(inside(&format!("ids/{id}")))
        .arg(out.join("copy"))
        .status()
        .unwrap();
    assert!(st.success(), "cp -a out of the mount failed");
    assert_same(&src, &out.join("copy"), true);
    assert_same(&src, &inside("snapshots/latest"), true);

    // A large file read at seeded random offsets and lengths, as a viewer seeks.
    let file = std::fs::File::open(inside("tags/daily/latest").join("big.bin")).unwrap();
    assert_eq!(file.metadata().unwrap().len(), big_bytes.len() as u64);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = (x % big_bytes.len() as u64) as usize;
        let len = ((x >> 32) % (3 << 20)) as usize;
        let want = &big_bytes[off..(off + len).min(big_bytes.len())];
        let got = read_full_at(&file, off as u64, len);
        assert!(got == want, "bytes differ reading {len} at {off}");
    }
    // Past the end: nothing.
    assert_eq!(
        file.read_at(&mut [0u8; 10], big_bytes.len() as u64)
            .unwrap(),
        0
    );
    drop(file);

    // Read-only.
    assert!(std::fs::write(inside("snapshots/latest").join("a.txt"), b"x").is_err());

    // fusermount3 -u ends `cairn mount` with exit code 0.
    let st = unmount_command(&mnt).status().unwrap();
    assert!(st.success(), "unmounting failed");
    assert_eq!(m.wait(), 0);
}

crate::on_all_backends!(mount_browse_and_copy);

/// Ctrl-C (SIGINT) unmounts and ends with exit code 0; a missing mountpoint is a clear error.
#[test]
fn ctrl_c_unmounts_and_bad_mountpoints_are_refused() {
    if !fuse_available() {
        return;
    }
    let f = Fixture::new();
    let missing = f.path("missing");
    let out = f.cairn.run(&["mount", s(&missing)]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("not an existing directory"),
        "{}",
        out.stderr
    );

    let mnt = f.path("mnt");
    let m = Mounted::start(&f, &mnt, &["--allow-other"]);
    assert_eq!(names(&mnt.join("snapshots")), Vec::<String>::new());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(m.child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert_eq!(m.wait(), 0);
}
