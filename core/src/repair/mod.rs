//! Repairs that rebuild what can be rebuilt from what survives (`docs/user-guide.md`,
//! "Repairing a damaged repository").
//!
//! - [`index::repair_index`] rebuilds every host's index from the pack headers, so the
//!   index lists exactly the packs that exist.
//!
//! It only adds files before removing any, so a repair killed half way leaves a
//! repository that is no worse than before; it has a dry run that writes nothing.

pub mod index;

pub use index::{repair_index, IndexRepairOptions, IndexRepairReport, UnreadablePack};
