//! Small files of one directory stored together in bundle blobs.
//!
//! Compressed one by one, small files compress badly: zstd starts every frame without
//! context, and neighbours in a directory share most of their words. On the benchmark
//! dataset (70.8k files under 64 KiB, 320 MB) zstd -3 gives 148.6 MB one file at a time and
//! 127.1 MB in bundles of up to 256 KiB of one directory, and each bundle saves the per-blob
//! pack header entry, index entry and AEAD tag its members would each have cost.
//!
//! Only private-scope files are bundled. A bundle is a private data blob under the host's
//! keys like each member would have been, so it lets no other host read anything; a
//! group-scope bundle would let any host holding one member's content read the others.
//!
//! The walk lists a directory's entries a window at a time and hands them to its
//! [`DirBundler`] in name order; deferred files are cut into groups by the sizes it saw, and
//! full groups are read and sealed in parallel, so memory is one group per worker and the
//! same directory always makes the same bundles (an unchanged directory backed up without a
//! parent dedups whole bundles).
//!
//! Most directories hold only a few small files. A directory's last group, when under
//! [`PASS_MAX`], is read but not sealed: the directory comes back [`Pending`], its tree
//! complete but for those files' places, and its parent adds the group to its own, in name
//! order, as if the files were its own. When that bundle is sealed every pending directory
//! in it gets its slices and is stored, deepest first (a tree needs its subtrees' ids).
//! On the benchmark this takes the small files from 127.1 MB to 116.7 MB. Pending bytes
//! are bounded by [`PENDING_BUDGET`] over the whole backup: past it a directory seals its
//! own last group (only which bundles form changes, never what a file holds), and so does
//! a directory of more than [`PASS_NODES_MAX`] entries, since a pending directory holds all
//! its nodes.
//!
//! A file whose content is the same as its parent snapshot node's (touched, `chmod`ed) keeps
//! that node's reference: the tree keeps each member's tag, a keyed hash of its content.
//! A file whose content is already stored as a whole blob keeps that blob. A file that grew
//! past [`MEMBER_MAX`] since it was listed is chunked as a large file.

