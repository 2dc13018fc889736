//! Prune in two phases that no backup waits for (`docs/prune.md`).
//!
//! Mark publishes a signed plan of what no snapshot references. Sweep, once the grace
//! period has passed and every backup that started before the plan has committed, ended
//! or died, takes a fresh census (so whatever a snapshot written since Mark references is
//! rescued), deletes dead packs, repacks the partly used ones the cost model says pay back,
//! rewrites the affected hosts' index files and only then deletes what they superseded.
//! Every step can be killed: the next prune finishes the same plan.

pub mod census;
pub mod lock;
pub mod mark;
pub mod payback;
pub mod plan;
pub mod price;
pub mod repack;
mod run;
pub mod sweep;

pub use lock::LockOwner;
pub use run::{prune, BlockingSession, PackDecision, PruneHooks, PruneOptions, PruneReport};
