//! Repairs that rebuild what can be rebuilt from what survives (`docs/user-guide.md`,
//! "Checking and repairing a damaged repository").
//!
//! - [`index::repair_index`] rebuilds every host's index from the pack headers, so the
//!   index lists exactly the packs that exist.
//! - [`snapshots::repair_snapshots`] rewrites snapshots that reference content the index
//!   no longer has, dropping what is lost and recording each loss in the new snapshot.
//!
//! Both only add files before removing any, so a repair killed half way leaves a
//! repository that is no worse than before; both have a dry run that writes nothing.

pub mod index;
pub mod snapshots;

pub use index::{repair_index, IndexRepairOptions, IndexRepairReport, UnreadablePack};
pub use snapshots::{
    repair_snapshots, RepairedSnapshot, SnapshotRepairOptions, SnapshotRepairReport, REPAIRED_TAG,
};