use std::ffi::OsStr;
use std::io::{Cursor, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use rayon::prelude::*;

use super::walk::{chunk_file, count_dir, count_file_read, open_source};
use super::{find_node, is_kind, Ctx};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::tree::{ContentRef, Node, NodeKind, Slice, Tree, SCOPE_PRIVATE};

/// Files smaller than this are bundled (when private): far below the chunker's minimum, so
/// such a file is always one chunk.
pub(super) const MEMBER_MAX: u64 = 64 << 10;

/// A group is closed once its members' listed sizes reach this. Larger bundles compress a
/// little better (512 KiB: 126.4 MB against 127.1 MB per directory) but a restore or
/// `mount` read of one small file fetches and opens its whole bundle.
const BUNDLE_TARGET: u64 = 256 << 10;

/// A directory's last group smaller than this goes up to its parent (16 KiB: 123.6 MB,
/// 64 KiB: 116.7 MB, 256 KiB: 113.8 MB on the benchmark's small files).
const PASS_MAX: u64 = 64 << 10;

/// Bytes held by pending directories over the whole backup, their data and (estimated)
/// their trees.
const PENDING_BUDGET: u64 = 8 << 20;

/// A directory with more entries than this stores its own last group: a pending
/// directory holds all its nodes, and a large directory has bundles of its own to share.
const PASS_NODES_MAX: usize = 64;

/// Bytes a pending tree's node is counted for against the budget.
const NODE_COST: u64 = 256;

/// What the walk left for later in a directory entry.
pub(super) enum Later {
    /// Nothing: the node is complete.
    Done,
    /// A small private file to read into a bundle.
    Read,
    /// A directory waiting for the bundle its last small files go into.
    Dir(Pending),
}

/// What storing a directory came to.
pub(super) enum DirOut {
    /// Its tree is stored.
    Stored(Id),
    /// Its tree waits for the parent's bundle.
    Pending(Pending),
}

/// A directory whose tree waits for a bundle: its last group's bytes, read and unsealed,
/// and its nodes, complete but for the places in [`Slot`]s.
pub(super) struct Pending {
    buf: Vec<u8>,
    nodes: Vec<Node>,
    slots: Vec<Slot>,
    /// The parent snapshot's subtree, to count the directory once stored.
    psub: Option<Id>,
    /// Members in `buf`, its pending subdirectories' included.
    members: usize,
    /// Budget taken, given back once stored.
    reserved: u64,
}

/// A place in a pending tree that the bundle fills.
enum Slot {
    /// A member file: its node, and its bytes in the group.
    Member {
        node: usize,
        start: usize,
        len: usize,
        ck: [u8; 32],
    },
    /// A pending subdirectory whose group starts at `base` in this one's.
    Dir {
        node: usize,
        base: usize,
        pending: Box<Pending>,
    },
}

/// A group item: a file to read or a pending subdirectory to take in.
enum Item {
    File(usize),
    Dir(usize, Pending),
}

/// What became of a file read for a group.
enum Member {
    /// Content found elsewhere (parent node, whole blob), or chunked (it grew): the
    /// content list and the bytes read.
    Stored(Vec<ContentRef>, u64),
    /// Could not be read (recorded): left out of the tree.
    Failed,
}

/// A group read: its bytes, its places (indices into the directory's nodes), and the
/// files already settled.
#[derive(Default)]
struct GroupRead {
    buf: Vec<u8>,
    slots: Vec<Slot>,
    members: usize,
    settled: Vec<(usize, Member)>,
    /// Pending subdirectories stored once the group was sealed: node and tree id.
    subtrees: Vec<(usize, Id)>,
}

/// Bundles one directory's deferred files and pending subdirectories as the walk hands
/// over its entries, a window at a time and in name order: full groups are read and
/// sealed in parallel at once, so what waits is at most one window's pending
/// subdirectories and the open group's unread files.
pub(super) struct DirBundler<'c, 'a> {
    ctx: &'c Ctx<'a>,
    dir: &'c Path,
    parent_tree: Option<&'c Tree>,
    nodes: Vec<Node>,
    keep: Vec<bool>,
    open: Vec<Item>,
    open_bytes: u64,
}

impl<'c, 'a> DirBundler<'c, 'a> {
    pub(super) fn new(ctx: &'c Ctx<'a>, dir: &'c Path, parent_tree: Option<&'c Tree>) -> Self {
        Self {
            ctx,
            dir,
            parent_tree,
            nodes: Vec::new(),
            keep: Vec::new(),
            open: Vec::new(),
            open_bytes: 0,
        }
    }

    /// Takes the next entries (in name order), and stores every group they fill.
    pub(super) fn push(&mut self, entries: impl IntoIterator<Item = (Node, Later)>) -> Result<()> {
        let mut full = Vec::new();
        for (node, later) in entries {
            let i = self.nodes.len();
            match later {
                Later::Done => {}
                Later::Read => {
                    self.open_bytes += node.size;
                    self.open.push(Item::File(i));
                }
                Later::Dir(p) => {
                    self.open_bytes += p.buf.len() as u64;
                    self.open.push(Item::Dir(i, p));
                }
            }
            self.nodes.push(node);
            self.keep.push(true);
            if self.open_bytes >= BUNDLE_TARGET {
                full.push(std::mem::take(&mut self.open));
                self.open_bytes = 0;
            }
        }
        if full.is_empty() {
            return Ok(());
        }
        let (ctx, dir, parent_tree) = (self.ctx, self.dir, self.parent_tree);
        let nodes: &[Node] = &self.nodes;
        let done: Vec<GroupRead> = full
            .into_par_iter()
            .map(|items| -> Result<GroupRead> {
                let mut r = read_group(ctx, dir, items, nodes, parent_tree)?;
                let sealed = seal(ctx, &r)?;
                settle_slots(ctx, &mut r, sealed)?;
                GROUP_BUF.set(std::mem::take(&mut r.buf));
                Ok(r)
            })
            .collect::<Result<_>>()?;
        for r in done {
            self.apply(r);
        }
        Ok(())
    }

    /// Stores the last group and the tree, or with `pass_up` leaves a small last group
    /// (and so the tree) to the parent, budget permitting.
    pub(super) fn finish(mut self, psub: Option<Id>, pass_up: bool) -> Result<DirOut> {
        let ctx = self.ctx;
        let items = std::mem::take(&mut self.open);
        let mut reserved = 0u64;
        // Pending subdirectories in the group hold their own reservations.
        let theirs: u64 = items
            .iter()
            .map(|it| match it {
                Item::Dir(_, p) => p.buf.len() as u64,
                Item::File(_) => 0,
            })
            .sum();
        let up = pass_up
            && !items.is_empty()
            && self.open_bytes < PASS_MAX
            && self.nodes.len() <= PASS_NODES_MAX
            && {
                let want =
                    self.open_bytes.saturating_sub(theirs) + self.nodes.len() as u64 * NODE_COST;
                let ok = reserve(ctx, want);
                if ok {
                    reserved = want;
                }
                ok
            };
        let mut pending = None;
        if !items.is_empty() {
            let mut r = read_group(ctx, self.dir, items, &self.nodes, self.parent_tree)?;
            if up && r.members > 0 {
                let slots = std::mem::take(&mut r.slots);
                // Exactly its size: many of these may wait at once.
                pending = Some((r.buf.to_vec(), slots, r.members));
            } else {
                let sealed = seal(ctx, &r)?;
                settle_slots(ctx, &mut r, sealed)?;
            }
            GROUP_BUF.set(std::mem::take(&mut r.buf));
            self.apply(r);
        }
        // Drop what could not be read; the pending places move with their nodes.
        let mut new_index = vec![usize::MAX; self.nodes.len()];
        let mut kept = Vec::with_capacity(self.nodes.len());
        for (i, n) in self.nodes.into_iter().enumerate() {
            if self.keep[i] {
                new_index[i] = kept.len();
                kept.push(n);
            }
        }
        match pending {
            Some((buf, mut slots, members)) => {
                for s in &mut slots {
                    match s {
                        Slot::Member { node, .. } | Slot::Dir { node, .. } => {
                            *node = new_index[*node]
                        }
                    }
                }
                Ok(DirOut::Pending(Pending {
                    buf,
                    nodes: kept,
                    slots,
                    psub,
                    members,
                    reserved,
                }))
            }
            None => {
                release(ctx, reserved);
                Ok(DirOut::Stored(ctx.store_tree(&Tree {
                    scopes: ctx.scopes,
                    nodes: kept,
                })?))
            }
        }
    }

    fn apply(&mut self, r: GroupRead) {
        for (i, tid) in r.subtrees {
            self.nodes[i].subtree = Some(tid);
        }
        for (i, m) in r.settled {
            match m {
                Member::Stored(content, read) => {
                    self.nodes[i].content = content;
                    // The file changed since it was listed: keep what was read.
                    self.nodes[i].size = read;
                }
                Member::Failed => self.keep[i] = false,
            }
        }
    }
}

thread_local! {
    /// A worker's group buffer, kept: fresh buffers of a few hundred KiB for each group
    /// raised glibc's mmap threshold and left the heap fragmented, 20 MiB more peak RSS
    /// on the benchmark's backup (measured; a fixed `MALLOC_MMAP_THRESHOLD_` removed it).
    static GROUP_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Takes `n` bytes of the pending budget, if there are.
fn reserve(ctx: &Ctx<'_>, n: u64) -> bool {
    ctx.pending
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            (used + n <= PENDING_BUDGET).then_some(used + n)
        })
        .is_ok()
}

