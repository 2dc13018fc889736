//! `cairn init`.

use anyhow::Result;
use cairn_core::crypto::keyfile::KdfParams;
use cairn_core::repository::{InitOptions, Repository};

use crate::args::{InitArgs, KdfArgs};
use crate::context::{init_password, Context};
use crate::output;

/// KDF parameters from the flags.
pub fn kdf(a: &KdfArgs) -> KdfParams {
    KdfParams::with_cost(a.kdf_memory_mib.saturating_mul(1024), a.kdf_iterations)
}

/// user@host, for key labels.
pub fn label() -> String {
    let user = std::env::var("USER")
        .unwrap_or_else(|_| cairn_core::source::node::user_name(nix::unistd::geteuid().as_raw()));
    format!("{user}@{}", crate::commands::backup::hostname())
}

/// Creates a repository at the context's location.
pub fn create(
    ctx: &Context,
    kdf_args: &KdfArgs,
    key_in_repo: bool,
    key_out: Option<std::path::PathBuf>,
    zstd_level: i32,
) -> Result<Repository> {
    let backend = ctx.backend()?;
    let password = init_password(ctx)?;
    let opts = InitOptions {
        kdf: kdf(kdf_args),
        key_in_repo,
        key_out,
        label: label(),
        zstd_level,
    };
    Ok(Repository::init(backend, &password, &opts)?)
}

/// Runs `init`.
pub fn run(ctx: &Context, a: &InitArgs) -> Result<i32> {
    if a.no_key_in_repo && a.key_out.is_none() {
        anyhow::bail!("--no-key-in-repo needs --key-out FILE, or the key would be lost");
    }
    let repo = create(
        ctx,
        &a.kdf,
        !a.no_key_in_repo,
        a.key_out.clone(),
        a.compression_level,
    )?;
    let (loc, _) = ctx.location()?;
    output::result(
        ctx,
        &serde_json::json!({"message_type": "initialized", "id": repo.config().repo_id.to_hex(), "repository": loc}),
        || {
            format!("created cairn repository {} at {loc}\n\nKeep the password safe: without it the data cannot be restored.", repo.config().repo_id)
        },
    )?;
    Ok(0)
}
