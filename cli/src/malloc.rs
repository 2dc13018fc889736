//! glibc malloc settings, applied by re-executing once with them in the environment (glibc
//! reads them only at start-up, and setting them in-process would take `unsafe` FFI).
//!
//! Why: with glibc's defaults the initial backup of the 2 GB benchmark peaked at 107–125
//! MiB resident for about 45 MiB of live heap. Each worker thread gets its own arena, and
//! after the first large free glibc raises its mmap threshold to that size, so the 1–8 MiB
//! chunk, compression and pack buffers that workers allocate and free land in those
//! arenas and stay resident. Two arenas, and a fixed 2 MiB mmap threshold (buffers above it
//! go back to the kernel when freed), brought it to 69–73 MiB; wall time within the
//! run-to-run noise of the defaults (7.3–8.1 s against 7.3–7.7 s; a 512 KiB threshold cost
//! 20% in page faults). See docs/internals.md.

/// Settings applied unless the user set them already.
const SETTINGS: [(&str, &str); 2] = [
    ("MALLOC_ARENA_MAX", "2"),
    ("MALLOC_MMAP_THRESHOLD_", "2097152"),
];

/// Marks the re-executed process, so it never loops.
const APPLIED: &str = "CAIRN_MALLOC_SET";

/// Re-executes this program with the settings, once, if they are not in place; on any
/// failure it simply goes on with the defaults.
pub fn tune() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || std::env::var_os(APPLIED).is_some() {
        return;
    }
    let missing: Vec<_> = SETTINGS
        .iter()
        .filter(|(k, _)| std::env::var_os(k).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let mut cmd = std::process::Command::new("/proc/self/exe");
    std::os::unix::process::CommandExt::arg0(&mut cmd, argv0);
    cmd.args(args).env(APPLIED, "1");
    for (k, v) in missing {
        cmd.env(k, v);
    }
    // exec only returns on failure; then the defaults will do.
    let _ = std::os::unix::process::CommandExt::exec(&mut cmd);
}
