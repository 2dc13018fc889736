//! The FUSE side of `cairn mount`: inode numbers, attributes and replies over the core's
//! browse layer (the restic layout of `browse::layout`, trees loaded as directories are
//! opened, file reads through `browse::reader`).
//!
//! Requests arrive one at a time on the session thread; directory work stays there (trees
//! come from the local tree cache), while file reads, which may wait on the network, go to
//! the worker pool and reply from there, so one slow read does not stall `ls`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_core::browse::layout::{self, Layout};
use cairn_core::browse::reader::{ChunkCache, FileReader};
use cairn_core::browse::root_node;
use cairn_core::id::SnapshotId;
use cairn_core::repository::{Repository, TreeCache};
use cairn_core::snapshot::Snapshot;
use cairn_core::tree::{Node, NodeKind};
use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyXattr, Request,
};

/// Everything in a snapshot is immutable, and the layout is fixed at mount time, so the
/// kernel may keep what it learnt for long.
const TTL: Duration = Duration::from_secs(3600);

/// Plaintext chunks kept for reads (the kernel keeps its own page cache on top).
const CHUNK_CACHE_BYTES: usize = 64 << 20;

enum What {
    /// A directory of the layout.
    Layout(usize),
    /// `latest`.
    Link(String),
    /// A node of snapshot `snap` (a snapshot's root is a made-up directory node).
    Node { snap: usize, node: Arc<Node> },
}

struct Inode {
    parent: u64,
    what: What,
}

/// An open directory: its entries, listed once at open.
type Listing = Vec<(u64, FileType, Vec<u8>)>;

/// The mounted repository.
pub struct CairnFs {
    repo: Arc<Repository>,
    chunks: Arc<ChunkCache>,
    trees: TreeCache,
    snaps: Vec<(SnapshotId, Snapshot)>,
    layout: Layout,
    /// `inodes[ino - 1]`; the root is inode 1, as FUSE wants.
    inodes: Vec<Inode>,
    by_name: HashMap<(u64, Vec<u8>), u64>,
    /// Hard-linked files of one snapshot share an inode, so `cp -a` keeps them linked.
    hardlinks: HashMap<(usize, u64, u64), u64>,
    files: HashMap<u64, Arc<FileReader>>,
    dirs: HashMap<u64, Arc<Listing>>,
    next_fh: u64,
    uid: u32,
    gid: u32,
    /// Time of the newest snapshot, for the layout's directories.
    newest: SystemTime,
}

