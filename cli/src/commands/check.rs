//! `cairn check`.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use cairn_core::check::{check, CheckOptions, CheckProgress, Subset};

use crate::args::CheckArgs;
use crate::context::Context;
use crate::output;

/// Phases on stderr (stdout carries the result) and Ctrl-C.
struct Phases {
    show: bool,
    cancel: Arc<AtomicBool>,
}

impl CheckProgress for Phases {
    fn phase(&self, name: &str) {
        if self.show {
            eprintln!("checking {name}");
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Runs `check`: exit code 1 if any error was found; warnings alone exit 0.
pub fn run(ctx: &Context, a: &CheckArgs) -> Result<i32> {
    let read_data = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => Some(s.parse::<Subset>()?),
        (None, true) => Some(Subset::All),
        (None, false) => None,
    };
    // Not `ctx.open()`: that loads the index and demotes damaged index files to warnings.
    let repo = ctx.open_without_index()?;
    let progress = Phases {
        show: !ctx.global.quiet && !ctx.global.json,
        cancel: ctx.cancel.clone(),
    };
    let report = check(&repo, &CheckOptions { read_data }, &progress)?;
    let code = if report.is_ok() { 0 } else { 1 };
    if ctx.global.json {
        writeln!(output::stdout(), "{}", serde_json::to_value(&report)?)?;
        return Ok(code);
    }
    // Errors are printed even with --quiet: they are the point of the command.
    for p in &report.errors {
        writeln!(output::stdout(), "error: {p}")?;
    }
    if ctx.global.quiet {
        return Ok(code);
    }
    for p in &report.warnings {
        writeln!(output::stdout(), "warning: {p}")?;
    }
    let read = if report.read_data {
        format!(
            ", {} packs read, {} blobs verified",
            report.packs_read, report.blobs_checked
        )
    } else {
        String::new()
    };
    writeln!(
        output::stdout(),
        "{} snapshots, {} trees, {} packs{read}",
        report.snapshots,
        report.trees,
        report.packs
    )?;
    match report.errors.len() {
        0 => writeln!(output::stdout(), "no errors were found")?,
        1 => writeln!(output::stdout(), "1 error")?,
        n => writeln!(output::stdout(), "{n} errors")?,
    }
    Ok(code)
}
