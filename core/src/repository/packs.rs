//! Pack headers: reading them back, and re-indexing packs an interrupted backup uploaded
//! but never listed in an index file.

use super::Repository;
use crate::backend::layout::{self, HostDir};
use crate::crypto::sealed::FileType;
use crate::error::{Error, Result};
use crate::id::{Id, Id16};
use crate::index::{IndexFile, IndexPack};
use crate::pack::reader::{decode_header, locate_header, TAIL_GUESS};
use crate::pack::PackHeader;

impl Repository {
    /// Reads and opens the header of pack `name` under `host` (one ranged read of the tail,
    /// a second one only for a very large header).
    pub fn read_pack_header(&self, host: Id16, name: &Id, len: u64) -> Result<PackHeader> {
        let path = layout::host_file(&host, HostDir::Packs, name);
        let bad = |r: String| Error::corrupt("pack", path.clone(), r);
        let guess = TAIL_GUESS.min(len);
        let tail = self.backend.read(&path, Some(len - guess..len))?;
        let (hoff, hlen) = locate_header(&tail, len).map_err(bad)?;
        let sealed = if hoff >= len - guess {
            let at = usize::try_from(hoff - (len - guess)).map_err(|_| bad("offset".into()))?;
            tail[at..at + hlen as usize].to_vec()
        } else {
            self.backend.read(&path, Some(hoff..hoff + hlen))?
        };
        // The header is sealed under the group key for group data packs and the host key
        // otherwise; the ftype byte says which before anything is decrypted.
        let ftype = match sealed.get(4) {
            Some(4) => FileType::GroupPackHeader,
            Some(5) => FileType::HostPackHeader,
            _ => return Err(bad("unknown pack header type".into())),
        };
        let plain =
            self.open_file_as(&self.host_keys_of(host), ftype, Some(host), &path, &sealed)?;
        let h = decode_header(&plain, hoff).map_err(bad)?;
        let expected = if h.kind == crate::pack::PackKind::Group {
            FileType::GroupPackHeader
        } else {
            FileType::HostPackHeader
        };
        if expected != ftype {
            return Err(bad(
                "pack kind does not match the key that sealed its header".into(),
            ));
        }
        Ok(h)
    }

    /// Lists this host's packs with their sizes.
    pub fn list_packs(&self) -> Result<Vec<(Id, u64)>> {
        let mut out = Vec::new();
        for item in self
            .backend
            .list(&layout::host_dir(&self.host.host_id, HostDir::Packs))?
        {
            let item = item?;
            if let Some((_, HostDir::Packs, name)) = layout::parse_host_file(&item.path) {
                out.push((name, item.size));
            }
        }
        Ok(out)
    }

    /// Indexes this host's packs that no index file lists (left by a killed backup), so
    /// their blobs are reused instead of uploaded again. Returns how many were indexed;
    /// unreadable packs are left for `check` to report. A pack one of `open` names is on
    /// its way out (a killed Sweep may already have dropped it from the index): adopting
    /// it would resurrect what Sweep removes.
    pub fn recover_orphan_packs(&mut self, open: &super::OpenPlans) -> Result<usize> {
        let orphans: Vec<(Id, u64)> = self
            .list_packs()?
            .into_iter()
            .filter(|(name, _)| !self.index.has_pack(name))
            .filter(|(name, _)| !open.names_pack(name))
            .collect();
        if orphans.is_empty() {
            return Ok(0);
        }
        let mut shared = Vec::new();
        let mut private = Vec::new();
        for (name, len) in orphans {
            let Ok(h) = self.read_pack_header(self.host.host_id, &name, len) else {
                continue;
            };
            let p = IndexPack {
                name,
                len,
                kind: h.kind,
                entries: h.entries,
            };
            if h.kind == crate::pack::PackKind::Group {
                shared.push(p);
            } else {
                private.push(p);
            }
        }
        let n = shared.len() + private.len();
        let now = chrono::Utc::now().timestamp_millis();
        for (packs, is_private) in [(shared, false), (private, true)] {
            if !packs.is_empty() {
                let f = IndexFile {
                    writer: self.host.host_id,
                    created_ms: now,
                    packs,
                };
                self.save_index_file(&f, is_private)?;
                self.index.add_file(&f);
            }
        }
        self.index.finalize();
        Ok(n)
    }
}
