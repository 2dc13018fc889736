//! Argument checks every backend applies the same way, so that what a clean path is, when
//! a range is unsatisfiable and how large a bounded read may be are decided in one place
//! and cannot drift apart between backends.

use std::ops::Range;

use super::{BackendError, BackendErrorKind, MAX_BOUNDED_READ};

/// A request no backend serves.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Not a path the layout produces.
    #[error("path {0:?} is not a clean relative path")]
    InvalidPath(String),
    /// The range does not lie within the file.
    #[error("range {start}..{end} does not fit a file of {size} bytes")]
    BadRange {
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The file's size.
        size: u64,
    },
    /// A bounded read asked for more than [`MAX_BOUNDED_READ`].
    #[error("range of {len} bytes exceeds the bounded-read limit of {max}")]
    TooLarge {
        /// Bytes asked for.
        len: u64,
        /// The limit.
        max: u64,
    },
}

fn fail(kind: BackendErrorKind, op: &'static str, path: &str, e: RequestError) -> BackendError {
    BackendError::new(kind, op, path, Some(Box::new(e) as _))
}

/// A repository-relative path: `/`-separated, no empty, `.` or `..` components, no NUL.
/// The layout never produces anything else; this is the guard against escaping the root
/// (or the bucket prefix) through a hostile name.
pub fn check_path(op: &'static str, path: &str) -> Result<(), BackendError> {
    let ok = !path.is_empty()
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        let e = RequestError::InvalidPath(path.to_owned());
        Err(fail(BackendErrorKind::Other, op, path, e))
    }
}

/// The requested range (the whole file for `None`) checked against the file's size.
pub fn check_range(
    op: &'static str,
    path: &str,
    size: u64,
    range: Option<Range<u64>>,
) -> Result<Range<u64>, BackendError> {
    let Range { start, end } = range.unwrap_or(0..size);
    if start > end || end > size {
        let e = RequestError::BadRange { start, end, size };
        return Err(fail(BackendErrorKind::RangeNotSatisfiable, op, path, e));
    }
    Ok(start..end)
}

/// The length of a bounded read, refused above [`MAX_BOUNDED_READ`] (so it fits a `usize`).
pub fn check_bounded(
    op: &'static str,
    path: &str,
    range: &Range<u64>,
) -> Result<usize, BackendError> {
    let len = range.end.saturating_sub(range.start);
    match usize::try_from(len) {
        Ok(n) if len <= MAX_BOUNDED_READ => Ok(n),
        _ => {
            let e = RequestError::TooLarge {
                len,
                max: MAX_BOUNDED_READ,
            };
            Err(fail(BackendErrorKind::Other, op, path, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_ranges_and_bounds() {
        for bad in ["", "/a", "a/", "a//b", "a/./b", "../x", "a\0b"] {
            assert!(check_path("read", bad).is_err(), "{bad:?}");
        }
        assert!(check_path("read", "hosts/ab/packs/cd/ef").is_ok());
        assert_eq!(check_range("read", "p", 10, None).ok(), Some(0..10));
        assert_eq!(check_range("read", "p", 10, Some(2..10)).ok(), Some(2..10));
        let e = check_range("read", "p", 10, Some(2..11)).expect_err("past end");
        assert_eq!(e.kind, BackendErrorKind::RangeNotSatisfiable);
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 5..4;
        assert!(check_range("read", "p", 10, Some(backwards)).is_err());
        assert_eq!(check_bounded("read", "p", &(3..10)).ok(), Some(7));
        assert!(check_bounded("read", "p", &(0..MAX_BOUNDED_READ + 1)).is_err());
    }
}