fn time(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

fn file_type(k: Option<NodeKind>) -> FileType {
    match k {
        Some(NodeKind::Dir) => FileType::Directory,
        Some(NodeKind::Symlink) => FileType::Symlink,
        Some(NodeKind::CharDev) => FileType::CharDevice,
        Some(NodeKind::BlockDev) => FileType::BlockDevice,
        Some(NodeKind::Fifo) => FileType::NamedPipe,
        _ => FileType::RegularFile,
    }
}

/// glibc's 64-bit `dev_t` in the kernel's 32-bit encoding, which FUSE carries.
fn fuse_rdev(dev: u64) -> u32 {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    ((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)) as u32
}

impl CairnFs {
    /// A file system over `snaps` of `repo`.
    pub fn new(repo: Repository, snaps: Vec<(SnapshotId, Snapshot)>) -> Self {
        let layout = Layout::new(&snaps);
        let newest = snaps.iter().map(|(_, s)| s.time_ns).max().unwrap_or(0);
        Self {
            repo: Arc::new(repo),
            chunks: Arc::new(ChunkCache::new(CHUNK_CACHE_BYTES)),
            trees: TreeCache::default(),
            snaps,
            layout,
            inodes: vec![Inode {
                parent: 1,
                what: What::Layout(0),
            }],
            by_name: HashMap::new(),
            hardlinks: HashMap::new(),
            files: HashMap::new(),
            dirs: HashMap::new(),
            next_fh: 1,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            newest: time(newest),
        }
    }

    fn inode(&self, ino: u64) -> Option<&Inode> {
        ino.checked_sub(1)
            .and_then(|i| self.inodes.get(usize::try_from(i).ok()?))
    }

    /// The inode of `name` in `parent`, made on first sight: `what` runs only then, so
    /// listing a directory again does not copy its nodes again.
    fn add(&mut self, parent: u64, name: &[u8], what: impl FnOnce() -> What) -> u64 {
        let key = (parent, name.to_vec());
        if let Some(&ino) = self.by_name.get(&key) {
            return ino;
        }
        let what = what();
        let link_key = match &what {
            What::Node { snap, node } if node.kind == Some(NodeKind::File) && node.nlink > 1 => {
                Some((*snap, node.dev, node.inode))
            }
            _ => None,
        };
        let ino = match link_key.as_ref().and_then(|k| self.hardlinks.get(k)) {
            Some(&ino) => ino,
            None => {
                self.inodes.push(Inode { parent, what });
                let ino = self.inodes.len() as u64;
                if let Some(k) = link_key {
                    self.hardlinks.insert(k, ino);
                }
                ino
            }
        };
        self.by_name.insert(key, ino);
        ino
    }

    /// The inode of a layout entry, made on first sight.
    fn layout_child(&mut self, parent: u64, name: &str, e: &layout::Entry) -> u64 {
        let what = match e {
            layout::Entry::Dir(d) => What::Layout(*d),
            layout::Entry::Link(t) => What::Link(t.clone()),
            layout::Entry::Snapshot(i) => {
                let s = &self.snaps[*i].1;
                let mut node = root_node(s.tree);
                node.mtime_ns = s.time_ns;
                node.ctime_ns = s.time_ns;
                What::Node {
                    snap: *i,
                    node: Arc::new(node),
                }
            }
        };
        self.add(parent, name.as_bytes(), || what)
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let i = self.inode(ino)?;
        let mut a = FileAttr {
            ino,
            size: 0,
            blocks: 0,
            atime: self.newest,
            mtime: self.newest,
            ctime: self.newest,
            crtime: self.newest,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        match &i.what {
            What::Layout(_) => {}
            What::Link(t) => {
                a.kind = FileType::Symlink;
                a.perm = 0o777;
                a.nlink = 1;
                a.size = t.len() as u64;
            }
            What::Node { node, .. } => {
                a.kind = file_type(node.kind);
                a.perm = (node.mode & 0o7777) as u16;
                a.uid = node.uid;
                a.gid = node.gid;
                a.mtime = time(node.mtime_ns);
                a.atime = a.mtime;
                a.ctime = time(node.ctime_ns);
                a.crtime = a.mtime;
                a.rdev = fuse_rdev(node.rdev);
                a.size = match node.kind {
                    Some(NodeKind::Symlink) => node.target.len() as u64,
                    Some(NodeKind::File) => node.size,
                    _ => 0,
                };
                a.nlink = match node.kind {
                    Some(NodeKind::Dir) => 2,
                    _ => u32::try_from(node.nlink.max(1)).unwrap_or(u32::MAX),
                };
            }
        }
        a.blocks = a.size.div_ceil(512);
        Some(a)
    }

    /// The child `name` of directory `parent`, loading its tree if need be.
    fn child(&mut self, parent: u64, name: &[u8]) -> Result<Option<u64>, i32> {
        if let Some(&ino) = self.by_name.get(&(parent, name.to_vec())) {
            return Ok(Some(ino));
        }
        let Some(p) = self.inode(parent) else {
            return Err(libc::ENOENT);
        };
        match &p.what {
            What::Layout(d) => {
                let Some(e) = self.layout.dirs[*d].get(name).cloned() else {
                    return Ok(None);
                };
                let name = String::from_utf8_lossy(name).into_owned();
                Ok(Some(self.layout_child(parent, &name, &e)))
            }
            What::Node { snap, node } => {
                let (snap, node) = (*snap, node.clone());
                let tree = self.tree_of(&node)?;
                let Ok(i) = tree.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)) else {
                    return Ok(None);
                };
                let what = || What::Node {
                    snap,
                    node: Arc::new(tree.nodes[i].clone()),
                };
                Ok(Some(self.add(parent, name, what)))
            }
            What::Link(_) => Err(libc::ENOTDIR),
        }
    }

    fn tree_of(&self, node: &Node) -> Result<Arc<cairn_core::tree::Tree>, i32> {
        let Some(tid) = node.subtree.filter(|_| node.kind == Some(NodeKind::Dir)) else {
            return Err(libc::ENOTDIR);
        };
        self.trees.get(&self.repo, &tid).map_err(|e| {
            eprintln!("warning: reading tree {}: {e}", tid.short());
            libc::EIO
        })
    }

    /// Every entry of directory `ino`, with `.` and `..`.
    fn listing(&mut self, ino: u64) -> Result<Listing, i32> {
        let Some(i) = self.inode(ino) else {
            return Err(libc::ENOENT);
        };
        let parent = i.parent;
        let mut out: Listing = vec![
            (ino, FileType::Directory, b".".to_vec()),
            (parent, FileType::Directory, b"..".to_vec()),
        ];
        match &i.what {
            What::Layout(d) => {
                let entries = self.layout.dirs[*d].entries.clone();
                for (name, e) in entries {
                    let child = self.layout_child(ino, &name, &e);
                    let kind = match e {
                        layout::Entry::Link(_) => FileType::Symlink,
                        _ => FileType::Directory,
                    };
                    out.push((child, kind, name.into_bytes()));
                }
            }
            What::Node { snap, node } => {
                let (snap, node) = (*snap, node.clone());
                let tree = self.tree_of(&node)?;
                for n in &tree.nodes {
                    let kind = file_type(n.kind);
                    let what = || What::Node {
                        snap,
                        node: Arc::new(n.clone()),
                    };
                    let child = self.add(ino, &n.name, what);
                    out.push((child, kind, n.name.clone()));
                }
            }
            What::Link(_) => return Err(libc::ENOTDIR),
        }
        Ok(out)
    }

    fn node(&self, ino: u64) -> Option<&Node> {
        match &self.inode(ino)?.what {
            What::Node { node, .. } => Some(node),
            _ => None,
        }
    }

    fn fh(&mut self) -> u64 {
        self.next_fh += 1;
        self.next_fh
    }
}

