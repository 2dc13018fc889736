//! Repacking: the used blobs of partly used packs are copied byte for byte (no
//! re-encryption: each blob is sealed on its own) into new packs of the same host and
//! kind, authenticated on the way, and only ranges holding used blobs are downloaded.

use super::census::Census;
use crate::backend::layout::{self, HostDir};
use crate::backend::WriteBody;
use crate::crypto::blob::BlobType;
use crate::crypto::keys::HostKeys;
use crate::crypto::sealed::FileType;
use crate::error::{Error, Result};
use crate::id::{Id, Id16, IdSet, PackId};
use crate::index::master::PackRef;
use crate::index::{BlobLocation, IndexPack};
use crate::pack::writer::{FinishedPack, PackWriter};
use crate::pack::{PackEntry, PackKind};
use crate::repository::Repository;

/// One pack to repack: its name and the entries to keep.
pub struct Job<'a> {
    /// The pack.
    pub pack: PackId,
    /// Its kind.
    pub kind: PackKind,
    /// Positions in `entries` of the entries to copy.
    pub keep: &'a [u32],
    /// The pack's entries, as its index lists them.
    pub entries: &'a [PackEntry],
}

/// Checks a blob's stored bytes before they go into a new pack.
fn authenticate(
    repo: &Repository,
    keys: &HostKeys,
    census: &Census,
    job: &Job<'_>,
    e: &PackEntry,
    stored: &[u8],
) -> Result<()> {
    let damaged = |stage: &'static str| Error::BlobIntegrity {
        id: e.id.to_hex(),
        pack: job.pack.name.to_hex(),
        offset: e.offset,
        stage,
    };
    match job.kind.blob_type() {
        // The cid comes from the authenticated index and pins the stored bytes.
        BlobType::GroupData => match e.cid {
            Some(cid) if Id::of_bytes(stored) == cid => Ok(()),
            _ => Err(damaged("cid")),
        },
        // The census authenticated these very bytes and kept their hash (another stored
        // copy of the tree hashes differently and is opened below).
        BlobType::Tree
            if census
                .tree_cids
                .get(&e.id)
                .is_some_and(|cid| Id::of_bytes(stored) == *cid) =>
        {
            Ok(())
        }
        BlobType::PrivateData => match census.private_ck(&e.id) {
            Some(ck) => repo
                .verify_private_blob_as(keys, &e.id, ck, stored)
                .map_err(damaged),
            None => Err(damaged("content key")),
        },
        btype => {
            let ck = None;
            let pack = PackRef {
                host: job.pack.host,
                name: job.pack.name,
                len: 0,
                kind: job.kind,
            };
            let loc = BlobLocation {
                pack: &pack,
                pack_no: 0,
                offset: e.offset,
                slen: e.slen,
                plen: e.plen,
            };
            repo.open_blob_as(keys, btype, &e.id, ck, &loc, stored)
                .map(|_| ())
        }
    }
}

/// Repacks `jobs` (all of one host and kind); returns the new packs, uploaded.
pub fn repack(
    repo: &Repository,
    census: &Census,
    host: Id16,
    kind: PackKind,
    jobs: &[Job<'_>],
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<IndexPack>> {
    let keys = repo.host_keys_of(host);
    let target = repo.config().pack_target;
    let ftype = if kind == PackKind::Group {
        FileType::GroupPackHeader
    } else {
        FileType::HostPackHeader
    };
    let mut out = Vec::new();
    let mut writer: Option<PackWriter> = None;
    let new_writer = || {
        PackWriter::new(kind, repo.spool_dir())
            .map_err(|e| Error::io("create pack spool in", repo.spool_dir(), e))
    };
    let seal = |w: PackWriter| -> Result<FinishedPack> {
        w.finish(
            |plain| repo.seal_file_as(&keys, ftype, plain),
            |sealed| {
                repo.open_file_as(&keys, ftype, Some(host), "new pack header", sealed)
                    .map_err(|e| e.to_string())
            },
        )
        .map_err(|e| Error::io("finish pack in", repo.spool_dir(), e))
    };
    let upload = |p: FinishedPack, out: &mut Vec<IndexPack>| -> Result<()> {
        let path = layout::host_file(&host, HostDir::Packs, &p.name);
        let body = WriteBody::File {
            path: p.path.to_path_buf(),
            len: p.len,
        };
        repo.backend_write(&path, &body)?;
        let mut entries = p.entries;
        // Kept until the index is written, for every new pack: no growth slack.
        entries.shrink_to_fit();
        out.push(IndexPack {
            name: p.name,
            len: p.len,
            kind,
            entries,
        });
        Ok(())
    };
    // Packs filled while a read runs wait for it to end before they go up: a read holds a
    // backend connection, and an upload from inside it would need a second one, which
    // other repacks running at the same time may hold.
    let mut sealed: Vec<FinishedPack> = Vec::new();
    let mut copied = IdSet::default();
    for job in jobs {
        let keep: Vec<PackEntry> = job
            .keep
            .iter()
            .filter_map(|&i| job.entries.get(i as usize).copied())
            .collect();
        // Sequential on purpose: this runs inside the backend's read, which may hold a
        // connection, and a nested rayon call could take up another repack's work that
        // waits for one. Hosts and kinds run in parallel instead (see `sweep::execute`).
        repo.stream_pack_blobs(&job.pack, &keep, &mut |e, stored| {
            // The same blob kept from two packs: one copy is enough (only blobs stored
            // twice can be, so only those are remembered).
            if census.duplicated(&e.id) && !copied.insert(e.id) {
                return Ok(());
            }
            authenticate(repo, &keys, census, job, e, stored)?;
            let w = match writer.as_mut() {
                Some(w) => w,
                None => writer.insert(new_writer()?),
            };
            w.add_with_cid(e.id, e.plen, stored, e.cid)
                .map_err(|err| Error::io("write pack spool in", repo.spool_dir(), err))?;
            progress(u64::from(e.slen));
            if w.size() >= target {
                if let Some(full) = writer.take() {
                    sealed.push(seal(full)?);
                }
            }
            Ok(())
        })?;
        for p in sealed.drain(..) {
            upload(p, &mut out)?;
        }
    }
    if let Some(w) = writer.take() {
        if !w.is_empty() {
            upload(seal(w)?, &mut out)?;
        }
    }
    Ok(out)
}
