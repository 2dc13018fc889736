//! The network to a real server dropping mid-backup: retries ride out a short outage; a
//! long one fails cleanly; the next backup resumes and the repository checks clean.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::proxy::Proxy;
use crate::servers::{runner, Remote};
use crate::support::{assert_same, bytes, s, Cairn, Fixture};

/// A runner whose repository URL goes through a fresh proxy to the real server.
pub(crate) fn via_proxy(remote: Remote, dir: &Path) -> Option<(Cairn, Proxy)> {
    let (mut c, _) = runner(remote, dir)?;
    let url = c.repo.clone()?.to_str()?.to_owned();
    let at = url.find("127.0.0.1:")? + "127.0.0.1:".len();
    let digits: String = url[at..].chars().take_while(char::is_ascii_digit).collect();
    let server_port: u16 = digits.parse().ok()?;
    let proxy = Proxy::start(([127, 0, 0, 1], server_port).into());
    let here = format!("127.0.0.1:{}", proxy.port());
    c.repo = Some(
        url.replace(&format!("127.0.0.1:{server_port}"), &here)
            .into(),
    );
    if remote == Remote::Sftp {
        // The host key is the server's, but known_hosts entries name the port.
        let known = std::env::var("CAIRN_TEST_SFTP_KNOWN_HOSTS").ok()?;
        let text = std::fs::read_to_string(known).ok()?.replace(
            &format!("[127.0.0.1]:{server_port}"),
            &format!("[127.0.0.1]:{}", proxy.port()),
        );
        let file = dir.join("known_hosts");
        std::fs::write(&file, text).ok()?;
        for o in &mut c.opts {
            if o.to_str()
                .is_some_and(|v| v.starts_with("sftp.known-hosts="))
            {
                *o = format!("sftp.known-hosts={}", file.display()).into();
            }
        }
    }
    Some((c, proxy))
}

pub(crate) fn with_retries(c: &Cairn, attempts: u32, max_wait: f64) -> Cairn {
    let mut c = c.clone();
    for o in [
        format!("retry.attempts={attempts}"),
        format!("retry.max-wait={max_wait}"),
    ] {
        c.opts.push("-o".into());
        c.opts.push(o.into());
    }
    c
}

fn network_drops_mid_backup(remote: Remote) {
    let dir = tempfile::tempdir().unwrap();
    let Some((mut c, proxy)) = via_proxy(remote, dir.path()) else {
        return;
    };
    if remote == Remote::S3 {
        // Packs go up as multipart uploads, so the drop lands mid-multipart.
        for o in ["s3.multipart-threshold=5M", "s3.part-size=5M"] {
            c.opts.push("-o".into());
            c.opts.push(o.into());
        }
    }
    c.init();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..6u64 {
        std::fs::write(src.join(format!("f{i}.bin")), bytes(100 + i, 8 << 20)).unwrap();
    }

    // A long outage: the retries give up and the backup fails cleanly, with no snapshot.
    let child = with_retries(&c, 3, 0.2)
        .command(&["backup", s(&src)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proxy.wait_upstream(10 << 20, Duration::from_secs(120));
    proxy.set_down(true);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("retrying"),
        "no retry was reported: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    proxy.set_down(false);
    assert_eq!(c.json(&["snapshots"]).as_array().map(Vec::len), Some(0));

    // The next backup carries on; the repository checks clean and restores.
    c.ok(&["backup", s(&src)]);
    c.ok(&["check", "--read-data"]);
    let target = dir.path().join("restored");
    c.ok(&["restore", "latest", "--target", s(&target)]);
    assert_same(&src, &Fixture::restored(&target, &src), false);

    // A short outage mid-upload is ridden out by the retries.
    std::fs::write(src.join("g.bin"), bytes(200, 24 << 20)).unwrap();
    let before = proxy.upstream_bytes();
    let child = with_retries(&c, 20, 0.5)
        .command(&["backup", s(&src)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proxy.wait_upstream(before + (6 << 20), Duration::from_secs(120));
    proxy.set_down(true);
    std::thread::sleep(Duration::from_millis(800));
    proxy.set_down(false);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("retrying"),
        "the outage was not noticed: {stderr}"
    );
    c.ok(&["check", "--read-data"]);
    assert_eq!(c.json(&["snapshots"]).as_array().map(Vec::len), Some(2));
}

crate::on_backend!(Sftp => sftp; network_drops_mid_backup);
crate::on_backend!(S3 => s3; network_drops_mid_backup);
