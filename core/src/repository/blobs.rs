//! Sealing and opening blobs: ids, content keys, AAD per scope, and the content check that
//! GCM's lack of key commitment makes mandatory on every read.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Repository;
use crate::compress;
use crate::crypto::blob::{self, BlobType};
use crate::crypto::keys::{kh, HostKeys};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::BlobLocation;
use crate::tree::{ContentRef, Tree, SCOPE_GROUP};

/// A sealed blob ready for a pack.
pub struct SealedBlob {
    /// Its type.
    pub btype: BlobType,
    /// Its id.
    pub id: Id,
    /// Plain length.
    pub plen: u32,
    /// Stored bytes.
    pub stored: Vec<u8>,
    /// BLAKE3 of `stored` for a group data blob (its pack header records it), computed by
    /// the worker that sealed it rather than under the packer's lock.
    pub cid: Option<Id>,
}

impl Repository {
    fn aad(&self, host: &HostKeys, btype: BlobType, id: &Id) -> [u8; blob::AAD_LEN] {
        let (scope, epoch) = match btype {
            BlobType::GroupData => (self.group.group_id, self.group.epoch),
            BlobType::PrivateData | BlobType::Tree => (host.host_id, host.epoch),
        };
        blob::aad(&self.config.repo_id, btype, &scope, epoch, id)
    }

    /// Content key and id of a data chunk in group or private scope.
    pub fn data_key_and_id(&self, plain: &[u8], private: bool) -> ([u8; 32], Id) {
        if private {
            blob::content_key_and_id(&self.host.k_pconv, &self.host.k_pid, plain)
        } else {
            blob::content_key_and_id(&self.group.k_conv, &self.group.k_id, plain)
        }
    }

    /// The blob id of a content entry of a tree.
    pub fn content_id(&self, c: &ContentRef) -> (BlobType, Id) {
        self.content_id_as(&self.host, c)
    }

    /// The blob id of a content entry of a tree written by `host`.
    pub fn content_id_as(&self, host: &HostKeys, c: &ContentRef) -> (BlobType, Id) {
        if c.scope == SCOPE_GROUP {
            (BlobType::GroupData, Id(kh(&self.group.k_id, &c.ck)))
        } else {
            (BlobType::PrivateData, Id(kh(&host.k_pid, &c.ck)))
        }
    }

    /// Seals a data chunk whose key and id were computed by [`Self::data_key_and_id`].
    pub fn seal_data(&self, plain: &[u8], ck: &[u8; 32], id: Id, private: bool) -> SealedBlob {
        let btype = if private {
            BlobType::PrivateData
        } else {
            BlobType::GroupData
        };
        let aad = self.aad(&self.host, btype, &id);
        let c = compress::encode(plain, self.config.zstd_level, 13);
        let stored = blob::seal_in_place(ck, &aad, c);
        SealedBlob {
            btype,
            id,
            plen: plain.len() as u32,
            cid: (btype == BlobType::GroupData).then(|| Id::of_bytes(&stored)),
            stored,
        }
    }

    /// Id of an encoded tree.
    pub fn tree_id(&self, encoded: &[u8]) -> Id {
        Id(kh(&self.host.k_tid, encoded))
    }

    /// Seals an encoded tree under its id.
    pub fn seal_tree(&self, encoded: &[u8], tid: Id) -> SealedBlob {
        let ck = kh(&self.host.k_tkey, &tid.0);
        let aad = self.aad(&self.host, BlobType::Tree, &tid);
        let c = compress::encode(encoded, self.config.zstd_level, 13);
        SealedBlob {
            btype: BlobType::Tree,
            id: tid,
            plen: encoded.len() as u32,
            stored: blob::seal_in_place(&ck, &aad, c),
            cid: None,
        }
    }

