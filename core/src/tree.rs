//! Trees: one directory listing per blob (`docs/format.md`, "Trees").
//!
//! Canonical CBOR, nodes sorted by name bytes, no atime: an unchanged directory encodes to the
//! same bytes and so gets the same tree id, which is what makes an unchanged re-backup cheap.

use crate::cbor::{CborError, Dec, Enc};
use crate::id::{Id, Id16};

/// Largest number of nodes accepted in one tree.
pub const MAX_NODES: usize = 1 << 22;

/// Kind of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// Regular file.
    File = 1,
    /// Directory.
    Dir = 2,
    /// Symbolic link.
    Symlink = 3,
    /// Character device.
    CharDev = 4,
    /// Block device.
    BlockDev = 5,
    /// Named pipe.
    Fifo = 6,
}

impl NodeKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::File,
            2 => Self::Dir,
            3 => Self::Symlink,
            4 => Self::CharDev,
            5 => Self::BlockDev,
            6 => Self::Fifo,
            _ => return None,
        })
    }
}

/// Scope index of a content entry: which key family its id comes from.
pub const SCOPE_GROUP: u8 = 0;
/// Scope index of private-scope content.
pub const SCOPE_PRIVATE: u8 = 1;

/// One piece of a file: a whole blob (a chunk), or a slice of a bundle blob that holds
/// several small files of one directory (see `archiver::bundle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRef {
    /// Index into the tree's scope table (0 group, 1 private).
    pub scope: u8,
    /// Content key `ck` of the blob; the blob id is recomputed from it.
    pub ck: [u8; 32],
    /// Bytes of the file this entry holds: the blob's plain length, or the slice's.
    pub plen: u32,
    /// Where in a bundle blob the bytes lie; `None` for a whole blob.
    pub slice: Option<Slice>,
}

/// Whether two content lists hold the same bytes, wherever they are stored: a file
/// bundled with different neighbours, or once whole and once in a bundle, is unchanged.
pub fn same_bytes(a: &[ContentRef], b: &[ContentRef]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.identity() == y.identity())
}

/// A file's place in a bundle blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    /// Offset of the file's first byte in the bundle's plaintext.
    pub off: u32,
    /// The first 16 bytes of the file's own content key (a keyed hash under the host's
    /// key): lets a re-backup find a touched but unchanged file, and `restore --verify`
    /// check a file without its bundle.
    pub tag: [u8; 16],
}

impl ContentRef {
    /// A whole blob.
    pub fn whole(scope: u8, ck: [u8; 32], plen: u32) -> Self {
        Self {
            scope,
            ck,
            plen,
            slice: None,
        }
    }

    /// What identifies the bytes this entry holds: scope, the first half of their own
    /// content key (a slice's tag is exactly that) and length.
    pub fn identity(&self) -> (u8, &[u8], u32) {
        let key = match &self.slice {
            Some(s) => &s.tag[..],
            None => &self.ck[..16],
        };
        (self.scope, key, self.plen)
    }

    /// The bytes of `blob` (this entry's opened blob) that belong to the file, or `None`
    /// when the blob does not have them (a whole blob of another length, a slice past its
    /// end): the caller reports that as corruption rather than shift the file.
    pub fn part<'a>(&self, blob: &'a [u8]) -> Option<&'a [u8]> {
        part_of(blob, self.slice.map(|s| s.off), self.plen)
    }
}

/// The `len` bytes of `blob` at `off` (a bundle member's), or all of it when `off` is
/// `None` and it is exactly `len` long (a whole blob); `None` otherwise.
pub fn part_of(blob: &[u8], off: Option<u32>, len: u32) -> Option<&[u8]> {
    let len = len as usize;
    match off {
        None => (blob.len() == len).then_some(blob),
        Some(off) => {
            let from = off as usize;
            blob.get(from..from.checked_add(len)?)
        }
    }
}

