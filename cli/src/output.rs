//! Human or JSON output of a command's result.

use std::io::Write as _;

use crate::context::Context;

/// Standard output for a command's results. Every result goes through here, written (not
/// `println!`'d), so a closed pipe (`cairn snapshots | head -1`) comes back as a
/// `BrokenPipe` error, which `main` turns into a quiet exit 0, instead of a panic.
pub fn stdout() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}

/// Prints `json` with `--json`, otherwise the human text (unless `--quiet`).
///
/// A summary document (`"message_type": "summary"`) also gets the run's storage
/// requests by class and their estimated cost, so a script can see what a run cost.
pub fn result(
    ctx: &Context,
    json: &serde_json::Value,
    human: impl FnOnce() -> String,
) -> std::io::Result<()> {
    if ctx.global.json {
        let mut json = json.clone();
        if json["message_type"] == "summary" {
            let counts = ctx.requests.snapshot();
            json["requests"] = serde_json::to_value(counts).unwrap_or_default();
            if let Some(class) = ctx.cost_class.lock().ok().and_then(|c| *c) {
                let cost = cairn_core::cost::PriceTable::for_class(class).cost(&counts);
                json["estimated_cost_usd"] = cost.into();
            }
        }
        writeln!(stdout(), "{json}")?;
    } else if !ctx.global.quiet {
        writeln!(stdout(), "{}", human())?;
    }
    Ok(())
}

/// Bytes for humans (binary units, like restic).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.3} {}", UNITS[u])
    }
}