/// Replies to a getxattr/listxattr with `data`, or its size when asked for the size.
fn xattr_reply(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(u32::try_from(data.len()).unwrap_or(u32::MAX));
    } else if data.len() > size as usize {
        reply.error(libc::ERANGE);
    } else {
        reply.data(data);
    }
}

impl Filesystem for CairnFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match self.child(parent, name.as_bytes()) {
            Ok(Some(ino)) => match self.attr(ino) {
                Some(a) => reply.entry(&TTL, &a, 0),
                None => reply.error(libc::ENOENT),
            },
            Ok(None) => reply.error(libc::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(libc::ENOENT),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        match self.inode(ino).map(|i| &i.what) {
            Some(What::Link(t)) => reply.data(t.as_bytes()),
            Some(What::Node { node, .. }) if node.kind == Some(NodeKind::Symlink) => {
                reply.data(&node.target)
            }
            _ => reply.error(libc::EINVAL),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(libc::EROFS);
        }
        let reader = match self.node(ino).map(FileReader::new) {
            Some(Ok(r)) => r,
            Some(Err(_)) => return reply.error(libc::EINVAL),
            None => return reply.error(libc::EISDIR),
        };
        let fh = self.fh();
        self.files.insert(fh, Arc::new(reader));
        reply.opened(fh, fuser::consts::FOPEN_KEEP_CACHE);
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let (Some(reader), Ok(offset)) = (self.files.get(&fh).cloned(), u64::try_from(offset))
        else {
            return reply.error(libc::EBADF);
        };
        let (repo, chunks) = (self.repo.clone(), self.chunks.clone());
        rayon::spawn(
            move || match reader.read_at(&repo, &chunks, offset, size as usize) {
                Ok(data) => reply.data(&data),
                Err(e) => {
                    eprintln!("warning: reading at {offset}: {e}");
                    reply.error(libc::EIO);
                }
            },
        );
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.files.remove(&fh);
        reply.ok();
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        match self.listing(ino) {
            Ok(l) => {
                let fh = self.fh();
                self.dirs.insert(fh, Arc::new(l));
                reply.opened(fh, 0);
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let Some(list) = self.dirs.get(&fh) else {
            return reply.error(libc::EBADF);
        };
        let start = usize::try_from(offset).unwrap_or(0);
        for (i, (ino, kind, name)) in list.iter().enumerate().skip(start) {
            if reply.add(*ino, (i + 1) as i64, *kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        reply: ReplyEmpty,
    ) {
        self.dirs.remove(&fh);
        reply.ok();
    }

    fn getxattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        name: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        let value = self.node(ino).and_then(|n| {
            n.xattrs
                .iter()
                .find(|(k, _)| k.as_slice() == name.as_bytes())
                .map(|(_, v)| v.clone())
        });
        match value {
            Some(v) => xattr_reply(reply, size, &v),
            None => reply.error(libc::ENODATA),
        }
    }

    fn listxattr(&mut self, _req: &Request<'_>, ino: u64, size: u32, reply: ReplyXattr) {
        let mut names = Vec::new();
        for (k, _) in self.node(ino).map(|n| n.xattrs.as_slice()).unwrap_or(&[]) {
            names.extend_from_slice(k);
            names.push(0);
        }
        xattr_reply(reply, size, &names);
    }
}