fn release(ctx: &Ctx<'_>, n: u64) {
    ctx.pending.fetch_sub(n, Ordering::AcqRel);
}

/// Reads a group's files into one buffer, and takes in its pending subdirectories.
fn read_group(
    ctx: &Ctx<'_>,
    dir: &Path,
    items: Vec<Item>,
    nodes: &[Node],
    parent_tree: Option<&Tree>,
) -> Result<GroupRead> {
    let mut r = GroupRead {
        buf: GROUP_BUF.take(),
        ..GroupRead::default()
    };
    r.buf.clear();
    for item in items {
        ctx.check_cancel()?;
        let i = match item {
            Item::Dir(i, mut p) => {
                let base = r.buf.len();
                r.buf.append(&mut p.buf);
                r.members += p.members;
                r.slots.push(Slot::Dir {
                    node: i,
                    base,
                    pending: Box::new(p),
                });
                continue;
            }
            Item::File(i) => i,
        };
        let node = &nodes[i];
        let path = dir.join(OsStr::from_bytes(&node.name));
        let parent = find_node(parent_tree, &node.name);
        let start = r.buf.len();
        let mut file = match open_source(&path) {
            Ok(f) => f,
            Err(e) => {
                ctx.error(&path, format!("cannot open: {e}"));
                r.settled.push((i, Member::Failed));
                continue;
            }
        };
        if let Err(e) = (&mut file).take(MEMBER_MAX).read_to_end(&mut r.buf) {
            r.buf.truncate(start);
            ctx.error(&path, format!("cannot read: {e}"));
            r.settled.push((i, Member::Failed));
            continue;
        }
        let len = r.buf.len() - start;
        if len as u64 == MEMBER_MAX {
            // It grew since it was listed: chunk it as a large file, from what was read on.
            let head = r.buf.split_off(start);
            let member = match chunk_file(ctx, Cursor::new(head).chain(file), true) {
                Ok((content, read)) => {
                    count_file_read(ctx, &path, parent, read);
                    Member::Stored(content, read)
                }
                Err(Error::Io { source, .. }) => {
                    ctx.error(&path, format!("cannot read: {source}"));
                    Member::Failed
                }
                Err(e) => return Err(e),
            };
            r.settled.push((i, member));
            continue;
        }
        ctx.counts
            .bytes_read
            .fetch_add(len as u64, Ordering::Relaxed);
        ctx.progress.bytes_read(len as u64);
        count_file_read(ctx, &path, parent, len as u64);
        if len == 0 {
            r.settled.push((i, Member::Stored(Vec::new(), 0)));
            continue;
        }
        let (ck, id) = ctx.repo.data_key_and_id(&r.buf[start..], true);
        let known = same_content(ctx, parent, &ck, len).or_else(|| {
            ctx.repo
                .index()
                .contains(&id)
                .then(|| ContentRef::whole(SCOPE_PRIVATE, ck, len as u32))
        });
        if let Some(c) = known {
            r.buf.truncate(start);
            r.settled.push((i, Member::Stored(vec![c], len as u64)));
            continue;
        }
        r.members += 1;
        r.slots.push(Slot::Member {
            node: i,
            start,
            len,
            ck,
        });
    }
    Ok(r)
}

