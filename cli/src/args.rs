//! Command-line definitions (clap derive): the single source of `--help`.

use std::path::PathBuf;

use cairn_core::forget::{Count, GroupBy, Span, TagList};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// cairn: deduplicating, encrypted backups.
#[derive(Parser, Debug)]
#[command(name = "cairn", version, about, propagate_version = true)]
pub struct Cli {
    /// Options of every command.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every command.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Repository location: /path, local:/path, sftp:user@host:/path, sftp://user@host:port/path,
    /// s3:https://endpoint/bucket/prefix or b2:bucket:/prefix.
    #[arg(short = 'r', long = "repo", env = "CAIRN_REPOSITORY", global = true)]
    pub repo: Option<String>,
    /// Read the repository location from a file.
    #[arg(long, env = "CAIRN_REPOSITORY_FILE", global = true)]
    pub repository_file: Option<PathBuf>,
    /// Read the password from a file (first line).
    #[arg(long, env = "CAIRN_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Run a command and use its first line of output as the password.
    #[arg(long, env = "CAIRN_PASSWORD_COMMAND", global = true)]
    pub password_command: Option<String>,
    /// Use this key file instead of the key files in the repository.
    #[arg(long, env = "CAIRN_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,
    /// Directory for the local cache.
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Do not use a local cache.
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Backend option KEY=VALUE (repeatable), e.g. -o sftp.identity=~/.ssh/backup_key.
    #[arg(short = 'o', long = "option", global = true, value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Limit uploads to this many KiB/s.
    #[arg(long, value_name = "KIB_PER_SEC", global = true)]
    pub limit_upload: Option<u64>,
    /// Limit downloads to this many KiB/s.
    #[arg(long, value_name = "KIB_PER_SEC", global = true)]
    pub limit_download: Option<u64>,
    /// After the command, write Prometheus metrics to this file (atomically), for
    /// node_exporter's textfile collector.
    #[arg(long, env = "CAIRN_METRICS_FILE", value_name = "PATH", global = true)]
    pub metrics_file: Option<PathBuf>,
    /// Append one line per storage request to this file (time, class, path, bytes, outcome).
    #[arg(long, env = "CAIRN_REQUEST_LOG", value_name = "PATH", global = true)]
    pub request_log: Option<PathBuf>,
    /// Configuration file with named profiles (default ~/.config/cairn/config.toml).
    #[arg(long, env = "CAIRN_CONFIG", value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// Use the named profile of the configuration file.
    #[arg(short = 'P', long, env = "CAIRN_PROFILE", global = true)]
    pub profile: Option<String>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// Commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a repository.
    Init(InitArgs),
    /// Back up files and directories.
    Backup(BackupArgs),
    /// List snapshots.
    Snapshots(SnapshotsArgs),
    /// List the files of a snapshot.
    Ls(LsArgs),
    /// Find files in snapshots by name pattern.
    Find(FindArgs),
    /// Show what changed between two snapshots.
    Diff(DiffArgs),
    /// Write one file of a snapshot to standard output.
    Dump(DumpArgs),
    /// Show repository or snapshot statistics.
    Stats(StatsArgs),
    /// Restore a snapshot.
    Restore(RestoreArgs),
    /// Remove snapshots by a retention policy or by id (the data stays until prune).
    Forget(ForgetArgs),
    /// Check the repository's integrity.
    Check(CheckArgs),
    /// Manage the key files (passwords).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Print a decrypted repository structure (for debugging).
    Cat(CatArgs),
    /// Copy the repository's files to another location (no password needed).
    Mirror(MirrorArgs),
    /// Remove data no snapshot uses, in two phases that never stop a backup, doing only
    /// what pays back under the storage's prices.
    Prune(PruneArgs),
    /// Remove the prune lock a prune that died on another machine left behind (backups
    /// never take locks).
    Unlock,
    /// Rebuild what can be rebuilt from what survives: the index, damaged snapshots.
    #[command(subcommand)]
    Repair(RepairCommand),
    /// Browse the repository as a read-only file system (FUSE).
    Mount(MountArgs),
    /// Write shell completions and man pages.
    Generate(GenerateArgs),
}

