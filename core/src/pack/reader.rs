//! Reading a pack's header: one ranged read of the tail, bounds checked before allocating.

use super::header::PackHeader;
use super::{MAGIC, MAX_HEADER_LEN, TRAILER_LEN};

/// Bytes fetched from the end of a pack in the first request; a header larger than this
/// (more than about 800 blobs) costs a second request.
pub const TAIL_GUESS: u64 = 64 << 10;

/// Where the sealed header lies, from the trailer at the end of `tail` (the last bytes of
/// a pack of `pack_len` bytes). Returns the header's offset and length in the pack.
pub fn locate_header(tail: &[u8], pack_len: u64) -> Result<(u64, u64), String> {
    if (tail.len() as u64) < TRAILER_LEN || pack_len < TRAILER_LEN {
        return Err("shorter than a pack trailer".into());
    }
    let t = &tail[tail.len() - 8..];
    if &t[4..] != MAGIC {
        return Err("bad trailer magic".into());
    }
    let hlen = u64::from(u32::from_le_bytes([t[0], t[1], t[2], t[3]]));
    if hlen > MAX_HEADER_LEN || hlen + TRAILER_LEN > pack_len {
        return Err(format!("header length {hlen} out of bounds"));
    }
    Ok((pack_len - TRAILER_LEN - hlen, hlen))
}

/// Decodes an opened header and checks it against the pack's length.
pub fn decode_header(plain: &[u8], header_offset: u64) -> Result<PackHeader, String> {
    PackHeader::decode(plain, header_offset).map_err(|e| e.to_string())
}
