//! Reading and writing prune state: plans and sweep records (admin-signed, inside the
//! group seal) and session markers (host-sealed).

use ed25519_dalek::{Signature, Signer, VerifyingKey};

use super::Repository;
use crate::backend::layout::{self, HostDir};
use crate::backend::WriteBody;
use crate::cbor::{Dec, Enc};
use crate::crypto::keys::HostKeys;
use crate::crypto::sealed::FileType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::prune::plan::{Plan, SweepRecord};
use crate::session::SessionMarker;

use super::files::Loaded;

/// What a backup (or repair) needs of the prune plans, read once.
pub struct OpenPlans {
    /// Plans no sweep record closes yet.
    pub plans: Vec<Plan>,
    /// The newest generation of any plan or sweep record: what a session has seen.
    pub newest_gen: u64,
    /// Plans and sweep records ignored because they failed to verify.
    pub warnings: Vec<Error>,
}

impl OpenPlans {
    /// Whether an open plan names pack `name` (it is on its way out).
    pub fn names_pack(&self, name: &Id) -> bool {
        self.plans.iter().any(|p| p.pack(name).is_some())
    }
}

/// Domain tags of the signed messages, so a plan signature can never pass as a sweep's.
const PLAN_TAG: &[u8] = b"SIG1plan";
const SWEEP_TAG: &[u8] = b"SIG1sweep";

fn message(tag: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = tag.to_vec();
    m.extend_from_slice(blake3::hash(body).as_bytes());
    m
}

impl Repository {
    /// Whether this key is the repository's admin key (the only one that forgets and
    /// prunes). Every key is, until host enrolment exists.
    pub fn is_admin(&self) -> bool {
        true
    }

    fn save_signed(&self, dir: &str, ftype: FileType, tag: &[u8], body: &[u8]) -> Result<Id> {
        let sig = self.admin.signing_key().sign(&message(tag, body));
        let mut e = Enc::new();
        e.map(2);
        e.key(0).bytes(body);
        e.key(1).bytes(&sig.to_bytes());
        let bytes = self.seal_file(ftype, &e.buf);
        let name = Id::of_bytes(&bytes);
        self.backend
            .write(&layout::admin_file(dir, &name), &WriteBody::Bytes(&bytes))?;
        Ok(name)
    }

    fn load_signed<T>(
        &self,
        dir: &str,
        ftype: FileType,
        tag: &[u8],
        decode: impl Fn(&[u8]) -> std::result::Result<T, crate::cbor::CborError>,
    ) -> Result<Loaded<(Id, T)>> {
        let admin = VerifyingKey::from_bytes(&self.config.admin_pub)
            .map_err(|_| Error::corrupt("config", "config", "admin public key invalid"))?;
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for item in self.backend.list(dir)? {
            let item = item?;
            let Some(name) = item
                .path
                .rsplit('/')
                .next()
                .and_then(|n| n.parse::<Id>().ok())
            else {
                continue;
            };
            let r = (|| {
                let bytes = self.read_named(&item.path, &name, ftype.name())?;
                let plain = self.open_file_as(&self.host, ftype, None, &item.path, &bytes)?;
                let corrupt = |r: String| Error::corrupt(ftype.name(), item.path.clone(), r);
                let mut d = Dec::new(&plain);
                let (body, sig) = (|| {
                    if d.map()? != 2 {
                        return Err(d.err("signed file must have 2 fields"));
                    }
                    let mut prev = None;
                    d.key(&mut prev)?;
                    let body = d.bytes()?;
                    d.key(&mut prev)?;
                    let sig: [u8; 64] = d.fixed()?;
                    d.finish()?;
                    Ok((body, sig))
                })()
                .map_err(|e| corrupt(e.to_string()))?;
                admin
                    .verify_strict(&message(tag, body), &Signature::from_bytes(&sig))
                    .map_err(|_| corrupt("admin signature invalid".into()))?;
                decode(body).map_err(|e| corrupt(e.to_string()))
            })();
            match r {
                Ok(v) => ok.push((name, v)),
                Err(e) => bad.push(e),
            }
        }
        Ok((ok, bad))
    }