/// `generate`: restic's command, for packagers.
#[derive(Args, Debug)]
#[command(arg_required_else_help = true)]
pub struct GenerateArgs {
    /// Write bash completions to this file.
    #[arg(long, value_name = "FILE")]
    pub bash_completion: Option<PathBuf>,
    /// Write zsh completions to this file.
    #[arg(long, value_name = "FILE")]
    pub zsh_completion: Option<PathBuf>,
    /// Write fish completions to this file.
    #[arg(long, value_name = "FILE")]
    pub fish_completion: Option<PathBuf>,
    /// Write man pages (cairn.1 and one per command) into this directory.
    #[arg(long, value_name = "DIR")]
    pub man: Option<PathBuf>,
}

/// `mount`.
#[derive(Args, Debug)]
pub struct MountArgs {
    /// Where to mount (an existing empty directory).
    pub mountpoint: PathBuf,
    /// Let users other than the one mounting see the files (needs user_allow_other in
    /// /etc/fuse.conf unless run as root); permissions are still checked by the kernel.
    #[arg(long)]
    pub allow_other: bool,
    /// Do not let the kernel check permissions against each file's mode and owner.
    #[arg(long)]
    pub no_default_permissions: bool,
    /// Only snapshots of these filters appear.
    #[command(flatten)]
    pub filters: Filters,
}

/// `repair` subcommands.
#[derive(Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild every host's index from the pack headers (holds the prune lock).
    Index {
        /// Only report what would change; write and remove nothing.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Rewrite each snapshot that references lost data without it (tagged "repaired";
    /// run `repair index` first).
    Snapshots {
        /// Only report what would change; write and remove nothing.
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// Remove each original snapshot once its repaired copy is written.
        #[arg(long)]
        forget: bool,
    },
}

/// `prune` options.
#[derive(Args, Debug, Clone)]
pub struct PruneArgs {
    /// Only plan and price; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// How to prune.
    #[command(flatten)]
    pub tuning: PruneTuning,
}

/// How `prune` (and `forget --prune`) prunes.
#[derive(Args, Debug, Clone)]
pub struct PruneTuning {
    /// Mark and sweep at once, for a repository only this machine writes to; refused
    /// while any backup session is running.
    #[arg(long)]
    pub instant: bool,
    /// How long a plan must wait before it is swept, counted from when it was published
    /// (e.g. 24h, 90m, 2d).
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub grace: String,
    /// A backup whose last heartbeat is older than this is taken for dead.
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    pub dead_session: String,
    /// Repack a partly used pack only if what it costs now is saved back within this time.
    #[arg(long, value_name = "DURATION", default_value = "90d")]
    pub max_payback: String,
    /// Download at most this much for repacking (e.g. 2G).
    #[arg(long, value_name = "SIZE")]
    pub max_download: Option<String>,
    /// Repack at most this much (pack bytes).
    #[arg(long, value_name = "SIZE")]
    pub max_repack: Option<String>,
    /// restic's rule instead of payback: repack until unused space is at most this share
    /// of the repository (e.g. 5%).
    #[arg(long, value_name = "PERCENT")]
    pub max_unused: Option<String>,
    /// Prices to plan with: b2, s3-standard, s3-onezone-ia, wasabi, local, sftp
    /// (default: from the repository's backend).
    #[arg(long, value_name = "NAME")]
    pub price_profile: Option<String>,
    /// Egress of this month already used by other downloads (restores, other buckets of the
    /// account), e.g. 80G: prune prices its downloads after it. Set it high (1T) to plan as
    /// if there were no free egress at all.
    #[arg(long, value_name = "SIZE")]
    pub egress_used: Option<String>,
    /// The bucket's lifecycle rule removes deleted (hidden) file versions, so a delete frees
    /// space (B2 through its S3 API only hides files: set "keep only the last version").
    #[arg(long)]
    pub hidden_versions_expire: bool,
}

/// `mirror` options.
#[derive(Args, Debug, Clone)]
pub struct MirrorArgs {
    /// Target location (any repository URL).
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Remove files at the target that are gone from the source.
    #[arg(long)]
    pub delete: bool,
    /// Only show what would be copied and removed.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// KDF cost options.
#[derive(Args, Debug, Clone)]
pub struct KdfArgs {
    /// Argon2id memory in MiB (at least 19).
    #[arg(long, default_value_t = 64)]
    pub kdf_memory_mib: u32,
    /// Argon2id iterations.
    #[arg(long, default_value_t = 3)]
    pub kdf_iterations: u32,
}

/// `init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Keep the admin key file only in this local file, not in the repository.
    #[arg(long)]
    pub no_key_in_repo: bool,
    /// Also write the admin key file here.
    #[arg(long)]
    pub key_out: Option<PathBuf>,
    /// KDF cost.
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// zstd level for the repository (0 = no compression; 1..=19).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub compression_level: i32,
}

