//! Repacking: the used blobs of partly used packs are copied byte for byte (no
//! re-encryption: each blob is sealed on its own) into new packs of the same host and
//! kind, authenticated on the way, and only ranges holding used blobs are downloaded.

use std::collections::HashMap;

use super::census::Census;
use crate::backend::layout::{self, HostDir};
use crate::backend::WriteBody;
use crate::crypto::blob::BlobType;
use crate::crypto::keys::HostKeys;
use crate::crypto::sealed::FileType;
use crate::error::{Error, Result};
use crate::id::{Id, Id16};
use crate::index::master::PackRef;
use crate::index::{BlobLocation, IndexPack};
use crate::pack::writer::PackWriter;
use crate::pack::{PackEntry, PackKind};
use crate::repository::Repository;

/// One pack to repack: its name and the entries to keep.
pub struct Job {
    /// Host prefix.
    pub host: Id16,
    /// Pack name.
    pub name: Id,
    /// Its kind.
    pub kind: PackKind,
    /// Entries to copy.
    pub keep: Vec<PackEntry>,
}

/// Checks a blob's stored bytes before they go into a new pack.
fn authenticate(
    repo: &Repository,
    keys: &HostKeys,
    census: &Census,
    job: &Job,
    e: &PackEntry,
    stored: &[u8],
) -> Result<()> {
    let damaged = |stage: &'static str| Error::BlobIntegrity {
        id: e.id.to_hex(),
        pack: job.name.to_hex(),
        offset: e.offset,
        stage,
    };
    match job.kind.blob_type() {
        // The cid comes from the authenticated index and pins the stored bytes.
        BlobType::GroupData => match e.cid {
            Some(cid) if Id::of_bytes(stored) == cid => Ok(()),
            _ => Err(damaged("cid")),
        },
        btype => {
            let ck = census.private_cks.get(&e.id);
            if btype == BlobType::PrivateData && ck.is_none() {
                return Err(damaged("content key"));
            }
            let pack = PackRef {
                host: job.host,
                name: job.name,
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
    jobs: &[Job],
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
    let finish = |w: PackWriter, out: &mut Vec<IndexPack>| -> Result<()> {
        let p = w
            .finish(
                |plain| repo.seal_file_as(&keys, ftype, plain),
                |sealed| {
                    repo.open_file_as(&keys, ftype, Some(host), "new pack header", sealed)
                        .map_err(|e| e.to_string())
                },
            )
            .map_err(|e| Error::io("finish pack in", repo.spool_dir(), e))?;
        let path = layout::host_file(&host, HostDir::Packs, &p.name);
        let body = WriteBody::File {
            path: p.path.to_path_buf(),
            len: p.len,
        };
        repo.backend_write(&path, &body)?;
        out.push(IndexPack {
            name: p.name,
            len: p.len,
            kind,
            entries: p.entries,
        });
        Ok(())
    };
    let mut copied: HashMap<Id, ()> = HashMap::new();
    for job in jobs {
        repo.stream_pack_blobs(host, &job.name, &job.keep, &mut |e, stored| {
            if copied.insert(e.id, ()).is_some() {
                return Ok(()); // the same blob kept from two packs: one copy is enough
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
                    finish(full, &mut out)?;
                }
            }
            Ok(())
        })?;
    }
    if let Some(w) = writer.take() {
        if !w.is_empty() {
            finish(w, &mut out)?;
        }
    }
    Ok(out)
}
