//! What a user at a shell meets. Passwords on a real terminal: `cairn` runs inside a
//! pseudo-terminal (util-linux `script`), as a user typing the README's commands would run
//! it. CI has no terminal of its own, and a prompt that should not appear would otherwise go
//! unseen: stdin is a pipe in every other test, where the prompt is skipped. And the shell
//! completions and man pages `cairn generate` writes.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use crate::support::{bin, remove_env, s, TreeSpec, CHEAP_KDF};

/// How long one step may take before the test fails instead of hanging on a prompt that
/// nobody answers.
const STEP: Duration = Duration::from_secs(120);

/// `cairn` running on its own pseudo-terminal.
struct Terminal {
    child: Child,
    input: Option<ChildStdin>,
    output: Receiver<Vec<u8>>,
    seen: String,
}

impl Terminal {
    /// Starts `cairn <args>` on a new terminal, with `HOME` at `home`, no inherited
    /// CAIRN_* variables and `env` added.
    fn start(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut line = shell_quote(s(&bin()));
        for a in args {
            line.push(' ');
            line.push_str(&shell_quote(a));
        }
        let mut cmd = Command::new("script");
        // -q: no banner; -e: exit with cairn's code; -f: flush each write; /dev/null: no
        // typescript file.
        cmd.args(["-q", "-e", "-f", "-c", &line, "/dev/null"]);
        remove_env(&mut cmd, &["CAIRN_", "XDG_"]);
        cmd.env("HOME", home)
            .env("SHELL", "/bin/sh")
            .env("TERM", "dumb");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("running util-linux `script` (apt-get install bsdutils)");
        let mut out = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Self {
            input: child.stdin.take(),
            child,
            output: rx,
            seen: String::new(),
        }
    }

    /// Waits until the terminal has shown `text` (fails the test after `STEP`).
    fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + STEP;
        while !self.seen.contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(b) => self.seen.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!(
                    "the terminal never showed {text:?}; it showed:\n{}",
                    self.seen
                ),
            }
        }
    }

    /// Types a line, as a user would after a prompt.
    fn type_line(&mut self, text: &str) {
        let input = self.input.as_mut().expect("terminal input");
        input
            .write_all(format!("{text}\r").as_bytes())
            .expect("typing");
        input.flush().expect("typing");
    }

    /// Answers the two new-password prompts.
    fn answer_new_password(&mut self, first: &str, again: &str) {
        self.expect("enter new password: ");
        self.type_line(first);
        self.expect("enter new password again: ");
        self.type_line(again);
    }

    /// Waits for `cairn` to end; returns its exit code and everything the terminal showed.
    fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting") {
                // The reader thread ends when script's output closes.
                while let Ok(b) = self.output.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push_str(&String::from_utf8_lossy(&b));
                }
                drop(self.input.take());
                return (status.code().unwrap_or(-1), self.seen);
            }
            while let Ok(b) = self.output.try_recv() {
                self.seen.push_str(&String::from_utf8_lossy(&b));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "cairn did not finish on the terminal (waiting for a prompt?); it showed:\n{}",
                    self.seen
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn shell_quote(a: &str) -> String {
    format!("'{}'", a.replace('\'', r"'\''"))
}

fn source(root: &Path) -> std::path::PathBuf {
    let src = root.join("src");
    TreeSpec::new()
        .text("etc/hosts", "127.0.0.1 localhost\n")
        .file("data/blob", 300_000, 7)
        .build(&src);
    src
}

/// The README's first command, typed into a terminal: CAIRN_PASSWORD set, no repository
/// given. It must create the default repository and back up without asking anything.
#[test]
fn readme_first_command_on_a_terminal_asks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let env = [("CAIRN_PASSWORD", "choose a good password")];
    let t = Terminal::start(dir.path(), &env, &["backup", s(&src)]);
    let (code, shown) = t.finish();
    assert_eq!(code, 0, "backup on a terminal failed:\n{shown}");
    assert!(
        !shown.contains("password"),
        "it asked for a password:\n{shown}"
    );
    assert!(shown.contains("created the default repository"), "{shown}");
    let repo = dir.path().join(".local/share/cairn/repo");
    assert!(
        repo.join("config").is_file(),
        "no default repository at {}",
        repo.display()
    );

    // The same repository opens with the password on a terminal too.
    let t = Terminal::start(dir.path(), &env, &["snapshots"]);
    let (code, shown) = t.finish();
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains("enter password"), "{shown}");
}

/// `init` on a terminal takes the password from CAIRN_PASSWORD, --password-file or
/// --password-command, exactly as every other command does.
#[test]
fn init_on_a_terminal_uses_the_given_password() {
    let dir = tempfile::tempdir().unwrap();
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, "from-a-file\n").unwrap();
    let pw_arg = format!("--password-file={}", s(&pwfile));
    type Env<'a> = Vec<(&'a str, &'a str)>;
    let cases: [(&str, Env, Vec<&str>); 3] = [
        ("env", vec![("CAIRN_PASSWORD", "from-env")], vec![]),
        ("file", vec![], vec![&pw_arg]),
        (
            "command",
            vec![],
            vec!["--password-command", "echo from-command"],
        ),
    ];
    for (name, env, flags) in cases {
        let repo = dir.path().join(name);
        let mut args = vec!["-r", s(&repo)];
        args.extend(&flags);
        args.push("init");
        args.extend(CHEAP_KDF);
        let (code, shown) = Terminal::start(dir.path(), &env, &args).finish();
        assert_eq!(code, 0, "init with the password from {name}:\n{shown}");
        assert!(
            !shown.contains("enter new password"),
            "{name}: it prompted:\n{shown}"
        );

        let mut args = vec!["-r", s(&repo)];
        args.extend(&flags);
        args.push("snapshots");
        let (code, shown) = Terminal::start(dir.path(), &env, &args).finish();
        assert_eq!(
            code, 0,
            "{name}: the given password does not open it:\n{shown}"
        );
    }
}

