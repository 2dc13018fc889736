//! Human or JSON output of a command's result.

use crate::context::Context;

/// Prints `json` with `--json`, otherwise the human text (unless `--quiet`).
pub fn result(ctx: &Context, json: &serde_json::Value, human: impl FnOnce() -> String) {
    if ctx.global.json {
        println!("{json}");
    } else if !ctx.global.quiet {
        println!("{}", human());
    }
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
