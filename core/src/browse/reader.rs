//! Random access into a file of a snapshot: a read at any offset fetches only the chunks
//! it covers (one ranged read each), through a cache bounded in bytes that readers on
//! several threads share. `mount` serves every file read through it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result};
use crate::id::{Id, IdMap};
use crate::repository::Repository;
use crate::tree::{ContentRef, Node};

/// `None` once a load failed.
type Slot = Arc<OnceLock<Option<Arc<Vec<u8>>>>>;

/// Opened chunks, shared by readers; holds at most about `budget` bytes.
pub struct ChunkCache {
    budget: usize,
    inner: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    slots: IdMap<Slot>,
    /// Insertion order, for eviction; sizes of the filled slots.
    order: VecDeque<(Id, usize)>,
    bytes: usize,
}

impl ChunkCache {
    /// A cache of at most `budget` bytes of plaintext.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(Cached::default()),
        }
    }

    /// The chunk's plaintext, loaded once however many threads ask for it at the same time
    /// (the kernel's read-ahead asks for neighbouring pieces of one chunk in parallel).
    fn get(&self, repo: &Repository, c: &ContentRef) -> Result<Arc<Vec<u8>>> {
        let (btype, id) = repo.content_id(c);
        let slot = {
            let mut m = self.lock();
            m.slots.entry(id).or_default().clone()
        };
        let mut loaded_here = false;
        let mut failure = None;
        let r = slot.get_or_init(|| {
            loaded_here = true;
            match repo.load_blob(btype, &id, Some(&c.ck)) {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    failure = Some(e);
                    None
                }
            }
        });
        match (r, failure) {
            (Some(plain), _) => {
                if loaded_here {
                    self.account(id, plain.len());
                }
                Ok(plain.clone())
            }
            // Not cached: the next read tries again (a network error may pass).
            (None, Some(e)) => {
                self.lock().slots.remove(&id);
                Err(e)
            }
            // Another thread's load failed: this reader tries for itself, for its own error.
            (None, None) => repo.load_blob(btype, &id, Some(&c.ck)).map(Arc::new),
        }
    }

    fn account(&self, id: Id, len: usize) {
        let mut m = self.lock();
        m.order.push_back((id, len));
        m.bytes += len;
        while m.bytes > self.budget && m.order.len() > 1 {
            let Some((old, n)) = m.order.pop_front() else {
                break;
            };
            m.slots.remove(&old);
            m.bytes -= n;
        }
    }

    /// A panic elsewhere while holding the lock leaves a cache that is still consistent
    /// (at worst a slot without its size counted), so it is used on.
    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One open file: where each chunk starts.
pub struct FileReader {
    content: Vec<ContentRef>,
    /// `ends[i]` is the offset just past chunk `i`.
    ends: Vec<u64>,
}

impl FileReader {
    /// A reader of a regular file's node.
    pub fn new(node: &Node) -> Result<Self> {
        super::require_file(node)?;
        let mut end = 0u64;
        let ends = node
            .content
            .iter()
            .map(|c| {
                end += u64::from(c.plen);
                end
            })
            .collect();
        Ok(Self {
            content: node.content.clone(),
            ends,
        })
    }

    /// The file's length: the sum of its chunks.
    pub fn len(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `size` bytes from `offset` (fewer at the end of the file, none past it).
    /// Each chunk is authenticated as it is loaded; a chunk whose plaintext is not the
    /// length the tree recorded is reported as corrupt rather than shifting the file.
    pub fn read_at(
        &self,
        repo: &Repository,
        cache: &ChunkCache,
        offset: u64,
        size: usize,
    ) -> Result<Vec<u8>> {
        let end = offset.saturating_add(size as u64).min(self.len());
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut i = self.ends.partition_point(|&e| e <= offset);
        let mut pos = offset;
        while pos < end && i < self.content.len() {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            let blob = cache.get(repo, &self.content[i])?;
            let Some(plain) = self.content[i].part(&blob) else {
                return Err(Error::corrupt(
                    "file content",
                    format!("chunk {i}"),
                    "length differs from the tree's".to_owned(),
                ));
            };
            let from = (pos - start) as usize;
            let to = (end.min(self.ends[i]) - start) as usize;
            out.extend_from_slice(&plain[from..to]);
            pos = start + to as u64;
            i += 1;
        }
        Ok(out)
    }
}
