//! `cairn generate`: shell completions and man pages from the same clap definitions that
//! give `--help`, so they can never disagree with it.

use std::path::Path;

use anyhow::{Context as _, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::args::{Cli, GenerateArgs};

/// Runs `generate`.
pub fn run(a: &GenerateArgs) -> Result<i32> {
    for (shell, file) in [
        (Shell::Bash, &a.bash_completion),
        (Shell::Zsh, &a.zsh_completion),
        (Shell::Fish, &a.fish_completion),
    ] {
        if let Some(f) = file {
            // Packaging paths (vendor-completions/) may not exist until a shell is installed.
            if let Some(dir) = f.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let mut out =
                std::fs::File::create(f).with_context(|| format!("creating {}", f.display()))?;
            clap_complete::generate(shell, &mut Cli::command(), "cairn", &mut out);
            eprintln!("wrote {shell} completions to {}", f.display());
        }
    }
    if let Some(dir) = &a.man {
        let n = man_pages(dir)?;
        eprintln!("wrote {n} man pages to {}", dir.display());
    }
    Ok(0)
}

/// Writes `cairn.1` and one page per command (`cairn-backup.1`, `cairn-key-add.1`, ...),
/// as restic and git name theirs. Returns how many were written.
fn man_pages(dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    write_page(dir, "cairn", cmd)
}

fn write_page(dir: &Path, name: &str, cmd: clap::Command) -> Result<usize> {
    let subs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|c| c.get_name() != "help")
        .cloned()
        .collect();
    let path = dir.join(format!("{name}.1"));
    let mut out =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    clap_mangen::Man::new(cmd)
        .source(format!("cairn {}", env!("CARGO_PKG_VERSION")))
        .render(&mut out)
        .with_context(|| format!("writing {}", path.display()))?;
    let mut n = 1;
    for sub in subs {
        let sub_name = format!("{name}-{}", sub.get_name());
        n += write_page(dir, &sub_name, sub)?;
    }
    Ok(n)
}