/// One entry of a directory.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Node {
    /// Name bytes (not necessarily UTF-8).
    pub name: Vec<u8>,
    /// Kind.
    pub kind: Option<NodeKind>,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Owner name, if resolvable.
    pub user: String,
    /// Group name, if resolvable.
    pub group: String,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Status change time, ns since the epoch (change detection only).
    pub ctime_ns: i64,
    /// Size in bytes.
    pub size: u64,
    /// Link count (hardlink detection).
    pub nlink: u64,
    /// Inode number (change detection and hardlinks).
    pub inode: u64,
    /// Device of the file system (hardlinks, one-file-system).
    pub dev: u64,
    /// Device number of a device node.
    pub rdev: u64,
    /// Symlink target bytes.
    pub target: Vec<u8>,
    /// Extended attributes, sorted by name (ACLs and capabilities travel here).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// File content.
    pub content: Vec<ContentRef>,
    /// Subtree id of a directory.
    pub subtree: Option<Id>,
}

/// The scope table of a tree: which group and host keys its content entries use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scopes {
    /// Group id and epoch (scope 0).
    pub group: (Id16, u32),
    /// Host id and epoch (scope 1).
    pub host: (Id16, u32),
}

/// A directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    /// Scope table.
    pub scopes: Scopes,
    /// Nodes, sorted by name bytes, names unique.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Canonical encoding. Nodes must already be sorted (the archiver sorts them).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.buf.reserve(64 + self.nodes.len() * 160);
        e.map(3);
        e.key(0).u64(1);
        e.key(1).array(2);
        e.array(3)
            .u64(1)
            .bytes(&self.scopes.group.0 .0)
            .u64(self.scopes.group.1.into());
        e.array(3)
            .u64(2)
            .bytes(&self.scopes.host.0 .0)
            .u64(self.scopes.host.1.into());
        e.key(2).array(self.nodes.len());
        for n in &self.nodes {
            encode_node(&mut e, n);
        }
        e.buf
    }

    /// Decodes and checks canonical form (sorted unique names, known kinds, required fields).
    pub fn decode(b: &[u8]) -> Result<Self, CborError> {
        let mut d = Dec::new(b);
        let n = d.map()?;
        if n != 3 {
            return Err(d.err("tree must have 3 fields"));
        }
        let mut prev = None;
        if d.key(&mut prev)? != 0 || d.u64()? != 1 {
            return Err(d.err("unsupported tree version"));
        }
        if d.key(&mut prev)? != 1 || d.array()? != 2 {
            return Err(d.err("tree scope table must have 2 entries"));
        }
        let scope = |d: &mut Dec, kind: u64| -> Result<(Id16, u32), CborError> {
            if d.array()? != 3 || d.u64()? != kind {
                return Err(d.err("bad scope entry"));
            }
            Ok((Id16(d.fixed()?), d.u32()?))
        };
        let scopes = Scopes {
            group: scope(&mut d, 1)?,
            host: scope(&mut d, 2)?,
        };
        if d.key(&mut prev)? != 2 {
            return Err(d.err("missing nodes"));
        }
        let count = d.array()?;
        if count > MAX_NODES {
            return Err(d.err("too many nodes"));
        }
        let mut nodes: Vec<Node> = Vec::with_capacity(count.min(4096));
        for _ in 0..count {
            d.enter()?;
            let node = decode_node(&mut d)?;
            d.leave();
            if nodes.last().is_some_and(|p| p.name >= node.name) {
                return Err(d.err("node names not sorted and unique"));
            }
            nodes.push(node);
        }
        d.finish()?;
        Ok(Self { scopes, nodes })
    }
}

