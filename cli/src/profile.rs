//! Named profiles in a TOML configuration file (`cairn -P laptop-b2 backup`).
//!
//! A profile fills in whatever the command line and environment left unset: flags win
//! over the profile, so a one-off `--limit-upload 0` still works. Unknown keys are an
//! error, because a misspelt `exlude` that silently backs up `.cache` is worse than a
//! refusal.
//!
//! ```toml
//! [profiles.laptop-b2]
//! repository = "b2:my-bucket:/laptop"
//! password-file = "/etc/cairn/password"
//! limit-upload = 2000
//! metrics-file = "/var/lib/node_exporter/textfile/cairn.prom"
//! options = { "b2.region" = "us-west-004" }
//! env = { B2_ACCOUNT_ID = "...", B2_ACCOUNT_KEY = "..." }
//!
//! [profiles.laptop-b2.backup]
//! paths = ["/etc", "/home"]
//! exclude-file = ["/etc/cairn/excludes"]
//! exclude-caches = true
//! tag = ["daily"]
//!
//! [prices.my-minio]               # a custom price profile for `prune --price-profile`
//! storage-gb-month = 0.004
//! egress-gb = 0.01
//! put-per-1000 = 0.005
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use cairn_core::prune::price::{FreeEgress, PriceProfile};
use serde::Deserialize;

use crate::args::{Cli, Command};

/// The file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
    #[serde(default)]
    prices: BTreeMap<String, Prices>,
}

/// A custom price profile (`[prices.NAME]`), in US dollars; absent figures are free.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Prices {
    storage_gb_month: f64,
    #[serde(default)]
    egress_gb: f64,
    /// Free egress per month in GB (per account).
    #[serde(default)]
    free_egress_gb: f64,
    /// Free egress per month as a multiple of the stored amount (B2's rule).
    free_egress_stored_multiple: Option<f64>,
    #[serde(default)]
    retrieval_gb: f64,
    #[serde(default)]
    list_per_1000: f64,
    #[serde(default)]
    head_per_1000: f64,
    #[serde(default)]
    get_per_1000: f64,
    #[serde(default)]
    put_per_1000: f64,
    #[serde(default)]
    delete_per_1000: f64,
    #[serde(default)]
    min_storage_days: f64,
    #[serde(default)]
    min_object_bytes: u64,
    #[serde(default)]
    delete_hides: bool,
    as_of: Option<String>,
}

impl Prices {
    fn profile(self, name: &str) -> PriceProfile {
        PriceProfile {
            name: name.to_owned(),
            as_of: self.as_of.unwrap_or_else(|| "config file".into()),
            storage_gb_month: self.storage_gb_month,
            egress_gb: self.egress_gb,
            egress_free: match self.free_egress_stored_multiple {
                Some(m) => FreeEgress::StoredMultiple(m),
                None if self.free_egress_gb > 0.0 => FreeEgress::Gb(self.free_egress_gb),
                None => FreeEgress::None,
            },
            retrieval_gb: self.retrieval_gb,
            // In RequestClass::ALL order: list, head, get, put, delete.
            per_1000: [
                self.list_per_1000,
                self.head_per_1000,
                self.get_per_1000,
                self.put_per_1000,
                self.delete_per_1000,
            ],
            min_storage_days: self.min_storage_days,
            min_object_bytes: self.min_object_bytes,
            delete_hides: self.delete_hides,
            priced: true,
        }
    }
}

/// The price profile `[prices.NAME]` of the configuration file (`--config` or the default
/// one), if the file exists and has it.
pub fn custom_prices(config: Option<&Path>, name: &str) -> Result<Option<PriceProfile>> {
    let Some(path) = config.map(Path::to_path_buf).or_else(default_path) else {
        return Ok(None);
    };
    if config.is_none() && !path.exists() {
        return Ok(None);
    }
    let mut file = load(&path)?;
    Ok(file.prices.remove(name).map(|p| p.profile(name)))
}

/// One profile.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Profile {
    repository: Option<String>,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
    key_file: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    limit_upload: Option<u64>,
    limit_download: Option<u64>,
    metrics_file: Option<PathBuf>,
    /// Prices `prune` plans with (a built-in name or a `[prices.NAME]` table).
    price_profile: Option<String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    backup: BackupProfile,
}

/// Backup defaults of a profile.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct BackupProfile {
    #[serde(default)]
    paths: Vec<PathBuf>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    iexclude: Vec<String>,
    #[serde(default)]
    exclude_file: Vec<PathBuf>,
    #[serde(default)]
    iexclude_file: Vec<PathBuf>,
    #[serde(default)]
    exclude_caches: bool,
    #[serde(default)]
    exclude_if_present: Vec<String>,
    exclude_larger_than: Option<String>,
    #[serde(default)]
    one_file_system: bool,
    host: Option<String>,
    #[serde(default)]
    tag: Vec<String>,
}

/// `$XDG_CONFIG_HOME/cairn/config.toml`, else `~/.config/cairn/config.toml`.
fn default_path() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("cairn/config.toml"))
}

fn load(path: &Path) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing configuration file {}", path.display()))
}

/// Sets `slot` from the profile unless the command line already did.
fn fill<T>(slot: &mut Option<T>, v: Option<T>) {
    if slot.is_none() {
        *slot = v;
    }
}

