//! Creating a repository, unlocking it, and managing its admin key files.

use std::path::PathBuf;
use std::sync::Arc;

use super::Repository;
use crate::backend::{layout, Backend, WriteBody};
use crate::cbor::{Dec, Enc};
use crate::chunker::{ChunkerParams, GearTable};
use crate::config::{Config, GroupRef};
use crate::crypto::keyfile::{KdfParams, KeyFile};
use crate::crypto::keys::AdminSecret;
use crate::crypto::{Key32, Password};
use crate::error::{Error, Result};
use crate::id::Id16;
use crate::index::MasterIndex;
use crate::source::scope;

/// Options of `init`.
pub struct InitOptions {
    /// KDF cost of the first key file.
    pub kdf: KdfParams,
    /// Store the admin key file in the repository (default), so repository + password
    /// recovers everything after every machine is lost.
    pub key_in_repo: bool,
    /// Also (or only) write the key file here.
    pub key_out: Option<PathBuf>,
    /// Label shown by `key list` (user@host).
    pub label: String,
    /// zstd level of every blob and sealed file (a repository constant).
    pub zstd_level: i32,
}

/// A key file as `key list` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KeyInfo {
    /// Key id.
    pub id: String,
    /// Whether this is the key that unlocked the repository.
    pub current: bool,
    /// Who created it.
    pub label: String,
    /// When.
    pub created: String,
    /// KDF memory in KiB.
    pub kdf_m_kib: u32,
}

/// The admin key plaintext: `{0: repo_id, 1: A, 2: host_id, 3: host_epoch}`.
struct AdminPlain {
    repo_id: Id16,
    secret: Key32,
    host_id: Id16,
    host_epoch: u32,
}

impl AdminPlain {
    fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.map(4);
        e.key(0).bytes(&self.repo_id.0);
        e.key(1).bytes(self.secret.expose());
        e.key(2).bytes(&self.host_id.0);
        e.key(3).u64(self.host_epoch.into());
        e.buf
    }

    fn decode(name: &str, b: &[u8]) -> Result<Self> {
        let bad = |r: String| Error::KeyFileMalformed {
            name: name.into(),
            reason: r,
        };
        let mut d = Dec::new(b);
        let r = (|| {
            if d.map()? != 4 {
                return Err(d.err("admin key must have 4 fields"));
            }
            let mut prev = None;
            let mut key = |d: &mut Dec, want: u64| match d.key(&mut prev) {
                Ok(k) if k == want => Ok(()),
                Ok(_) => Err(d.err("unexpected admin key field")),
                Err(e) => Err(e),
            };
            key(&mut d, 0)?;
            let repo_id = Id16(d.fixed()?);
            key(&mut d, 1)?;
            let secret = Key32::from_bytes(d.fixed()?);
            key(&mut d, 2)?;
            let host_id = Id16(d.fixed()?);
            key(&mut d, 3)?;
            let host_epoch = d.u32()?;
            d.finish()?;
            Ok(Self {
                repo_id,
                secret,
                host_id,
                host_epoch,
            })
        })();
        r.map_err(|e| bad(e.to_string()))
    }
}

impl Repository {
    /// Creates a repository and returns it open.
    pub fn init(
        backend: Arc<dyn Backend>,
        password: &Password,
        opts: &InitOptions,
    ) -> Result<Self> {
        if Self::exists(&*backend)? {
            return Err(Error::RepositoryExists {
                location: backend.location(),
            });
        }
        backend.create()?;
        let admin = AdminSecret::random();
        let plain = AdminPlain {
            repo_id: Id16::random(),
            secret: Key32::from_bytes(*admin.expose()),
            host_id: Id16::random(),
            host_epoch: 1,
        };
        let config = Config {
            version: 1,
            repo_id: plain.repo_id,
            admin_pub: admin.signing_key().verifying_key().to_bytes(),
            groups: vec![GroupRef {
                id: Id16::random(),
                epoch: 1,
            }],
            chunker: ChunkerParams::default(),
            zstd_level: opts.zstd_level,
            pack_target: 16 << 20,
            private_globs: scope::default_globs(),
            private_small_file_max: scope::DEFAULT_SMALL_FILE_MAX,
        };
        let key_id = Id16::random();
        let kf = KeyFile::wrap(
            "admin",
            plain.repo_id,
            key_id,
            opts.label.clone(),
            opts.kdf.clone(),
            password,
            &plain.encode(),
        )?;
        let json = kf.to_json()?;
        if let Some(out) = &opts.key_out {
            write_local_key(out, &json)?;
        }
        if opts.key_in_repo {
            backend.write(&layout::admin_key(&key_id), &WriteBody::Bytes(&json))?;
        }
        // The config goes last: its presence is what makes a repository.
        let config_bytes = config.to_file(&admin.signing_key());
        backend.write(layout::CONFIG, &WriteBody::Bytes(&config_bytes))?;
        Self::assemble(backend, config, config_bytes, plain, key_id)
    }

