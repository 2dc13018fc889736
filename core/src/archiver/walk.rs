//! The directory walk and the file saver of a backup.

use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::Ordering;

use rayon::prelude::*;

use super::bundle::{self, DirOut, Later};
use super::prefetch::{map_in_order, Entry};
use super::{find_node, is_kind, Ctx, Trie};
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::source::node::{node_kind, read_node, time_ns};
use crate::tree::{ContentRef, Node, NodeKind, Tree, SCOPE_GROUP, SCOPE_PRIVATE};

/// Chunks of one large file sealed in parallel at a time: bounds memory to this many
/// maximum-size chunks per file being read. One per core (the pool has two workers per
/// core) keeps the cores busy on a single large file; 4 on 2 cores was no faster and its
/// chunk copies in flight cost 5 MiB more peak RSS on the benchmark (79 against 75 MiB,
/// means of cold runs).
fn chunk_batch() -> usize {
    (rayon::current_num_threads() / 2).max(2)
}

/// Entries of a directory walked at a time: bounds what waits for its bundles, and is
/// large enough that the read-ahead (`prefetch::AHEAD`) rarely meets a window's end.
const WINDOW: usize = 256;

/// Files at least this large are read ahead as a whole (see `save_file_content`).
const PREFETCH_MIN: u64 = 256 << 10;

/// Stores the requested paths below `dir` and returns the tree id of `dir`.
pub(super) fn save_trie(ctx: &Ctx<'_>, dir: &Path, trie: &Trie, parent: Option<Id>) -> Result<Id> {
    let parent_tree = parent.and_then(|t| ctx.repo.load_tree(&t).ok());
    let entries: Vec<(&OsString, &Trie)> = trie.children.iter().collect();
    let nodes: Vec<Option<Node>> = entries
        .par_iter()
        .map(|(name, child)| -> Result<Option<Node>> {
            let path = dir.join(name);
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    ctx.error(&path, format!("cannot stat: {e}"));
                    return Ok(None);
                }
            };
            let pnode = find_node(parent_tree.as_ref(), name.as_bytes());
            if child.requested {
                let saved = save_entry(ctx, &path, name, &meta, pnode, meta.dev(), false)?;
                return Ok(saved.map(|(node, _)| node));
            }
            if !meta.is_dir() {
                ctx.error(&path, "is not a directory (needed to reach a backup path)");
                return Ok(None);
            }
            let mut node = match read_node(&path, name, &meta, NodeKind::Dir) {
                Ok(n) => n,
                Err(e) => {
                    ctx.error(&path, format!("cannot read metadata: {e}"));
                    return Ok(None);
                }
            };
            let psub = pnode
                .filter(|p| p.kind == Some(NodeKind::Dir))
                .and_then(|p| p.subtree);
            node.subtree = Some(save_trie(ctx, &path, child, psub)?);
            Ok(Some(node))
        })
        .collect::<Result<_>>()?;
    ctx.store_tree(&Tree {
        scopes: ctx.scopes,
        nodes: sorted(nodes),
    })
}

