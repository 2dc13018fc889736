//! `restore --verify`: re-read every restored file and check each chunk against the content
//! key recorded in the snapshot.

use std::io::Read;

use rayon::prelude::*;

use super::collect::Listing;
use super::plan::Action;
use crate::error::Result;
use crate::repository::Repository;
use crate::tree::{NodeKind, SCOPE_PRIVATE};

pub(super) fn verify(
    repo: &Repository,
    listing: &Listing,
    actions: &[Action],
) -> Result<Vec<String>> {
    let failures: Vec<String> = listing
        .entries
        .par_iter()
        .enumerate()
        .filter(|(i, e)| {
            matches!(actions[*i], Action::Write | Action::WriteNew | Action::Skip)
                && e.node.kind == Some(NodeKind::File)
        })
        .filter_map(|(_, e)| check_file(repo, e).err())
        .collect();
    Ok(failures)
}

fn check_file(repo: &Repository, e: &super::collect::Entry) -> std::result::Result<(), String> {
    let path = &e.target;
    let mut f = std::fs::File::open(path).map_err(|err| format!("{}: {err}", path.display()))?;
    let mut buf = Vec::new();
    let mut off = 0u64;
    for c in &e.node.content {
        buf.resize(c.plen as usize, 0);
        f.read_exact(&mut buf)
            .map_err(|err| format!("{}: short at offset {off}: {err}", path.display()))?;
        let (ck, _) = repo.data_key_and_id(&buf, c.scope == SCOPE_PRIVATE);
        let same = match &c.slice {
            // A bundle member is checked by its tag: its own content key, cut short.
            Some(s) => ck[..16] == s.tag,
            None => ck == c.ck,
        };
        if !same {
            return Err(format!(
                "{}: content differs at offset {off}",
                path.display()
            ));
        }
        off += u64::from(c.plen);
    }
    let mut extra = [0u8; 1];
    if f.read(&mut extra)
        .map_err(|err| format!("{}: {err}", path.display()))?
        != 0
    {
        return Err(format!("{}: longer than in the snapshot", path.display()));
    }
    Ok(())
}