    /// Opens a repository with `password`, trying `key_file` or every admin key file.
    pub fn open(
        backend: Arc<dyn Backend>,
        password: &Password,
        key_file: Option<&std::path::Path>,
    ) -> Result<Self> {
        let config_bytes = Self::read_config(&*backend)?;
        let config = Config::from_file(&config_bytes)?;
        let candidates: Vec<(String, Vec<u8>)> = match key_file {
            Some(p) => vec![(
                p.display().to_string(),
                std::fs::read(p).map_err(|e| Error::io("read key file", p, e))?,
            )],
            None => {
                let mut v = Vec::new();
                for item in backend.list(layout::ADMIN_KEYS)? {
                    let item = item?;
                    let bytes = backend.read(&item.path, None)?;
                    v.push((item.path, bytes));
                }
                v
            }
        };
        if candidates.is_empty() {
            return Err(Error::NotFound {
                what: "key file",
                name: "in the repository (use --key-file)".into(),
            });
        }
        let mut tried = 0;
        let mut damaged: Option<Error> = None;
        for (name, bytes) in &candidates {
            let kf = match KeyFile::parse(name, bytes) {
                Ok(kf) => kf,
                Err(e) => {
                    damaged.get_or_insert(e);
                    continue;
                }
            };
            match kf.unwrap_secret(name, password) {
                Ok(plain) => {
                    let plain = AdminPlain::decode(name, &plain)?;
                    if plain.repo_id != config.repo_id {
                        return Err(Error::KeyFileMalformed {
                            name: name.clone(),
                            reason: "belongs to another repository".into(),
                        });
                    }
                    let key_id = kf.key_id.parse().unwrap_or_default();
                    return Self::assemble(backend, config, config_bytes, plain, key_id);
                }
                Err(Error::WrongPassword { .. }) => tried += 1,
                Err(e) => {
                    damaged.get_or_insert(e);
                }
            }
        }
        match damaged {
            Some(e) if tried == 0 => Err(e),
            _ => Err(Error::WrongPassword { tried }),
        }
    }

    fn assemble(
        backend: Arc<dyn Backend>,
        config: Config,
        config_bytes: Vec<u8>,
        plain: AdminPlain,
        key_id: Id16,
    ) -> Result<Self> {
        let admin = AdminSecret::from_key(plain.secret);
        // The key file pins the trust root: a config signed by anyone else is refused.
        config.check_admin(&admin.signing_key().verifying_key())?;
        let g = config.groups[0].clone();
        let group = admin.group_keys(g.id, g.epoch);
        let host = admin.host_keys(plain.host_id, plain.host_epoch);
        let gear = Arc::new(GearTable::from_key(group.k_chunk.expose()));
        Ok(Self {
            backend,
            config,
            config_bytes,
            admin,
            group,
            host,
            key_id,
            gear,
            index: MasterIndex::new(),
            spool_dir: std::env::temp_dir(),
            cache: None,
        })
    }

    fn plain(&self) -> AdminPlain {
        AdminPlain {
            repo_id: self.config.repo_id,
            secret: Key32::from_bytes(*self.admin.expose()),
            host_id: self.host.host_id,
            host_epoch: self.host.epoch,
        }
    }

    /// Adds a key file for the same secret under another password; returns its id.
    pub fn add_key(&self, password: &Password, kdf: KdfParams, label: String) -> Result<Id16> {
        let key_id = Id16::random();
        let kf = KeyFile::wrap(
            "admin",
            self.config.repo_id,
            key_id,
            label,
            kdf,
            password,
            &self.plain().encode(),
        )?;
        self.backend.write(
            &layout::admin_key(&key_id),
            &WriteBody::Bytes(&kf.to_json()?),
        )?;
        Ok(key_id)
    }

    /// Lists the key files in the repository.
    pub fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for item in self.backend.list(layout::ADMIN_KEYS)? {
            let item = item?;
            let bytes = self.backend.read(&item.path, None)?;
            let kf = KeyFile::parse(&item.path, &bytes)?;
            out.push(KeyInfo {
                current: kf.key_id == self.key_id.to_hex(),
                id: kf.key_id,
                label: kf.label,
                created: kf.created,
                kdf_m_kib: kf.kdf.m_kib,
            });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Removes a key file by id or unique prefix; refuses to remove the one in use.
    pub fn remove_key(&self, prefix: &str) -> Result<String> {
        let keys = self.list_keys()?;
        let k = crate::snapshot::select::by_prefix(
            "key",
            prefix,
            keys.iter().map(|k| (k.id.clone(), k)),
        )?;
        if k.current {
            return Err(Error::InvalidInput(
                "refusing to remove the key in use; open the repository with another key first"
                    .into(),
            ));
        }
        let id: Id16 =
            k.id.parse()
                .map_err(|_| Error::InvalidInput(format!("bad key id {}", k.id)))?;
        self.backend.remove(&layout::admin_key(&id))?;
        Ok(k.id.clone())
    }

    /// Changes the password: writes a new key file, then removes the old one.
    pub fn change_password(
        &mut self,
        password: &Password,
        kdf: KdfParams,
        label: String,
    ) -> Result<Id16> {
        let new_id = self.add_key(password, kdf, label)?;
        let old = self.key_id;
        self.key_id = new_id;
        if let Err(e) = self.backend.remove(&layout::admin_key(&old)) {
            if e.kind != crate::backend::BackendErrorKind::NotFound {
                return Err(e.into());
            }
        }
        Ok(new_id)
    }

    /// Loads every index file of this host into memory; returns the damaged ones' errors
    /// (their blobs are then unknown, which backup repairs by uploading them again).
    pub fn load_index(&mut self) -> Result<Vec<Error>> {
        let mut index = MasterIndex::new();
        let (files, bad) = self.read_index_files()?;
        for f in &files {
            index.add_file(&f.1);
        }
        index.finalize();
        self.index = index;
        Ok(bad)
    }
}

fn write_local_key(path: &std::path::Path, json: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("create key file", path, e))?;
    f.write_all(json)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("write key file", path, e))
}