fn sorted(nodes: Vec<Option<Node>>) -> Vec<Node> {
    let mut v: Vec<Node> = nodes.into_iter().flatten().collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Backs up one entry; `None` when it is excluded, a socket, or unreadable (recorded).
/// With `defer` (the caller runs [`bundle::store`] on its directory), a small private file
/// is only listed and a directory may leave its last small files to its parent's bundle:
/// see [`Later`].
fn save_entry(
    ctx: &Ctx<'_>,
    path: &Path,
    name: &OsStr,
    meta: &Metadata,
    parent: Option<&Node>,
    root_dev: u64,
    defer: bool,
) -> Result<Option<(Node, Later)>> {
    ctx.check_cancel()?;
    let Some(kind) = node_kind(meta) else {
        return Ok(None);
    };
    let ex = &ctx.opts.excluder;
    if ex.excludes_path(path, kind == NodeKind::Dir)
        || ex.excludes_by_size(meta.size(), kind == NodeKind::File)
    {
        return Ok(None);
    }
    let mut node = match read_node(path, name, meta, kind) {
        Ok(n) => n,
        Err(e) => {
            ctx.error(path, format!("cannot read metadata: {e}"));
            return Ok(None);
        }
    };
    match kind {
        NodeKind::File => match save_file_content(ctx, path, &mut node, parent, defer)? {
            Saved::Stored => {}
            Saved::Deferred => return Ok(Some((node, Later::Read))),
            Saved::Failed => return Ok(None),
        },
        NodeKind::Dir => {
            let psub = parent
                .filter(|p| p.kind == Some(NodeKind::Dir))
                .and_then(|p| p.subtree);
            let out = if ctx.opts.one_file_system && meta.dev() != root_dev {
                // A mount point: keep the directory itself, not the other file system.
                DirOut::Stored(ctx.store_tree(&Tree {
                    scopes: ctx.scopes,
                    nodes: vec![],
                })?)
            } else {
                save_dir(ctx, path, psub, root_dev, defer)?
            };
            match out {
                DirOut::Stored(tid) => {
                    count_dir(ctx, psub, tid);
                    node.subtree = Some(tid);
                }
                DirOut::Pending(p) => return Ok(Some((node, Later::Dir(p)))),
            }
        }
        _ => {}
    }
    Ok(Some((node, Later::Done)))
}

/// Opens a source file the walk saw as a regular file: without touching its atime where
/// the kernel allows (`O_NOATIME` needs the file's owner or root), and never through a
/// symlink that replaced it since.
pub(super) fn open_source(path: &Path) -> std::io::Result<std::fs::File> {
    let open = |flags| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)
    };
    open(libc::O_NOATIME | libc::O_NOFOLLOW).or_else(|_| open(libc::O_NOFOLLOW))
}

/// Counts a file that was read as new or changed, and reports it done.
pub(super) fn count_file_read(ctx: &Ctx<'_>, path: &Path, parent: Option<&Node>, read: u64) {
    let counter = if is_kind(parent, NodeKind::File) {
        &ctx.counts.files_changed
    } else {
        &ctx.counts.files_new
    };
    counter.fetch_add(1, Ordering::Relaxed);
    ctx.progress.file_done(path, read, false);
}

