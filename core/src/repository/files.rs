//! Sealed repository files: snapshots and index files, named by the BLAKE3 of their bytes.

use super::Repository;
use crate::backend::layout::{self, HostDir};
use crate::backend::WriteBody;
use crate::crypto::keys::HostKeys;
use crate::crypto::sealed::{self, Expect, FileType, SealedHeader};
use crate::crypto::Key32;
use crate::error::{Error, Result};
use crate::id::{Id, Id16, IndexFileId, SnapshotId};
use crate::index::IndexFile;
use crate::snapshot::Snapshot;

/// Files that loaded, and errors naming those that did not.
pub type Loaded<T> = (Vec<T>, Vec<Error>);

impl Repository {
    fn seal_key<'k>(&'k self, host: &'k HostKeys, ftype: FileType) -> (&'k Key32, Id16, u32) {
        match ftype {
            FileType::SharedIndex
            | FileType::GroupPackHeader
            | FileType::PrunePlan
            | FileType::SweepRecord => (&self.group.k_sidx, self.group.group_id, self.group.epoch),
            _ => (&host.k_meta, host.host_id, host.epoch),
        }
    }

    /// Seals a payload as a file of type `ftype` written by this host.
    pub fn seal_file(&self, ftype: FileType, payload: &[u8]) -> Vec<u8> {
        self.seal_file_as(&self.host, ftype, payload)
    }

    /// Seals a payload as a file of type `ftype` written as `host` (the admin rewrites a
    /// host's index and packs when it prunes).
    pub fn seal_file_as(&self, host: &HostKeys, ftype: FileType, payload: &[u8]) -> Vec<u8> {
        let (key, scope_id, scope_epoch) = self.seal_key(host, ftype);
        let hdr = SealedHeader {
            ftype: ftype as u8,
            repo_id: self.config.repo_id,
            writer_id: host.host_id,
            scope_id,
            scope_epoch,
            seq: u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0),
            salt: crate::crypto::random_array(),
        };
        sealed::seal(key, &hdr, payload, self.config.zstd_level)
    }

    /// Opens a sealed file of type `ftype` written by `writer`; `name` is for errors.
    pub fn open_file(
        &self,
        ftype: FileType,
        writer: Id16,
        name: &str,
        bytes: &[u8],
    ) -> Result<Vec<u8>> {
        self.open_file_as(&self.host, ftype, Some(writer), name, bytes)
    }

    /// Opens a sealed file of type `ftype` with `host`'s keys; `writer`, when the file's
    /// location names one, must match its header.
    pub fn open_file_as(
        &self,
        host: &HostKeys,
        ftype: FileType,
        writer: Option<Id16>,
        name: &str,
        bytes: &[u8],
    ) -> Result<Vec<u8>> {
        let (key, _, _) = self.seal_key(host, ftype);
        let expect = Expect {
            ftype,
            repo_id: self.config.repo_id,
            writer_id: writer,
        };
        sealed::open(key, &expect, bytes)
            .map(|(_, p)| p)
            .map_err(|r| Error::corrupt(ftype.name(), name, r))
    }

    /// Writes a sealed file into this host's `dir`; returns its name.
    pub(crate) fn save_sealed(&self, dir: HostDir, ftype: FileType, payload: &[u8]) -> Result<Id> {
        self.save_sealed_as(&self.host, dir, ftype, payload)
    }

    /// Writes a sealed file into `host`'s `dir`; returns its name.
    pub(crate) fn save_sealed_as(
        &self,
        host: &HostKeys,
        dir: HostDir,
        ftype: FileType,
        payload: &[u8],
    ) -> Result<Id> {
        let bytes = self.seal_file_as(host, ftype, payload);
        let name = Id::of_bytes(&bytes);
        let path = layout::host_file(&host.host_id, dir, &name);
        self.backend.write(&path, &WriteBody::Bytes(&bytes))?;
        if let (Some(c), HostDir::Index | HostDir::TreeIndex) = (&self.cache, dir) {
            c.store(&path, &bytes);
        }
        Ok(name)
    }

    /// Reads a file and checks that its bytes hash to its name.
    pub fn read_named(&self, path: &str, name: &Id, what: &'static str) -> Result<Vec<u8>> {
        let bytes = self.backend.read(path, None)?;
        if Id::of_bytes(&bytes) != *name {
            return Err(Error::corrupt(
                what,
                path,
                "content does not match its name (BLAKE3)",
            ));
        }
        Ok(bytes)
    }

    /// Writes a snapshot; returns its id.
    pub fn save_snapshot(&self, s: &Snapshot) -> Result<SnapshotId> {
        self.save_sealed(HostDir::Snapshots, FileType::Snapshot, &s.encode())
            .map(SnapshotId)
    }

    /// Writes an index file (shared or private, by `private`); returns its name.
    pub fn save_index_file(&self, f: &IndexFile, private: bool) -> Result<IndexFileId> {
        self.save_index_file_as(&self.host, f, private)
    }

    /// Writes an index file of `host`'s packs into its prefix; returns its name.
    pub(crate) fn save_index_file_as(
        &self,
        host: &HostKeys,
        f: &IndexFile,
        private: bool,
    ) -> Result<IndexFileId> {
        let (dir, ftype) = if private {
            (HostDir::TreeIndex, FileType::PrivateIndex)
        } else {
            (HostDir::Index, FileType::SharedIndex)
        };
        self.save_sealed_as(host, dir, ftype, &f.encode())
            .map(IndexFileId)
    }

    /// Names of this host's files in `dir`.
    pub fn list_names(&self, dir: HostDir) -> Result<Vec<Id>> {
        let mut out = Vec::new();
        for item in self
            .backend
            .list(&layout::host_dir(&self.host.host_id, dir))?
        {
            let item = item?;
            if let Some((_, d, name)) = layout::parse_host_file(&item.path) {
                if d == dir {
                    out.push(name);
                }
            }
        }
        Ok(out)
    }

    /// Loads one snapshot by name.
    pub fn load_snapshot(&self, name: &SnapshotId) -> Result<Snapshot> {
        self.load_snapshot_as(&self.host, name)
    }

    /// Loads one snapshot of `host` by name.
    pub fn load_snapshot_as(&self, host: &HostKeys, name: &SnapshotId) -> Result<Snapshot> {
        let path = layout::host_file(&host.host_id, HostDir::Snapshots, name.as_id());
        let bytes = self.read_named(&path, name.as_id(), "snapshot")?;
        let plain =
            self.open_file_as(host, FileType::Snapshot, Some(host.host_id), &path, &bytes)?;
        let s = Snapshot::decode(&plain)
            .map_err(|e| Error::corrupt("snapshot", path.clone(), e.to_string()))?;
        if s.host_id != host.host_id {
            return Err(Error::corrupt("snapshot", path, "names another host"));
        }
        Ok(s)
    }

    /// Loads every snapshot of this host, oldest first. Unreadable snapshot files are
    /// returned as errors alongside, so one damaged file does not hide the others.
    pub fn load_snapshots(&self) -> Result<Loaded<(SnapshotId, Snapshot)>> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for name in self.list_names(HostDir::Snapshots)? {
            let name = SnapshotId(name);
            match self.load_snapshot(&name) {
                Ok(s) => ok.push((name, s)),
                Err(e) => bad.push(e),
            }
        }
        ok.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        Ok((ok, bad))
    }

    /// Reads, checks and decodes every index file of this host (shared and private).
    /// Damaged files come back as errors beside the good ones: blobs they listed are
    /// missing, but everything else stays usable.
    pub fn read_index_files(&self) -> Result<Loaded<(String, IndexFile)>> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for (dir, ftype) in [
            (HostDir::Index, FileType::SharedIndex),
            (HostDir::TreeIndex, FileType::PrivateIndex),
        ] {
            for name in self.list_names(dir)? {
                let path = layout::host_file(&self.host.host_id, dir, &name);
                match self.read_index_file(&self.host, &path, &IndexFileId(name), ftype, true) {
                    Ok(f) => out.push((path, f)),
                    Err(e) => bad.push(e),
                }
            }
        }
        Ok((out, bad))
    }

    /// Reads, checks and decodes one index file (`check` reports each damaged one by path).
    pub(crate) fn read_index_file(
        &self,
        host: &HostKeys,
        path: &str,
        name: &IndexFileId,
        ftype: FileType,
        cached: bool,
    ) -> Result<IndexFile> {
        let name = name.as_id();
        // `check` reads the repository itself (cached = false); loading the index may use
        // the local copy, which is only used while it still hashes to its name.
        let bytes = match (&self.cache, cached) {
            (Some(c), true) => c.read_file(&*self.backend, path, name)?,
            _ => self.backend.read(path, None)?,
        };
        if Id::of_bytes(&bytes) != *name {
            return Err(Error::corrupt(
                ftype.name(),
                path,
                "content does not match its name (BLAKE3)",
            ));
        }
        let plain = self.open_file_as(host, ftype, Some(host.host_id), path, &bytes)?;
        let f = IndexFile::decode(&plain)
            .map_err(|e| Error::corrupt(ftype.name(), path, e.to_string()))?;
        if f.writer != host.host_id {
            return Err(Error::corrupt(
                ftype.name(),
                path,
                "lists packs of another host",
            ));
        }
        Ok(f)
    }
}