/// Snapshot filters shared by several commands.
#[derive(Args, Debug, Clone, Default)]
pub struct Filters {
    /// Only snapshots of this host.
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with this tag (comma-separated tags must all be present).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only snapshots that include this path.
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// `backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up.
    pub paths: Vec<PathBuf>,
    /// Exclude a pattern.
    #[arg(short = 'e', long)]
    pub exclude: Vec<String>,
    /// Exclude a pattern, ignoring case.
    #[arg(long)]
    pub iexclude: Vec<String>,
    /// Read exclude patterns from a file.
    #[arg(long)]
    pub exclude_file: Vec<PathBuf>,
    /// Read case-insensitive exclude patterns from a file.
    #[arg(long)]
    pub iexclude_file: Vec<PathBuf>,
    /// Exclude directories with a valid CACHEDIR.TAG.
    #[arg(long)]
    pub exclude_caches: bool,
    /// Exclude directories containing this file (NAME[:HEADER]).
    #[arg(long)]
    pub exclude_if_present: Vec<String>,
    /// Exclude files larger than this (e.g. 1G, 500M).
    #[arg(long)]
    pub exclude_larger_than: Option<String>,
    /// Do not cross file systems.
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Host name to record (default: this machine's).
    #[arg(long)]
    pub host: Option<String>,
    /// Tags to add (repeatable, comma-separated).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Snapshot to compare with for change detection (default: latest of same host and paths).
    #[arg(long)]
    pub parent: Option<String>,
    /// Read every file, ignoring the parent.
    #[arg(long)]
    pub force: bool,
    /// Do not write anything.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Back up standard input.
    #[arg(long)]
    pub stdin: bool,
    /// File name for --stdin.
    #[arg(long, default_value = "stdin")]
    pub stdin_filename: String,
    /// Time of the snapshot, local time "YYYY-MM-DD HH:MM:SS" (default: now).
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
}

/// `forget`: restic's flags, with the same meaning.
#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Forget exactly these snapshots (ids or prefixes) instead of applying a policy.
    pub ids: Vec<String>,
    /// Keep the last N snapshots ("unlimited" for all).
    #[arg(short = 'l', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_last: Option<Count>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(short = 'H', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_hourly: Option<Count>,
    /// Keep the newest snapshot of each of the last N days that have one.
    #[arg(short = 'd', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_daily: Option<Count>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one.
    #[arg(short = 'w', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_weekly: Option<Count>,
    /// Keep the newest snapshot of each of the last N months that have one.
    #[arg(short = 'm', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_monthly: Option<Count>,
    /// Keep the newest snapshot of each of the last N years that have one.
    #[arg(short = 'y', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_yearly: Option<Count>,
    /// Keep snapshots newer than DURATION (e.g. 1y5m7d2h) before the newest snapshot.
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<Span>,
    /// Keep the newest snapshot of each hour within DURATION of the newest snapshot.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_hourly: Option<Span>,
    /// Keep the newest snapshot of each day within DURATION of the newest snapshot.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_daily: Option<Span>,
    /// Keep the newest snapshot of each week within DURATION of the newest snapshot.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_weekly: Option<Span>,
    /// Keep the newest snapshot of each month within DURATION of the newest snapshot.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_monthly: Option<Span>,
    /// Keep the newest snapshot of each year within DURATION of the newest snapshot.
    #[arg(long, value_name = "DURATION")]
    pub keep_within_yearly: Option<Span>,
    /// Keep snapshots with all of these tags (TAG[,TAG...]; repeatable: any list).
    #[arg(long = "keep-tag", value_name = "TAGLIST")]
    pub keep_tags: Vec<TagList>,
    /// Only consider snapshots passing these filters.
    #[command(flatten)]
    pub filters: Filters,
    /// Apply the policy to each group separately: host, paths and/or tags, comma-separated
    /// ('' for one group of all snapshots).
    #[arg(short = 'g', long, value_name = "FIELDS", default_value = "host,paths")]
    pub group_by: GroupBy,
    /// Only show what would be removed.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Prune afterwards (with the prune options below; a dry run prunes dry).
    #[arg(long)]
    pub prune: bool,
    /// How `--prune` prunes.
    #[command(flatten)]
    pub tuning: PruneTuning,
}

/// `snapshots`.
#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    /// Filters.
    #[command(flatten)]
    pub filters: Filters,
    /// Only the latest N snapshots per host and paths.
    #[arg(long)]
    pub latest: Option<usize>,
    /// Snapshot ids or prefixes to show.
    pub ids: Vec<String>,
}