/// With nothing given, `init` asks twice without echoing, and the typed password is the
/// repository's; `key add` does the same for the new key unless CAIRN_NEW_PASSWORD or
/// --new-password-file gives it.
#[test]
fn prompts_appear_only_when_nothing_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let typed = "typed-secret-7f3a";
    let mut args = vec!["-r", s(&repo), "init"];
    args.extend(CHEAP_KDF);
    let mut t = Terminal::start(dir.path(), &[], &args);
    t.answer_new_password(typed, typed);
    let (code, shown) = t.finish();
    assert_eq!(code, 0, "init with a typed password:\n{shown}");
    assert!(!shown.contains(typed), "the password was echoed:\n{shown}");

    // Mismatched passwords are refused and create nothing.
    let other = dir.path().join("other");
    let mut args = vec!["-r", s(&other), "init"];
    args.extend(CHEAP_KDF);
    let mut t = Terminal::start(dir.path(), &[], &args);
    t.answer_new_password("one", "two");
    let (code, shown) = t.finish();
    assert_ne!(code, 0, "{shown}");
    assert!(shown.contains("do not match"), "{shown}");
    assert!(
        !other.join("config").exists(),
        "a repository was created anyway"
    );

    // The typed password opens it, typed at the prompt.
    let mut t = Terminal::start(dir.path(), &[], &["-r", s(&repo), "snapshots"]);
    t.expect("enter password for repository: ");
    t.type_line(typed);
    let (code, shown) = t.finish();
    assert_eq!(code, 0, "{shown}");

    // key add: the new password from CAIRN_NEW_PASSWORD, no prompt.
    let env = [
        ("CAIRN_PASSWORD", typed),
        ("CAIRN_NEW_PASSWORD", "second-key"),
    ];
    let mut args = vec!["-r", s(&repo), "key", "add"];
    args.extend(CHEAP_KDF);
    let (code, shown) = Terminal::start(dir.path(), &env, &args).finish();
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains("enter new password"), "{shown}");

    // key add with nothing given for the new key: asked twice.
    let env = [("CAIRN_PASSWORD", typed)];
    let mut t = Terminal::start(dir.path(), &env, &args);
    t.answer_new_password("third-key", "third-key");
    let (code, shown) = t.finish();
    assert_eq!(code, 0, "{shown}");

    for pw in ["second-key", "third-key"] {
        let env = [("CAIRN_PASSWORD", pw)];
        let (code, shown) =
            Terminal::start(dir.path(), &env, &["-r", s(&repo), "snapshots"]).finish();
        assert_eq!(
            code, 0,
            "the key added with {pw:?} does not open it:\n{shown}"
        );
    }
}

/// Off a terminal, `key add` with no new password given fails with what to set; it does not
/// quietly reuse the repository's password for the new key.
#[test]
fn key_add_off_a_terminal_needs_the_new_password() {
    let f = crate::support::Fixture::new();
    let before = f.cairn.ok(&["key", "list"]).stdout;
    let mut args = vec!["key", "add"];
    args.extend(CHEAP_KDF);
    let out = f.cairn.run(&args);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("CAIRN_NEW_PASSWORD"), "{}", out.stderr);
    assert_eq!(
        f.cairn.ok(&["key", "list"]).stdout,
        before,
        "a key was added"
    );
}

/// `cairn generate` writes completions that bash can load and that complete commands and
/// flags, and one man page per command.
#[test]
fn generate_writes_completions_and_man_pages() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let f = crate::support::Cairn::new(p("unused-repo"));
    f.ok(&[
        "generate",
        "--bash-completion",
        s(&p("cairn.bash")),
        "--zsh-completion",
        s(&p("_cairn")),
        "--fish-completion",
        s(&p("cairn.fish")),
        "--man",
        s(&p("man")),
    ]);
    let complete = |words: &str, cword: usize| {
        let script = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; \
             _cairn cairn \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; \
             echo \"${{COMPREPLY[@]}}\"",
            s(&p("cairn.bash"))
        );
        let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(complete("cairn mou", 1).trim(), "mount");
    let flags = complete("cairn backup --exclude-", 2);
    assert!(flags.contains("--exclude-file"), "{flags}");
    assert!(flags.contains("--exclude-caches"), "{flags}");

    let zsh = std::fs::read_to_string(p("_cairn")).unwrap();
    assert!(zsh.starts_with("#compdef cairn"), "{zsh:.100}");
    let fish = std::fs::read_to_string(p("cairn.fish")).unwrap();
    assert!(fish.contains("complete -c cairn"), "{fish:.100}");

    for page in [
        "cairn",
        "cairn-backup",
        "cairn-mount",
        "cairn-key-add",
        "cairn-forget",
    ] {
        let text = std::fs::read_to_string(p("man").join(format!("{page}.1")))
            .unwrap_or_else(|e| panic!("{page}.1: {e}"));
        assert!(
            text.contains(&format!(".TH {page} 1")),
            "{page}: {text:.200}"
        );
    }
    let forget = std::fs::read_to_string(p("man/cairn-forget.1")).unwrap();
    assert!(
        forget.contains("keep\\-daily"),
        "flags missing from the page"
    );
}