/// Applies `-P NAME` (if given) to the parsed command line.
pub fn apply(cli: &mut Cli) -> Result<()> {
    let Some(name) = cli.global.profile.clone() else {
        return Ok(());
    };
    let path = cli
        .global
        .config
        .clone()
        .or_else(default_path)
        .ok_or_else(|| anyhow!("profile {name:?} given but no configuration file (--config)"))?;
    let mut file = load(&path)?;
    let Some(p) = file.profiles.remove(&name) else {
        let known: Vec<_> = file.profiles.keys().cloned().collect();
        bail!(
            "no profile {name:?} in {} (profiles there: {})",
            path.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    };
    // Only variables the environment does not already set: the environment wins, like
    // every flag does. Set before any thread starts (main calls this first).
    for (k, v) in &p.env {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
    let g = &mut cli.global;
    fill(&mut g.repo, p.repository);
    fill(&mut g.password_file, p.password_file);
    fill(&mut g.password_command, p.password_command);
    fill(&mut g.key_file, p.key_file);
    fill(&mut g.cache_dir, p.cache_dir);
    fill(&mut g.limit_upload, p.limit_upload);
    fill(&mut g.limit_download, p.limit_download);
    fill(&mut g.metrics_file, p.metrics_file);
    // Profile options first, so a flag given for the same key (parsed later) wins.
    let mut opts: Vec<String> = p.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
    opts.append(&mut g.options);
    g.options = opts;

    match &mut cli.command {
        Command::Prune(a) => fill(&mut a.tuning.price_profile, p.price_profile.clone()),
        Command::Forget(a) => fill(&mut a.tuning.price_profile, p.price_profile.clone()),
        _ => {}
    }
    if let Command::Backup(a) = &mut cli.command {
        let b = p.backup;
        if a.paths.is_empty() && !a.stdin {
            a.paths = b.paths;
        }
        a.exclude.extend(b.exclude);
        a.iexclude.extend(b.iexclude);
        a.exclude_file.extend(b.exclude_file);
        a.iexclude_file.extend(b.iexclude_file);
        a.exclude_if_present.extend(b.exclude_if_present);
        a.exclude_caches |= b.exclude_caches;
        a.one_file_system |= b.one_file_system;
        if a.exclude_larger_than.is_none() {
            a.exclude_larger_than = b.exclude_larger_than;
        }
        if a.host.is_none() {
            a.host = b.host;
        }
        if a.tag.is_empty() {
            a.tag = b.tag;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(config: &Path, args: &[&str]) -> Result<Cli> {
        let mut all = vec!["cairn", "--config", config.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        let mut c = Cli::try_parse_from(all)?;
        apply(&mut c)?;
        Ok(c)
    }

    #[test]
    fn custom_price_profiles_come_from_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[prices.minio]\nstorage-gb-month = 0.004\nget-per-1000 = 0.001\nfree-egress-gb = 10\n\n[profiles.p]\nrepository = \"/r\"\nprice-profile = \"minio\"\n",
        )
        .expect("write");
        let p = custom_prices(Some(&path), "minio")
            .expect("loads")
            .expect("has it");
        assert_eq!(p.storage_gb_month, 0.004);
        assert_eq!(p.per_1000[2], 0.001);
        assert_eq!(p.egress_free, FreeEgress::Gb(10.0));
        assert!(custom_prices(Some(&path), "other")
            .expect("loads")
            .is_none());
        let c = cli(&path, &["-P", "p", "prune"]).expect("applies");
        let Command::Prune(a) = c.command else {
            panic!("not prune")
        };
        assert_eq!(a.tuning.price_profile.as_deref(), Some("minio"));
        std::fs::write(&path, "[prices.x]\nstorage-gb-month = 1\nbogus = 2\n").expect("write");
        assert!(
            custom_prices(Some(&path), "x").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn profile_fills_what_flags_leave_unset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("config.toml");
        std::fs::write(
            &cfg,
            r#"
[profiles.laptop]
repository = "/srv/repo"
limit-upload = 2000
options = { "sftp.identity" = "/k" }
[profiles.laptop.backup]
paths = ["/etc"]
exclude = [".cache"]
tag = ["daily"]
"#,
        )
        .expect("write");
        let c = cli(&cfg, &["-P", "laptop", "--limit-upload", "5", "backup"]).expect("apply");
        assert_eq!(c.global.repo.as_deref(), Some("/srv/repo"));
        assert_eq!(c.global.limit_upload, Some(5), "the flag wins");
        assert_eq!(c.global.options, vec!["sftp.identity=/k".to_owned()]);
        let Command::Backup(b) = &c.command else {
            panic!("not backup")
        };
        assert_eq!(b.paths, vec![PathBuf::from("/etc")]);
        assert_eq!(b.exclude, vec![".cache".to_owned()]);
        assert_eq!(b.tag, vec!["daily".to_owned()]);

        let e = cli(&cfg, &["-P", "nope", "snapshots"]).expect_err("unknown profile");
        assert!(format!("{e:#}").contains("profiles there: laptop"), "{e:#}");

        std::fs::write(&cfg, "[profiles.x]\nrepositry = \"/x\"\n").expect("write");
        let e = cli(&cfg, &["-P", "x", "snapshots"]).expect_err("typo");
        assert!(format!("{e:#}").contains("repositry"), "{e:#}");
    }
}