    /// Publishes a plan; returns its name.
    pub fn save_plan(&self, p: &Plan) -> Result<Id> {
        self.save_signed(layout::PLANS, FileType::PrunePlan, PLAN_TAG, &p.encode())
    }

    /// Every plan whose signature verifies, oldest generation first; the others come back
    /// as errors for a warning (a forged plan must not steer anything).
    pub fn load_plans(&self) -> Result<Loaded<(Id, Plan)>> {
        let (mut ok, bad) =
            self.load_signed(layout::PLANS, FileType::PrunePlan, PLAN_TAG, Plan::decode)?;
        ok.sort_by_key(|(n, p)| (p.gen, *n));
        Ok((ok, bad))
    }

    /// Writes a sweep record; returns its name.
    pub fn save_sweep_record(&self, r: &SweepRecord) -> Result<Id> {
        self.save_signed(
            layout::SWEEPS,
            FileType::SweepRecord,
            SWEEP_TAG,
            &r.encode(),
        )
    }

    /// Every sweep record whose signature verifies, oldest generation first.
    pub fn load_sweep_records(&self) -> Result<Loaded<(Id, SweepRecord)>> {
        let (mut ok, bad) = self.load_signed(
            layout::SWEEPS,
            FileType::SweepRecord,
            SWEEP_TAG,
            SweepRecord::decode,
        )?;
        ok.sort_by_key(|(n, r)| (r.gen, *n));
        Ok((ok, bad))
    }

    /// The plans no sweep record closes yet, and the newest generation of any plan.
    /// Plans that fail to verify come back as warnings and are otherwise ignored.
    pub fn open_plans(&self) -> Result<OpenPlans> {
        let (plans, mut bad) = self.load_plans()?;
        let (sweeps, bad2) = self.load_sweep_records()?;
        bad.extend(bad2);
        let top = plans
            .iter()
            .map(|(_, p)| p.gen)
            .chain(sweeps.iter().map(|(_, r)| r.gen))
            .max()
            .unwrap_or(0);
        let open = plans
            .into_iter()
            .filter(|(_, p)| !sweeps.iter().any(|(_, r)| r.gen == p.gen))
            .map(|(_, p)| p)
            .collect();
        Ok(OpenPlans {
            plans: open,
            newest_gen: top,
            warnings: bad,
        })
    }

    /// Treats every blob copy an open plan condemns as absent (a backup must not reuse what
    /// a Sweep may delete). Returns the plans, for [`Repository::recover_orphan_packs`].
    pub fn apply_plans(&mut self) -> Result<OpenPlans> {
        let open = self.open_plans()?;
        if !open.plans.is_empty() {
            self.index
                .drop_condemned(|pack, id| open.plans.iter().any(|p| p.condemns(pack, id)));
        }
        Ok(open)
    }

    /// Writes a session marker of this host; returns its name.
    pub fn save_session_marker(&self, m: &SessionMarker) -> Result<Id> {
        self.save_sealed(HostDir::Sessions, FileType::SessionMarker, &m.encode())
    }

    /// Loads one session marker of `host`.
    pub fn load_session_marker(&self, host: &HostKeys, name: &Id) -> Result<SessionMarker> {
        let path = layout::host_file(&host.host_id, HostDir::Sessions, name);
        let bytes = self.read_named(&path, name, "session marker")?;
        let plain = self.open_file_as(
            host,
            FileType::SessionMarker,
            Some(host.host_id),
            &path,
            &bytes,
        )?;
        SessionMarker::decode(&plain)
            .map_err(|e| Error::corrupt("session marker", path, e.to_string()))
    }

    /// The storage itself, for the prune lock (which outlives borrows of the repository
    /// and carries nothing that needs authenticating).
    pub(crate) fn backend_handle(&self) -> std::sync::Arc<dyn crate::backend::Backend> {
        self.backend.clone()
    }

    /// Writes a file (prune's new packs).
    pub(crate) fn backend_write(&self, path: &str, body: &WriteBody<'_>) -> Result<()> {
        Ok(self.backend.write(path, body)?)
    }

    /// Removes a file; one already gone counts as removed (a resumed prune deletes what a
    /// killed one may have deleted already).
    pub(crate) fn remove_path(&self, path: &str) -> Result<()> {
        Ok(self.backend.discard(path)?)
    }
}
