//! `cairn key add | list | remove | passwd`.

use std::io::Write as _;

use anyhow::Result;

use crate::args::KeyCommand;
use crate::commands::init::{kdf, label};
use crate::context::{new_key_password, Context};
use crate::output;

/// Runs a `key` subcommand.
pub fn run(ctx: &Context, cmd: &KeyCommand) -> Result<i32> {
    let mut repo = ctx.open()?;
    match cmd {
        KeyCommand::Add {
            new_password_file,
            kdf: k,
        } => {
            let pw = new_key_password(new_password_file.as_deref())?;
            let id = repo.add_key(&pw, kdf(k), label())?;
            output::result(ctx, &serde_json::json!({"added": id.to_hex()}), || {
                format!("saved new key {id}")
            })?;
        }
        KeyCommand::List => {
            let keys = repo.list_keys()?;
            if ctx.global.json {
                writeln!(output::stdout(), "{}", serde_json::to_value(&keys)?)?;
            } else if !ctx.global.quiet {
                writeln!(
                    output::stdout(),
                    " {:<34} {:<24} {:<26} KDF",
                    "ID",
                    "Label",
                    "Created"
                )?;
                for k in keys {
                    writeln!(
                        output::stdout(),
                        "{}{:<34} {:<24} {:<26} {} MiB",
                        if k.current { "*" } else { " " },
                        k.id,
                        k.label,
                        k.created,
                        k.kdf_m_kib / 1024
                    )?;
                }
            }
        }
        KeyCommand::Remove { id } => {
            let removed = repo.remove_key(id)?;
            output::result(ctx, &serde_json::json!({"removed": removed}), || {
                format!("removed key {removed}")
            })?;
        }
        KeyCommand::Passwd {
            new_password_file,
            kdf: k,
        } => {
            let pw = new_key_password(new_password_file.as_deref())?;
            let id = repo.change_password(&pw, kdf(k), label())?;
            output::result(ctx, &serde_json::json!({"new_key": id.to_hex()}), || {
                format!("password changed (new key {id})")
            })?;
        }
    }
    Ok(0)
}