fn encode_node(e: &mut Enc, n: &Node) {
    let kind = n.kind.unwrap_or(NodeKind::File);
    let mut fields = 12; // 0..=11 always present
    let has_user = !n.user.is_empty();
    let has_group = !n.group.is_empty();
    let has_rdev = n.rdev != 0;
    let has_target = kind == NodeKind::Symlink;
    let has_xattrs = !n.xattrs.is_empty();
    let has_content = kind == NodeKind::File;
    let has_subtree = n.subtree.is_some();
    fields += [
        has_user,
        has_group,
        has_rdev,
        has_target,
        has_xattrs,
        has_content,
        has_subtree,
    ]
    .iter()
    .filter(|b| **b)
    .count();
    e.map(fields);
    e.key(0).bytes(&n.name);
    e.key(1).u64(kind as u64);
    e.key(2).u64(n.mode.into());
    e.key(3).u64(n.uid.into());
    e.key(4).u64(n.gid.into());
    e.key(5).i64(n.mtime_ns);
    e.key(6).i64(n.ctime_ns);
    e.key(7).u64(n.size);
    e.key(8).u64(n.nlink);
    e.key(9).u64(n.inode);
    e.key(10).u64(n.dev);
    e.key(11).u64(0); // reserved: node flags, zero in v1
    if has_user {
        e.key(12).text(&n.user);
    }
    if has_group {
        e.key(13).text(&n.group);
    }
    if has_rdev {
        e.key(14).u64(n.rdev);
    }
    if has_target {
        e.key(15).bytes(&n.target);
    }
    if has_xattrs {
        e.key(16).array(n.xattrs.len());
        for (k, v) in &n.xattrs {
            e.array(2).bytes(k).bytes(v);
        }
    }
    if has_content {
        e.key(17).array(n.content.len());
        for c in &n.content {
            match &c.slice {
                None => e.array(3),
                Some(_) => e.array(5),
            }
            .u64(c.scope.into())
            .bytes(&c.ck)
            .u64(c.plen.into());
            if let Some(sl) = &c.slice {
                e.u64(sl.off.into()).bytes(&sl.tag);
            }
        }
    }
    if let Some(t) = &n.subtree {
        e.key(18).bytes(&t.0);
    }
}