/// Counts a stored directory as new, changed or unchanged against its parent's subtree.
pub(super) fn count_dir(ctx: &Ctx<'_>, psub: Option<Id>, tid: Id) {
    let counter = match psub {
        None => &ctx.counts.dirs_new,
        Some(p) if p == tid => &ctx.counts.dirs_unchanged,
        Some(_) => &ctx.counts.dirs_changed,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Stores directory `path`; with `pass_up`, its last small files may be left for the
/// parent's bundle ([`DirOut::Pending`]).
fn save_dir(
    ctx: &Ctx<'_>,
    path: &Path,
    parent: Option<Id>,
    root_dev: u64,
    pass_up: bool,
) -> Result<DirOut> {
    // Each parent tree is needed for its one directory only: loaded here and dropped with
    // it, not cached, so a re-backup holds the parent trees of the directories in progress,
    // not of the whole snapshot (a cache of them grew to 400 MiB on a million files).
    let parent_tree = parent.and_then(|t| ctx.repo.load_tree(&t).ok());
    let keep_only = match ctx.opts.excluder.matching_tag_files(path) {
        Ok(tags) if !tags.is_empty() => Some(tags),
        Ok(_) => None,
        Err(e) => {
            ctx.error(path, format!("cannot check exclusion tag files: {e}"));
            None
        }
    };
    let mut entries: Vec<Entry> = Vec::new();
    match std::fs::read_dir(path) {
        Ok(rd) => {
            for entry in rd {
                match entry {
                    Ok(e) => entries.push(Entry {
                        name: e.file_name(),
                        // From readdir's d_type on most file systems: no extra syscall.
                        ftype: e.file_type().ok(),
                    }),
                    Err(e) => ctx.error(path, format!("cannot list directory: {e}")),
                }
            }
        }
        Err(e) => ctx.error(path, format!("cannot list directory: {e}")),
    }
    if let Some(keep) = &keep_only {
        entries.retain(|e| keep.contains(&e.name));
    }
    entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let ex = &ctx.opts.excluder;
    // Only files the worker will read: not excluded, and not unchanged since the parent
    // snapshot (a re-backup reads almost none, and reading them ahead would cost a full read).
    let wanted = |p: &Path, m: &Metadata| {
        let name = p.file_name().unwrap_or_default();
        let pnode = find_node(parent_tree.as_ref(), name.as_bytes());
        !ex.excludes_path(p, false) && !ex.excludes_by_size(m.size(), true) && !same_stat(pnode, m)
    };
    let each = |e: &Entry| {
        let name = &e.name;
        let child = path.join(name);
        match std::fs::symlink_metadata(&child) {
            Ok(meta) => save_entry(
                ctx,
                &child,
                name,
                &meta,
                super::find_node(parent_tree.as_ref(), name.as_bytes()),
                root_dev,
                true,
            ),
            Err(e) => {
                ctx.error(&child, format!("vanished or unreadable: {e}"));
                Ok(None)
            }
        }
    };
    // A window at a time, so that the subdirectories waiting for this directory's bundle
    // are at most a window's (`bundle::DirBundler`).
    let mut bundler = bundle::DirBundler::new(ctx, path, parent_tree.as_ref());
    for window in entries.chunks(WINDOW) {
        let nodes = map_in_order(path, window, wanted, each)?;
        bundler.push(nodes.into_iter().flatten())?;
    }
    bundler.finish(parent, pass_up)
}

/// Whether `m` is the parent's file node unchanged: size, mtime, ctime and inode equal.
fn same_stat(parent: Option<&Node>, m: &Metadata) -> bool {
    parent.is_some_and(|p| {
        is_kind(Some(p), NodeKind::File)
            && p.size == m.size()
            && p.mtime_ns == time_ns(m.mtime(), m.mtime_nsec())
            && p.ctime_ns == time_ns(m.ctime(), m.ctime_nsec())
            && p.inode == m.ino()
    })
}

/// Whether the parent's content list can be reused for `node` unread.
fn reusable(ctx: &Ctx<'_>, node: &Node, parent: Option<&Node>) -> Option<Vec<ContentRef>> {
    let p = parent.filter(|p| is_kind(Some(p), NodeKind::File))?;
    let same = p.size == node.size
        && p.mtime_ns == node.mtime_ns
        && p.ctime_ns == node.ctime_ns
        && p.inode == node.inode;
    if !same {
        return None;
    }
    // A parent whose blobs were lost (damaged index, repaired repository) must not be
    // propagated: read the file again instead.
    let all_known = p.content.iter().all(|c| {
        let (_, id) = ctx.repo.content_id(c);
        ctx.repo.index().contains(&id)
    });
    all_known.then(|| p.content.clone())
}

/// What [`save_file_content`] did with a file.
enum Saved {
    /// `node.content` is filled.
    Stored,
    /// Left for [`bundle::store`].
    Deferred,
    /// Could not be read (recorded).
    Failed,
}

/// Fills `node.content`, or with `defer` leaves a small private file for its bundle.
fn save_file_content(
    ctx: &Ctx<'_>,
    path: &Path,
    node: &mut Node,
    parent: Option<&Node>,
    defer: bool,
) -> Result<Saved> {
    ctx.counts
        .total_bytes
        .fetch_add(node.size, Ordering::Relaxed);
    if let Some(content) = reusable(ctx, node, parent) {
        node.content = content;
        ctx.counts.files_unchanged.fetch_add(1, Ordering::Relaxed);
        ctx.progress.file_done(path, node.size, true);
        return Ok(Saved::Stored);
    }
    let private = ctx.scope.is_private(path, node.size);
    if defer && private && node.size > 0 && node.size < bundle::MEMBER_MAX {
        return Ok(Saved::Deferred);
    }
    let file = match open_source(path) {
        Ok(f) => f,
        Err(e) => {
            ctx.error(path, format!("cannot open: {e}"));
            return Ok(Saved::Failed);
        }
    };
    if node.size >= PREFETCH_MIN {
        // Ask the kernel to read the whole file ahead: while this worker compresses the
        // chunks it has, the next ones are already on their way from the disk. Only advice;
        // a failure changes nothing.
        let _ = nix::fcntl::posix_fadvise(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
        );
    }
    match chunk_file(ctx, file, private) {
        Ok((content, read)) => {
            if read != node.size {
                // The file changed while it was read; what was read is consistent chunks
                // of some version of it, so keep it, with the size actually read.
                node.size = read;
            }
            node.content = content;
            count_file_read(ctx, path, parent, read);
            Ok(Saved::Stored)
        }
        Err(Error::Io { source, .. }) => {
            ctx.error(path, format!("cannot read: {source}"));
            Ok(Saved::Failed)
        }
        Err(e) => Err(e),
    }
}

pub(super) fn chunk_file(
    ctx: &Ctx<'_>,
    input: impl Read,
    private: bool,
) -> Result<(Vec<ContentRef>, u64)> {
    let io = |e| Error::io("read", "", e);
    let mut chunker = Chunker::new(input, ctx.repo.gear().clone(), &ctx.repo.config().chunker)
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    let mut content = Vec::new();
    let mut read = 0u64;
    loop {
        ctx.check_cancel()?;
        let per_batch = chunk_batch();
        let mut batch = Vec::with_capacity(per_batch);
        while batch.len() < per_batch {
            match chunker.next_chunk().map_err(io)? {
                Some(c) => batch.push(c),
                None => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        let n: u64 = batch.iter().map(|c| c.len() as u64).sum();
        read += n;
        ctx.counts.bytes_read.fetch_add(n, Ordering::Relaxed);
        ctx.progress.bytes_read(n);
        let last = batch.len() < per_batch;
        let refs: Vec<ContentRef> = if batch.len() == 1 {
            vec![save_chunk(ctx, &batch[0], private)?]
        } else {
            batch
                .par_iter()
                .map(|c| save_chunk(ctx, c, private))
                .collect::<Result<_>>()?
        };
        content.extend(refs);
        if last {
            break;
        }
    }
    Ok((content, read))
}

fn save_chunk(ctx: &Ctx<'_>, data: &[u8], private: bool) -> Result<ContentRef> {
    let (ck, id) = ctx.repo.data_key_and_id(data, private);
    if ctx.packer.reserve(&id) && !ctx.opts.dry_run {
        ctx.packer.add(ctx.repo.seal_data(data, &ck, id, private))?;
    }
    let scope = if private { SCOPE_PRIVATE } else { SCOPE_GROUP };
    Ok(ContentRef::whole(scope, ck, data.len() as u32))
}

/// Backs up standard input as a single file `name` in an otherwise empty root.
pub(super) fn save_stdin(ctx: &Ctx<'_>, name: &str, input: &mut (dyn Read + Send)) -> Result<Id> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::InvalidInput(format!(
            "invalid --stdin-filename {name:?}"
        )));
    }
    let (content, read) = chunk_file(ctx, input, false)?;
    ctx.counts.files_new.fetch_add(1, Ordering::Relaxed);
    ctx.counts.total_bytes.fetch_add(read, Ordering::Relaxed);
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let node = Node {
        name: name.as_bytes().to_vec(),
        kind: Some(NodeKind::File),
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_ns: now,
        ctime_ns: now,
        size: read,
        nlink: 1,
        content,
        ..Node::default()
    };
    ctx.store_tree(&Tree {
        scopes: ctx.scopes,
        nodes: vec![node],
    })
}
