//! Removing snapshots (`cairn forget`). Which ones is decided by [`crate::forget`]; the data
//! they reference stays until prune finds it unreferenced.

use super::Repository;
use crate::backend::layout::{self, HostDir};
use crate::error::Result;
use crate::id::SnapshotId;

impl Repository {
    /// Removes one of this host's snapshot files.
    ///
    /// Every key today is the admin key, so any key that opens the repository may forget;
    /// once there are host-scoped keys, this is an admin operation.
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        let path = layout::host_file(&self.host.host_id, HostDir::Snapshots, id.as_id());
        self.backend.remove(&path)?;
        Ok(())
    }
}
