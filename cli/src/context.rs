//! The one value every command gets: global options resolved into a repository location,
//! a password source and an interrupt flag. No global state.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context as _, Result};
use cairn_backends::{
    AccountingBackend, BackendOptions, LimitBackend, Limits, Location, RetryBackend, RetryPolicy,
};
use cairn_core::backend::Backend;
use cairn_core::cost::RequestCounters;
use cairn_core::crypto::Password;
use cairn_core::repository::Repository;

use crate::args::Global;

/// Resolved global options.
pub struct Context {
    /// The options as given.
    pub global: Global,
    /// Set by Ctrl-C.
    pub cancel: Arc<AtomicBool>,
    /// Every storage request of this run, by class (for `--json` and the metrics file).
    pub requests: Arc<RequestCounters>,
    /// Figures the command reports to the metrics file (name → value).
    pub figures: Mutex<BTreeMap<&'static str, f64>>,
    /// Figures with labels of their own: (name, label values by label name, value).
    pub labeled: Mutex<Vec<LabeledFigure>>,
    /// The cost class of the repository's backend, once opened.
    pub cost_class: Mutex<Option<&'static str>>,
}

/// A metric sample with labels of its own: name, (label, value) pairs, value.
pub type LabeledFigure = (&'static str, Vec<(&'static str, String)>, f64);

/// The default repository: used, and created on the first backup, when none is given.
pub fn default_repository() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(data.join("cairn/repo"))
}

impl Context {
    /// The repository location text, and whether it is the implicit default.
    pub fn location(&self) -> Result<(String, bool)> {
        if let Some(r) = &self.global.repo {
            return Ok((r.clone(), false));
        }
        if let Some(f) = &self.global.repository_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading repository file {}", f.display()))?;
            let line = text.lines().next().unwrap_or("").trim().to_owned();
            if line.is_empty() {
                bail!("repository file {} is empty", f.display());
            }
            return Ok((line, false));
        }
        let d = default_repository().ok_or_else(|| {
            anyhow!("no repository given (-r or CAIRN_REPOSITORY) and no HOME for the default")
        })?;
        Ok((d.display().to_string(), true))
    }

    /// A context around parsed options.
    pub fn new(global: Global, cancel: Arc<AtomicBool>) -> Self {
        Self {
            global,
            cancel,
            requests: Arc::default(),
            figures: Mutex::default(),
            labeled: Mutex::default(),
            cost_class: Mutex::default(),
        }
    }

    /// Records a figure with labels for the metrics file (one sample per label set).
    pub fn labeled_figure(
        &self,
        name: &'static str,
        labels: Vec<(&'static str, String)>,
        value: f64,
    ) {
        if let Ok(mut f) = self.labeled.lock() {
            f.push((name, labels, value));
        }
    }

    /// Records a figure for the metrics file.
    pub fn figure(&self, name: &'static str, value: f64) {
        if let Ok(mut f) = self.figures.lock() {
            f.insert(name, value);
        }
    }

    /// The backend of the repository location.
    pub fn backend(&self) -> Result<Arc<dyn Backend>> {
        let (loc, _) = self.location()?;
        let b = self.open_location(&loc)?;
        if let Ok(mut c) = self.cost_class.lock() {
            *c = Some(b.properties().cost_class);
        }
        Ok(b)
    }

    /// Opens any location through the decorators, outermost first: retry → limit →
    /// accounting → backend. `-o retry.attempts=N` and `-o retry.max-wait=SECONDS` tune
    /// the retries; every other `-o` goes to the backend.
    pub fn open_location(&self, loc: &str) -> Result<Arc<dyn Backend>> {
        let parsed = Location::parse(loc)?;
        let (retry, backend_opts): (Vec<&str>, Vec<&str>) = self
            .global
            .options
            .iter()
            .map(String::as_str)
            .partition(|o| o.starts_with("retry."));
        let opts = BackendOptions::parse(backend_opts)?;
        let mut policy = RetryPolicy::default();
        for (k, v) in BackendOptions::parse(retry)?.pairs() {
            match k {
                "retry.attempts" => {
                    policy.attempts = v
                        .parse::<u32>()
                        .with_context(|| format!("-o retry.attempts={v}: not a number"))?
                        .max(1)
                }
                "retry.max-wait" => {
                    let secs: f64 = v
                        .parse()
                        .with_context(|| format!("-o retry.max-wait={v}: not a number"))?;
                    policy.max = std::time::Duration::from_secs_f64(secs.max(0.0));
                    policy.base = policy.base.min(policy.max);
                }
                _ => bail!("unknown option -o {k} (known: retry.attempts, retry.max-wait)"),
            }
        }
        let raw = parsed
            .open(&opts)
            .with_context(|| format!("opening {}", cairn_backends::url::redact(loc)))?;
        let mut counted = AccountingBackend::new(raw, self.requests.clone());
        if let Some(p) = &self.global.request_log {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening request log {}", p.display()))?;
            counted = counted.with_log(f);
        }
        let limited = LimitBackend::new(
            counted,
            Limits {
                connections: None,
                upload_kib: self.global.limit_upload.filter(|&k| k > 0),
                download_kib: self.global.limit_download.filter(|&k| k > 0),
            },
        );
        let quiet = self.global.quiet;
        let retried =
            RetryBackend::new(limited, policy).with_notify(Arc::new(move |e, attempt, wait| {
                if !quiet {
                    eprintln!(
                        "warning: {e}; retrying in {:.1}s (attempt {} failed)",
                        wait.as_secs_f64(),
                        attempt
                    );
                }
            }));
        Ok(Arc::new(retried))
    }

    /// The password the user gave without a prompt: CAIRN_PASSWORD, else --password-file,
    /// else --password-command.
    pub fn given_password(&self) -> Result<Option<Password>> {
        if let Ok(p) = std::env::var("CAIRN_PASSWORD") {
            return Ok(Some(Password::new(p)));
        }
        if let Some(f) = &self.global.password_file {
            return read_password_file(f).map(Some);
        }
        if let Some(cmd) = &self.global.password_command {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| format!("running --password-command {cmd:?}"))?;
            if !out.status.success() {
                bail!("--password-command {cmd:?} failed with {}", out.status);
            }
            let text = String::from_utf8(out.stdout)
                .context("--password-command printed something that is not UTF-8")?;
            return Ok(Some(Password::new(
                text.lines().next().unwrap_or("").to_owned(),
            )));
        }
        Ok(None)
    }

    /// The password, as given (see `given_password`), or else asked for on the terminal.
    pub fn password(&self, prompt: &str) -> Result<Password> {
        match self.given_password()? {
            Some(p) => Ok(p),
            None => prompt_password(prompt),
        }
    }

    /// Opens the repository, unlocking a key with the password, without loading the index
    /// (`check` reads the index files itself and reports damaged ones as errors).
    pub fn open_without_index(&self) -> Result<Repository> {
        let backend = self.backend()?;
        let password = self.password("enter password for repository: ")?;
        let local = backend.properties().is_local;
        let mut repo = Repository::open(backend, &password, self.global.key_file.as_deref())?;
        // A local repository is its own cache; an explicit --cache-dir turns it on anyway.
        if !self.global.no_cache && (!local || self.global.cache_dir.is_some()) {
            if let Some(root) = self.cache_root() {
                repo.enable_cache(&root);
            }
        }
        Ok(repo)
    }

    /// `--cache-dir`, else `$XDG_CACHE_HOME/cairn`, else `~/.cache/cairn`.
    pub fn cache_root(&self) -> Option<PathBuf> {
        if let Some(d) = &self.global.cache_dir {
            return Some(d.clone());
        }
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("cairn"))
    }

    /// Opens the repository, unlocking a key with the password.
    pub fn open(&self) -> Result<Repository> {
        let mut repo = self.open_without_index()?;
        let bad = repo.load_index()?;
        for e in bad {
            eprintln!("warning: {e}");
        }
        Ok(repo)
    }
}