    /// Authenticates the stored bytes of a private data blob written by `host` without
    /// decompressing them (see [`blob::verify`]): what a repack, which copies them as they
    /// are, needs.
    pub fn verify_private_blob_as(
        &self,
        host: &HostKeys,
        id: &Id,
        ck: &[u8; 32],
        stored: &[u8],
    ) -> std::result::Result<(), &'static str> {
        blob::verify(ck, &self.aad(host, BlobType::PrivateData, id), stored)
    }

    /// Opens stored bytes of a blob and checks that the plaintext is what its key promises.
    /// `ck` is the content key from the tree (data) or `None` for trees (derived from the id).
    pub fn open_blob(
        &self,
        btype: BlobType,
        id: &Id,
        ck: Option<&[u8; 32]>,
        loc: &BlobLocation<'_>,
        stored: &[u8],
    ) -> Result<Vec<u8>> {
        self.open_blob_as(&self.host, btype, id, ck, loc, stored)
    }

    /// [`Self::open_blob`] in place: decrypts `stored` where it lies and returns the
    /// plaintext, which is a raw body inside `stored` or a zstd frame's output in
    /// `scratch`. A caller opening many blobs (restore) keeps both buffers: fresh
    /// multi-MiB buffers per chunk were fresh pages, and a second buffer the size of the
    /// stored bytes was memory for nothing.
    pub fn open_blob_in_place<'a>(
        &self,
        btype: BlobType,
        id: &Id,
        ck: Option<&[u8; 32]>,
        loc: &BlobLocation<'_>,
        stored: &'a mut [u8],
        scratch: &'a mut Vec<u8>,
    ) -> Result<&'a [u8]> {
        self.open_in_place_as(&self.host, btype, id, ck, loc, stored, scratch)
    }

    /// [`Self::open_blob`] for a tree or private blob written by `host`.
    pub fn open_blob_as(
        &self,
        host: &HostKeys,
        btype: BlobType,
        id: &Id,
        ck: Option<&[u8; 32]>,
        loc: &BlobLocation<'_>,
        stored: &[u8],
    ) -> Result<Vec<u8>> {
        let mut sealed = stored.to_vec();
        let in_sealed = sealed.as_ptr_range();
        let mut scratch = Vec::new();
        let plain = self.open_in_place_as(host, btype, id, ck, loc, &mut sealed, &mut scratch)?;
        if in_sealed.contains(&plain.as_ptr()) {
            // A raw body, decrypted where it lay.
            return Ok(plain.to_vec());
        }
        // A zstd frame's output, already in a buffer of its own: no second copy.
        Ok(scratch)
    }

    #[allow(clippy::too_many_arguments)]
    fn open_in_place_as<'a>(
        &self,
        host: &HostKeys,
        btype: BlobType,
        id: &Id,
        ck: Option<&[u8; 32]>,
        loc: &BlobLocation<'_>,
        stored: &'a mut [u8],
        scratch: &'a mut Vec<u8>,
    ) -> Result<&'a [u8]> {
        let fail = |stage: &'static str| Error::BlobIntegrity {
            id: id.to_hex(),
            pack: loc.pack.name.to_hex(),
            offset: loc.offset,
            stage,
        };
        if stored.len() != loc.slen as usize {
            return Err(fail("length"));
        }
        let tree_ck;
        let ck = match (btype, ck) {
            (BlobType::Tree, _) => {
                tree_ck = kh(&host.k_tkey, &id.0);
                &tree_ck
            }
            (_, Some(ck)) => ck,
            (_, None) => return Err(fail("content")),
        };
        let c = blob::open_in_place(ck, &self.aad(host, btype, id), stored)
            .map_err(|_| fail("aead"))?;
        let plain =
            compress::decode_with(c, loc.plen as usize, scratch).map_err(|_| fail("decompress"))?;
        // GCM does not commit to its key: re-derive the key from the plaintext and compare.
        let ok = match btype {
            BlobType::GroupData => kh(&self.group.k_conv, plain) == *ck,
            BlobType::PrivateData => kh(&host.k_pconv, plain) == *ck,
            BlobType::Tree => kh(&host.k_tid, plain) == id.0,
        };
        if !ok || plain.len() != loc.plen as usize {
            return Err(fail("content"));
        }
        Ok(plain)
    }

    /// Repository path of a pack.
    pub fn pack_path(&self, loc: &BlobLocation<'_>) -> String {
        loc.pack.id().path()
    }

    /// Reads and opens one blob through the index.
    pub fn load_blob(&self, btype: BlobType, id: &Id, ck: Option<&[u8; 32]>) -> Result<Vec<u8>> {
        self.load_blob_as(&self.host, btype, id, ck)
    }

    /// [`Self::load_blob`] for a blob written by `host`.
    pub fn load_blob_as(
        &self,
        host: &HostKeys,
        btype: BlobType,
        id: &Id,
        ck: Option<&[u8; 32]>,
    ) -> Result<Vec<u8>> {
        self.load_blob_stored_as(host, btype, id, ck)
            .map(|(plain, _)| plain)
    }

    /// [`Self::load_blob_as`], also returning the stored bytes the plaintext came from.
    fn load_blob_stored_as(
        &self,
        host: &HostKeys,
        btype: BlobType,
        id: &Id,
        ck: Option<&[u8; 32]>,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let loc = self.index.lookup(id).ok_or_else(|| Error::NotFound {
            what: "blob",
            name: id.to_hex(),
        })?;
        let path = self.pack_path(&loc);
        let range = loc.offset..loc.offset + u64::from(loc.slen);
        if let (BlobType::Tree, Some(cache)) = (btype, &self.cache) {
            let stored = cache.read_range(&*self.backend, &path, &loc.pack.name, range.clone())?;
            match self.open_blob_as(host, btype, id, ck, &loc, &stored) {
                Ok(p) => return Ok((p, stored)),
                // A damaged cached copy: drop it and ask the repository itself.
                Err(_) => cache.forget(&path),
            }
        }
        let stored = self.backend.read(&path, Some(range))?;
        let plain = self.open_blob_as(host, btype, id, ck, &loc, &stored)?;
        Ok((plain, stored))
    }

    /// Loads and decodes a tree.
    pub fn load_tree(&self, tid: &Id) -> Result<Tree> {
        self.load_tree_as(&self.host, tid)
    }

    /// Loads and decodes a tree written by `host`.
    pub fn load_tree_as(&self, host: &HostKeys, tid: &Id) -> Result<Tree> {
        let plain = self.load_blob_as(host, BlobType::Tree, tid, None)?;
        Tree::decode(&plain).map_err(|e| Error::corrupt("tree", tid.to_hex(), e.to_string()))
    }

    /// [`Self::load_tree_as`], also returning the BLAKE3 of the stored bytes it came from,
    /// now authenticated: bytes read again later (a repack) that hash the same are the
    /// same authentic bytes, with no second decryption and decompression.
    pub fn load_tree_and_cid_as(&self, host: &HostKeys, tid: &Id) -> Result<(Tree, Id)> {
        let (plain, stored) = self.load_blob_stored_as(host, BlobType::Tree, tid, None)?;
        let tree = Tree::decode(&plain)
            .map_err(|e| Error::corrupt("tree", tid.to_hex(), e.to_string()))?;
        Ok((tree, Id::of_bytes(&stored)))
    }
}

/// A small cache of decoded trees, shared by threads (diff, find, and parents in backup
/// revisit the same subtrees).
#[derive(Default)]
pub struct TreeCache {
    trees: Mutex<HashMap<Id, std::sync::Arc<Tree>>>,
}

impl TreeCache {
    /// Loads through the cache.
    pub fn get(&self, repo: &Repository, tid: &Id) -> Result<std::sync::Arc<Tree>> {
        if let Ok(m) = self.trees.lock() {
            if let Some(t) = m.get(tid) {
                return Ok(t.clone());
            }
        }
        let t = std::sync::Arc::new(repo.load_tree(tid)?);
        if let Ok(mut m) = self.trees.lock() {
            if m.len() > 4096 {
                m.clear();
            }
            m.insert(*tid, t.clone());
        }
        Ok(t)
    }
}
