//! Shared fixtures of the fuzz targets and the seed generator: the keys and ids the seeds
//! are sealed with, so a seed opens in its target and the fuzzer starts past the AEAD.

use cairn_core::crypto::sealed::{Expect, FileType};
use cairn_core::crypto::Key32;
use cairn_core::Id16;

/// Repository id of every seed.
pub const REPO: Id16 = Id16([1; 16]);
/// Writer (host) id of every seed.
pub const WRITER: Id16 = Id16([2; 16]);
/// Group id of every seed.
pub const GROUP: Id16 = Id16([3; 16]);
/// Content key of the blob seeds.
pub const CK: [u8; 32] = [5; 32];
/// Password of the key-file seed.
pub const PASSWORD: &str = "fuzz";

/// Scope key the sealed seeds (snapshots, pack headers) are sealed with.
pub fn scope_key() -> Key32 {
    Key32::from_bytes([4; 32])
}

/// What the targets expect of a sealed file of type `ftype`.
pub fn expect(ftype: FileType) -> Expect {
    Expect {
        ftype,
        repo_id: REPO,
        writer_id: Some(WRITER),
    }
}

/// The file type of an `ftype` byte.
pub fn file_type(b: u8) -> Option<FileType> {
    Some(match b {
        1 => FileType::Snapshot,
        2 => FileType::SharedIndex,
        3 => FileType::PrivateIndex,
        4 => FileType::GroupPackHeader,
        5 => FileType::HostPackHeader,
        _ => return None,
    })
}

/// AAD of the blob seeds (a group data blob whose id is all 6s).
pub fn blob_aad() -> [u8; cairn_core::crypto::blob::AAD_LEN] {
    cairn_core::crypto::blob::aad(
        &REPO,
        cairn_core::crypto::blob::BlobType::GroupData,
        &GROUP,
        1,
        &cairn_core::Id([6; 32]),
    )
}