fn decode_node(d: &mut Dec) -> Result<Node, CborError> {
    let count = d.map()?;
    let mut prev = None;
    let mut n = Node::default();
    let mut seen = 0u32;
    for _ in 0..count {
        let k = d.key(&mut prev)?;
        if k < 32 {
            seen |= 1 << k;
        }
        match k {
            0 => n.name = d.bytes()?.to_vec(),
            1 => n.kind = Some(NodeKind::from_u8(d.u8()?).ok_or(d.err("unknown node kind"))?),
            2 => n.mode = d.u32()?,
            3 => n.uid = d.u32()?,
            4 => n.gid = d.u32()?,
            5 => n.mtime_ns = d.i64()?,
            6 => n.ctime_ns = d.i64()?,
            7 => n.size = d.u64()?,
            8 => n.nlink = d.u64()?,
            9 => n.inode = d.u64()?,
            10 => n.dev = d.u64()?,
            11 => {
                if d.u64()? != 0 {
                    return Err(d.err("unknown node flags"));
                }
            }
            12 => n.user = d.text()?.to_owned(),
            13 => n.group = d.text()?.to_owned(),
            14 => n.rdev = d.u64()?,
            // The encoder writes a target only for symlinks and content only for files (the
            // kind, key 1, is already read): accepting them elsewhere would decode to a value
            // that re-encodes differently, so a tree's id would not follow from its content.
            15 if n.kind != Some(NodeKind::Symlink) => {
                return Err(d.err("symlink target on a non-symlink"))
            }
            15 => n.target = d.bytes()?.to_vec(),
            16 => {
                let k = d.array()?;
                n.xattrs.reserve(k.min(64));
                for _ in 0..k {
                    if d.array()? != 2 {
                        return Err(d.err("xattr must be a pair"));
                    }
                    n.xattrs.push((d.bytes()?.to_vec(), d.bytes()?.to_vec()));
                }
            }
            17 if n.kind != Some(NodeKind::File) => return Err(d.err("content on a non-file")),
            17 => {
                let k = d.array()?;
                n.content.reserve(k.min(1 << 16));
                for _ in 0..k {
                    let fields = d.array()?;
                    if fields != 3 && fields != 5 {
                        return Err(d.err("content entry must have 3 or 5 fields"));
                    }
                    let scope = d.u8()?;
                    if scope > SCOPE_PRIVATE {
                        return Err(d.err("unknown content scope"));
                    }
                    let ck = d.fixed()?;
                    let plen = d.u32()?;
                    let slice = if fields == 5 {
                        // Bundles hold private files only: a group-scope slice would let
                        // every host holding one member read the others.
                        if scope != SCOPE_PRIVATE {
                            return Err(d.err("bundle slice outside the private scope"));
                        }
                        Some(Slice {
                            off: d.u32()?,
                            tag: d.fixed()?,
                        })
                    } else {
                        None
                    };
                    n.content.push(ContentRef {
                        scope,
                        ck,
                        plen,
                        slice,
                    });
                }
            }
            18 => n.subtree = Some(Id(d.fixed()?)),
            _ => return Err(d.err("unknown node field")),
        }
    }
    // One value, one encoding: fields 0..=11 always, and exactly the kind's own optional
    // fields (the encoder writes content for every file, a target for every symlink).
    if seen & 0xfff != 0xfff {
        return Err(d.err("node misses required fields"));
    }
    let has = |k: u32| seen & (1 << k) != 0;
    let kind = n.kind.ok_or(d.err("node without kind"))?;
    if has(15) != (kind == NodeKind::Symlink)
        || has(17) != (kind == NodeKind::File)
        || has(18) != (kind == NodeKind::Dir)
    {
        return Err(d.err("node fields do not match its kind"));
    }
    if has(14) && !matches!(kind, NodeKind::CharDev | NodeKind::BlockDev) {
        return Err(d.err("device number on a non-device"));
    }
    if has(16) && (n.xattrs.is_empty() || n.xattrs.windows(2).any(|w| w[0].0 >= w[1].0)) {
        return Err(d.err("xattrs empty or not sorted and unique"));
    }
    if (has(12) && n.user.is_empty()) || (has(13) && n.group.is_empty()) || (has(14) && n.rdev == 0)
    {
        return Err(d.err("empty optional field"));
    }
    if n.name.is_empty() || n.name.contains(&b'/') || n.name == b"." || n.name == b".." {
        return Err(d.err("invalid node name"));
    }
    match n.kind {
        Some(NodeKind::Dir) if n.subtree.is_none() => {
            return Err(d.err("directory without subtree"))
        }
        Some(k) if k != NodeKind::Dir && n.subtree.is_some() => {
            return Err(d.err("subtree on a non-directory"))
        }
        _ => {}
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scopes() -> Scopes {
        Scopes {
            group: (Id16([1; 16]), 1),
            host: (Id16([2; 16]), 1),
        }
    }

    prop_compose! {
        fn node()(name in proptest::collection::vec(1u8..=255, 1..20).prop_filter("no slash", |n| !n.contains(&b'/') && n != b"." && n != b".."),
                  kind in 1u8..=6, mode in 0u32..0o7777, uid: u32, mtime: i64, size: u64,
                  xattrs in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 1..8), proptest::collection::vec(any::<u8>(), 0..8)), 0..3),
                  chunks in proptest::collection::vec((0u8..2, any::<[u8; 32]>(), any::<u32>(), proptest::option::of((any::<u32>(), any::<[u8; 16]>()))), 0..4)) -> Node {
            let kind = NodeKind::from_u8(kind).unwrap();
            let mut xattrs = xattrs;
            xattrs.sort();
            xattrs.dedup_by(|a, b| a.0 == b.0);
            Node {
                name, kind: Some(kind), mode, uid, mtime_ns: mtime, size, xattrs,
                content: if kind == NodeKind::File { chunks.into_iter().map(|(scope, ck, plen, sl)| ContentRef { scope, ck, plen, slice: sl.filter(|_| scope == SCOPE_PRIVATE).map(|(off, tag)| Slice { off, tag }) }).collect() } else { vec![] },
                subtree: (kind == NodeKind::Dir).then_some(Id([9; 32])),
                target: if kind == NodeKind::Symlink { b"target".to_vec() } else { vec![] },
                user: "u".into(),
                ..Node::default()
            }
        }
    }

    #[test]
    fn a_bundle_slice_must_be_private_and_parts_stay_inside_their_blob() {
        let slice = Some(Slice {
            off: 2,
            tag: [7; 16],
        });
        let file = |scope| Node {
            name: b"f".to_vec(),
            kind: Some(NodeKind::File),
            content: vec![ContentRef {
                scope,
                ck: [1; 32],
                plen: 3,
                slice,
            }],
            ..Node::default()
        };
        let tree = |scope| Tree {
            scopes: scopes(),
            nodes: vec![file(scope)],
        };
        assert!(Tree::decode(&tree(SCOPE_PRIVATE).encode()).is_ok());
        assert!(Tree::decode(&tree(SCOPE_GROUP).encode()).is_err());

        let c = file(SCOPE_PRIVATE).content[0];
        assert_eq!(c.part(b"abcdef"), Some(&b"cde"[..]));
        assert_eq!(c.part(b"abcd"), None, "past the bundle's end");
        let whole = ContentRef::whole(SCOPE_GROUP, [1; 32], 3);
        assert_eq!(whole.part(b"abc"), Some(&b"abc"[..]));
        assert_eq!(whole.part(b"abcd"), None, "a whole blob of another length");
        // The same bytes whole and bundled are the same content.
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&[1; 32][..16]);
        let bundled = ContentRef {
            ck: [9; 32],
            slice: Some(Slice { off: 0, tag }),
            ..ContentRef::whole(SCOPE_GROUP, [1; 32], 3)
        };
        assert!(same_bytes(&[whole], &[bundled]));
        assert!(!same_bytes(&[whole], &[ContentRef { plen: 4, ..bundled }]));
    }

    proptest! {
        #[test]
        fn round_trip(mut nodes in proptest::collection::vec(node(), 0..12)) {
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            nodes.dedup_by(|a, b| a.name == b.name);
            let t = Tree { scopes: scopes(), nodes };
            let enc = t.encode();
            prop_assert_eq!(Tree::decode(&enc).unwrap(), t.clone());
            prop_assert_eq!(Tree::decode(&enc).unwrap().encode(), enc);
        }
    }

    /// Fuzzing found trees that decoded to a value the encoder writes differently (so
    /// `decode(encode(t)) != t`): a symlink target on a device node (the crash input is
    /// kept as `fuzz/corpus/tree/regression-target-on-device`), and the same for content
    /// on a non-file and nodes without a kind.
    #[test]
    fn fields_the_encoder_drops_do_not_decode() {
        // A tree with one node named "n": keys 0..=11 (kind optional), then `extra`.
        let tree = |kind: Option<u64>, extra: &dyn Fn(&mut Enc) -> usize| {
            let mut tail = Enc::new();
            let pairs = 11 + usize::from(kind.is_some()) + extra(&mut tail);
            let mut e = Enc::new();
            e.map(3).key(0).u64(1).key(1).array(2);
            e.array(3).u64(1).bytes(&[1; 16]).u64(1);
            e.array(3).u64(2).bytes(&[2; 16]).u64(1);
            e.key(2).array(1).map(pairs).key(0).bytes(b"n");
            if let Some(k) = kind {
                e.key(1).u64(k);
            }
            for k in 2..=11 {
                e.key(k).u64(0);
            }
            e.buf.extend_from_slice(&tail.buf);
            e.buf
        };
        let target = |e: &mut Enc| {
            e.key(15).bytes(b"x");
            1
        };
        let content = |e: &mut Enc| {
            e.key(17).array(1).array(3).u64(0).bytes(&[7; 32]).u64(5);
            1
        };
        let nothing = |_: &mut Enc| 0;
        assert!(Tree::decode(&tree(Some(3), &target)).is_ok(), "symlink");
        assert!(Tree::decode(&tree(Some(4), &target)).is_err(), "device");
        assert!(Tree::decode(&tree(Some(1), &content)).is_ok(), "file");
        assert!(Tree::decode(&tree(Some(6), &content)).is_err(), "fifo");
        assert!(Tree::decode(&tree(Some(6), &nothing)).is_ok(), "fifo");
        assert!(Tree::decode(&tree(None, &nothing)).is_err(), "no kind");
    }

    #[test]
    fn unsorted_names_are_rejected() {
        let mk = |name: &[u8]| Node {
            name: name.to_vec(),
            kind: Some(NodeKind::Fifo),
            ..Node::default()
        };
        let t = Tree {
            scopes: scopes(),
            nodes: vec![mk(b"b"), mk(b"a")],
        };
        assert!(Tree::decode(&t.encode()).is_err());
    }
}
