//! The one path layout of a repository, the same for every backend (`docs/format.md`,
//! "Repository layout"). Backends only prepend their root or prefix.

use crate::id::{Id, Id16};

/// The signed repository config.
pub const CONFIG: &str = "config";
/// Directory of the admin key files.
pub const ADMIN_KEYS: &str = "keys/admin";
/// Directory of all hosts' files.
pub const HOSTS: &str = "hosts";
/// Signed prune plans (`admin/plans/<name>`).
pub const PLANS: &str = "admin/plans";
/// Signed sweep records (`admin/sweeps/<name>`).
pub const SWEEPS: &str = "admin/sweeps";
/// The admin's prune lock: only prunes exclude each other; backups never look at it.
pub const PRUNE_LOCK: &str = "admin/lock";

/// Kinds of per-host directories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostDir {
    /// `packs/<xx>/<name>`
    Packs,
    /// `index/<name>`: shared index (group data blobs).
    Index,
    /// `tindex/<name>`: private index (trees and private blobs).
    TreeIndex,
    /// `snapshots/<name>`
    Snapshots,
    /// `sessions/<name>`: backup session markers (prune's view of running backups).
    Sessions,
}

impl HostDir {
    fn as_str(self) -> &'static str {
        match self {
            HostDir::Packs => "packs",
            HostDir::Index => "index",
            HostDir::TreeIndex => "tindex",
            HostDir::Snapshots => "snapshots",
            HostDir::Sessions => "sessions",
        }
    }
}

/// Path of an admin key file.
pub fn admin_key(key_id: &Id16) -> String {
    format!("{ADMIN_KEYS}/{key_id}")
}

/// Directory of one kind of a host's files.
pub fn host_dir(host: &Id16, dir: HostDir) -> String {
    format!("{HOSTS}/{host}/{}", dir.as_str())
}

/// Path of a host's file named by its BLAKE3. Packs fan out over 256 subdirectories
/// so no directory grows past a few thousand entries on a plain filesystem.
pub fn host_file(host: &Id16, dir: HostDir, name: &Id) -> String {
    let hex = name.to_hex();
    match dir {
        HostDir::Packs => format!("{HOSTS}/{host}/packs/{}/{hex}", &hex[..2]),
        _ => format!("{HOSTS}/{host}/{}/{hex}", dir.as_str()),
    }
}

/// Path of an admin file (plan or sweep record) named by its BLAKE3.
pub fn admin_file(dir: &str, name: &Id) -> String {
    format!("{dir}/{}", name.to_hex())
}

/// Splits a listed admin file path into (directory, name): plans and sweep records.
pub fn parse_admin_file(path: &str) -> Option<(&'static str, Id)> {
    let (dir, name) = path.rsplit_once('/')?;
    let dir = [PLANS, SWEEPS].into_iter().find(|d| *d == dir)?;
    Some((dir, name.parse().ok()?))
}

/// Splits a listed path back into (host, dir, name); `None` for anything that is not a
/// well-formed host file (temporary files, foreign junk).
pub fn parse_host_file(path: &str) -> Option<(Id16, HostDir, Id)> {
    let mut parts = path.split('/');
    if parts.next()? != HOSTS {
        return None;
    }
    let host: Id16 = parts.next()?.parse().ok()?;
    let dir = match parts.next()? {
        "packs" => HostDir::Packs,
        "index" => HostDir::Index,
        "tindex" => HostDir::TreeIndex,
        "snapshots" => HostDir::Snapshots,
        "sessions" => HostDir::Sessions,
        _ => return None,
    };
    let mut name = parts.next()?;
    if dir == HostDir::Packs {
        let fan = name;
        name = parts.next()?;
        if name.get(..2) != Some(fan) {
            return None;
        }
    }
    if parts.next().is_some() {
        return None;
    }
    Some((host, dir, name.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        let host = Id16([7; 16]);
        let name = Id::of_bytes(b"x");
        for dir in [
            HostDir::Packs,
            HostDir::Index,
            HostDir::TreeIndex,
            HostDir::Snapshots,
            HostDir::Sessions,
        ] {
            let p = host_file(&host, dir, &name);
            assert_eq!(parse_host_file(&p), Some((host, dir, name)), "{p}");
        }
        assert_eq!(parse_host_file("hosts/zz/index/00"), None);
        assert_eq!(parse_host_file("config"), None);
    }
}