/// A sealed group: the blob's whole reference, and whether it holds one member only (then
/// that member is the blob, with no slice).
#[derive(Clone, Copy)]
struct Sealed {
    blob: ContentRef,
    alone: bool,
}

impl Sealed {
    fn member(&self, start: usize, len: usize, ck: &[u8; 32]) -> ContentRef {
        if self.alone {
            return self.blob;
        }
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&ck[..16]);
        ContentRef {
            plen: len as u32,
            slice: Some(Slice {
                off: start as u32,
                tag,
            }),
            ..self.blob
        }
    }
}

/// Seals a group's bytes as one private data blob (unless it is stored already).
fn seal(ctx: &Ctx<'_>, r: &GroupRead) -> Result<Option<Sealed>> {
    if r.members == 0 {
        return Ok(None);
    }
    let (ck, id) = ctx.repo.data_key_and_id(&r.buf, true);
    if ctx.packer.reserve(&id) && !ctx.opts.dry_run {
        ctx.packer.add(ctx.repo.seal_data(&r.buf, &ck, id, true))?;
    }
    Ok(Some(Sealed {
        blob: ContentRef::whole(SCOPE_PRIVATE, ck, r.buf.len() as u32),
        alone: r.members == 1,
    }))
}

/// Fills a sealed group's places: its own files become settled members, its pending
/// subdirectories are stored.
fn settle_slots(ctx: &Ctx<'_>, r: &mut GroupRead, sealed: Option<Sealed>) -> Result<()> {
    let slots = std::mem::take(&mut r.slots);
    let Some(sealed) = sealed else {
        return Ok(());
    };
    for (node, filled) in fill(ctx, slots, 0, &sealed)? {
        match filled {
            Filled::Content(c) => r
                .settled
                .push((node, Member::Stored(vec![c], u64::from(c.plen)))),
            Filled::Subtree(tid) => r.subtrees.push((node, tid)),
        }
    }
    Ok(())
}

/// What a place in a sealed bundle became.
enum Filled {
    /// A member's content entry.
    Content(ContentRef),
    /// A pending subdirectory's stored tree.
    Subtree(Id),
}

/// Resolves places whose bytes start at `base` in the sealed bundle, storing pending
/// subdirectories (deepest first).
fn fill(
    ctx: &Ctx<'_>,
    slots: Vec<Slot>,
    base: usize,
    sealed: &Sealed,
) -> Result<Vec<(usize, Filled)>> {
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        out.push(match slot {
            Slot::Member {
                node,
                start,
                len,
                ck,
            } => (node, Filled::Content(sealed.member(base + start, len, &ck))),
            Slot::Dir {
                node,
                base: b,
                pending,
            } => (
                node,
                Filled::Subtree(finish(ctx, *pending, base + b, sealed)?),
            ),
        });
    }
    Ok(out)
}

/// Gives a pending directory (whose group starts at `base` in the sealed bundle) its
/// places and stores it.
fn finish(ctx: &Ctx<'_>, p: Pending, base: usize, sealed: &Sealed) -> Result<Id> {
    let Pending {
        mut nodes,
        slots,
        psub,
        reserved,
        ..
    } = p;
    for (node, filled) in fill(ctx, slots, base, sealed)? {
        match filled {
            Filled::Content(c) => nodes[node].content = vec![c],
            Filled::Subtree(tid) => nodes[node].subtree = Some(tid),
        }
    }
    release(ctx, reserved);
    let tid = ctx.store_tree(&Tree {
        scopes: ctx.scopes,
        nodes,
    })?;
    count_dir(ctx, psub, tid);
    Ok(tid)
}

/// The parent node's reference, when it holds exactly this content and its blob is still
/// indexed.
fn same_content(
    ctx: &Ctx<'_>,
    parent: Option<&Node>,
    ck: &[u8; 32],
    len: usize,
) -> Option<ContentRef> {
    let p = parent.filter(|p| is_kind(Some(p), NodeKind::File))?;
    let [c] = p.content.as_slice() else {
        return None;
    };
    let same = c.scope == SCOPE_PRIVATE
        && c.plen as usize == len
        && match &c.slice {
            Some(s) => s.tag[..] == ck[..16],
            None => c.ck == *ck,
        };
    (same && ctx.repo.index().contains(&ctx.repo.content_id(c).1)).then_some(*c)
}
