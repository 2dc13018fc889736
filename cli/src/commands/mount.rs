//! `cairn mount`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use fuser::MountOption;

use crate::args::MountArgs;
use crate::commands::select;
use crate::context::Context;
use crate::mount::CairnFs;

/// Runs `mount` until the file system is unmounted (Ctrl-C, `fusermount3 -u`, `umount`).
pub fn run(ctx: &Context, a: &MountArgs) -> Result<i32> {
    let mp = &a.mountpoint;
    if !mp.is_dir() {
        bail!("mountpoint {} is not an existing directory", mp.display());
    }
    if !std::path::Path::new("/dev/fuse").exists() {
        bail!("FUSE is not available: /dev/fuse is missing (load the fuse module, install fuse3, or in a container pass /dev/fuse in)");
    }
    let repo = ctx.open()?;
    let snaps: Vec<_> = select::all(&repo)?
        .into_iter()
        .filter(|(_, s)| select::matches(s, &a.filters))
        .collect();
    let n = snaps.len();
    let mut options = vec![
        MountOption::RO,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::FSName("cairn".into()),
        MountOption::Subtype("cairn".into()),
    ];
    if !a.no_default_permissions {
        options.push(MountOption::DefaultPermissions);
    }
    if a.allow_other {
        options.push(MountOption::AllowOther);
    }
    let mut session =
        fuser::Session::new(CairnFs::new(repo, snaps), mp, &options).with_context(|| {
            format!(
                "mounting at {} (FUSE needs /dev/fuse and, for users other than root, \
                 fusermount3 from the fuse3 package{})",
                mp.display(),
                if a.allow_other {
                    "; --allow-other needs user_allow_other in /etc/fuse.conf"
                } else {
                    ""
                }
            )
        })?;
    if !ctx.global.quiet {
        eprintln!(
            "mounted {n} snapshots at {}; Ctrl-C or `fusermount3 -u {}` unmounts",
            mp.display(),
            mp.display()
        );
    }
    let mut unmounter = session.unmount_callable();
    let done = Arc::new(AtomicBool::new(false));
    let (cancel, finished) = (ctx.cancel.clone(), done.clone());
    let shown = mp.display().to_string();
    std::thread::spawn(move || {
        while !cancel.load(Ordering::SeqCst) {
            if finished.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = unmounter.unmount();
        std::thread::sleep(Duration::from_secs(2));
        if !finished.load(Ordering::SeqCst) {
            eprintln!("{shown} is busy: close what uses it (or press Ctrl-C again to leave it mounted but dead)");
        }
    });
    let r = session.run();
    done.store(true, Ordering::SeqCst);
    r.with_context(|| format!("serving {}", mp.display()))?;
    drop(session);
    if !ctx.global.quiet {
        eprintln!("unmounted {}", mp.display());
    }
    Ok(0)
}