/// Reads a password file's first line.
pub fn read_password_file(f: &std::path::Path) -> Result<Password> {
    let text = std::fs::read_to_string(f)
        .with_context(|| format!("reading password file {}", f.display()))?;
    Ok(Password::new(text.lines().next().unwrap_or("").to_owned()))
}

/// Reads a password from the terminal without echo; from a pipe, reads one line.
pub fn prompt_password(prompt: &str) -> Result<Password> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("no password given: set CAIRN_PASSWORD, --password-file or --password-command (standard input is not a terminal)");
    }
    let tty = std::fs::File::open("/dev/tty").context("opening the terminal")?;
    let fd = std::os::fd::AsFd::as_fd(&tty);
    let old = nix::sys::termios::tcgetattr(fd).context("reading terminal settings")?;
    let mut quiet = old.clone();
    quiet
        .local_flags
        .remove(nix::sys::termios::LocalFlags::ECHO);
    nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, &quiet)
        .context("hiding input")?;
    // The prompt only once echo is off: a user (or a test) typing as soon as it shows
    // must not see the password echoed (seen once in the pseudo-terminal test).
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    let r = std::io::BufReader::new(&tty).read_line(&mut line);
    let _ = nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, &old);
    eprintln!();
    r.context("reading the password")?;
    Ok(Password::new(
        line.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

/// A new repository's password: the one given as for any command (CAIRN_PASSWORD,
/// --password-file, --password-command), else asked for twice on the terminal.
pub fn init_password(ctx: &Context) -> Result<Password> {
    match ctx.given_password()? {
        Some(p) => Ok(p),
        None => prompt_new_password(),
    }
}

/// The password for a new key (`key add`, `key passwd`): --new-password-file, else
/// CAIRN_NEW_PASSWORD, else asked for twice on the terminal. The repository's own password
/// is never reused for it: a second key with the same password would be no second key.
pub fn new_key_password(file: Option<&std::path::Path>) -> Result<Password> {
    if let Some(f) = file {
        return read_password_file(f);
    }
    if let Ok(p) = std::env::var("CAIRN_NEW_PASSWORD") {
        return Ok(Password::new(p));
    }
    if !std::io::stdin().is_terminal() {
        bail!("no new password given: set CAIRN_NEW_PASSWORD or --new-password-file (standard input is not a terminal)");
    }
    prompt_new_password()
}

fn prompt_new_password() -> Result<Password> {
    let a = prompt_password("enter new password: ")?;
    let b = prompt_password("enter new password again: ")?;
    if a.expose() != b.expose() {
        bail!("the passwords do not match");
    }
    Ok(a)
}