/// `ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot (id, prefix or "latest").
    pub snapshot: String,
    /// Only entries below these paths.
    // Own id: the flattened `Filters` already uses `paths` (for `--path`).
    #[arg(id = "ls_paths", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Long listing (mode, owner, size, time).
    #[arg(short, long)]
    pub long: bool,
    /// Recurse below the given paths (default when no path is given).
    #[arg(long)]
    pub recursive: bool,
    /// Filters for "latest".
    #[command(flatten)]
    pub filters: Filters,
}

/// `find`.
#[derive(Args, Debug)]
pub struct FindArgs {
    /// Name patterns (glob; matched against the file name, or the full path if it contains '/').
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Only in these snapshots.
    #[arg(short, long = "snapshot")]
    pub snapshots: Vec<String>,
    /// Case-insensitive.
    #[arg(short, long)]
    pub ignore_case: bool,
    /// Filters.
    #[command(flatten)]
    pub filters: Filters,
}

/// `diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// First snapshot.
    pub first: String,
    /// Second snapshot.
    pub second: String,
    /// Also report metadata-only changes.
    #[arg(long)]
    pub metadata: bool,
}

/// `dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Snapshot.
    pub snapshot: String,
    /// Path of a file in the snapshot.
    pub path: PathBuf,
    /// Filters for "latest".
    #[command(flatten)]
    pub filters: Filters,
}

/// `stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Snapshots (default: all).
    pub snapshots: Vec<String>,
    /// restore-size (default), files-by-contents, raw-data.
    #[arg(long, default_value = "restore-size")]
    pub mode: String,
    /// Filters.
    #[command(flatten)]
    pub filters: Filters,
}

/// Existing-file policy of `restore`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverwriteArg {
    /// Always replace.
    Always,
    /// Replace when size or mtime differ.
    IfChanged,
    /// Never replace.
    Never,
}

/// `restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot, optionally with a path inside it: `latest:/home/simon/photos`.
    pub snapshot: String,
    /// Directory to restore into.
    #[arg(short, long)]
    pub target: PathBuf,
    /// Restore only matching paths.
    #[arg(short, long)]
    pub include: Vec<String>,
    /// Skip matching paths.
    #[arg(short, long)]
    pub exclude: Vec<String>,
    /// Restore only matching paths, ignoring case.
    #[arg(long)]
    pub iinclude: Vec<String>,
    /// Skip matching paths, ignoring case.
    #[arg(long)]
    pub iexclude: Vec<String>,
    /// Check restored files against the snapshot.
    #[arg(long)]
    pub verify: bool,
    /// Existing files.
    #[arg(long, value_enum, default_value = "always")]
    pub overwrite: OverwriteArg,
    /// Delete files in the target that are not in the snapshot.
    #[arg(long)]
    pub delete: bool,
    /// Only show what would be restored.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Filters for "latest".
    #[command(flatten)]
    pub filters: Filters,
}

/// `check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Also read and verify every pack.
    #[arg(long)]
    pub read_data: bool,
    /// Read a subset of packs: "n/m" or "p%".
    #[arg(long)]
    pub read_data_subset: Option<String>,
}

/// `key` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Add a password (a new key file for the same secret).
    Add {
        /// Read the new password from this file (else CAIRN_NEW_PASSWORD, else a prompt).
        #[arg(long)]
        new_password_file: Option<PathBuf>,
        /// KDF cost.
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// List key files.
    List,
    /// Remove a key file.
    Remove {
        /// Key id or prefix.
        id: String,
    },
    /// Change the password of the key in use.
    Passwd {
        /// Read the new password from this file (else CAIRN_NEW_PASSWORD, else a prompt).
        #[arg(long)]
        new_password_file: Option<PathBuf>,
        /// KDF cost.
        #[command(flatten)]
        kdf: KdfArgs,
    },
}

/// What `cat` prints.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatKind {
    /// The config.
    Config,
    /// A snapshot.
    Snapshot,
    /// An index file.
    Index,
    /// A tree.
    Tree,
    /// A pack's header.
    PackHeader,
}

/// `cat`.
#[derive(Args, Debug)]
pub struct CatArgs {
    /// What to print.
    #[arg(value_enum)]
    pub kind: CatKind,
    /// Its id (or prefix; "latest" for snapshots; snapshot[:path] for trees).
    pub id: Option<String>,
}
