//! File names as requests carry them, checked, and the bounded lists of
//! `Twalk` and `Rwalk`.

use std::fmt;

use thiserror::Error;

use crate::{Qid, MAXWELEM};

/// Why a name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NameError {
    /// An empty name.
    #[error("empty name")]
    Empty,
    /// A name with a `/`: more than one path component.
    #[error("name contains '/'")]
    Slash,
    /// A name with a NUL byte (it would be cut short by a system call).
    #[error("name contains a NUL byte")]
    Nul,
    /// `.` or `..` where an entry is created, removed or renamed.
    #[error("'.' or '..' names no entry here")]
    Dot,
}

/// One path component: not empty, without `/` or NUL.
///
/// `Twalk` may carry `.` and `..` ([`Name::walk_element`]; the server must
/// keep `..` at the root of the share from leaving it); requests that
/// create, remove, rename or link an entry may not ([`Name::entry`]). The
/// codec does not enforce `NAME_MAX`: the host's system call answers
/// `ENAMETOOLONG`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Name<'a>(&'a [u8]);

impl<'a> Name<'a> {
    /// A name for `Twalk`: `.` and `..` allowed.
    pub fn walk_element(bytes: &'a [u8]) -> Result<Name<'a>, NameError> {
        if bytes.is_empty() {
            return Err(NameError::Empty);
        }
        if bytes.contains(&0) {
            return Err(NameError::Nul);
        }
        if bytes.contains(&b'/') {
            return Err(NameError::Slash);
        }
        Ok(Name(bytes))
    }

    /// The name of an entry to create, remove, rename or link: neither `.`
    /// nor `..`.
    pub fn entry(bytes: &'a [u8]) -> Result<Name<'a>, NameError> {
        let name = Name::walk_element(bytes)?;
        if name.is_dot_or_dotdot() {
            return Err(NameError::Dot);
        }
        Ok(name)
    }

    /// The bytes of the name.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// True for `..`.
    pub fn is_dotdot(&self) -> bool {
        self.0 == b".."
    }

    /// True for `.` and `..`.
    pub fn is_dot_or_dotdot(&self) -> bool {
        self.0 == b"." || self.0 == b".."
    }

    /// The name as a C string for a system call (one small copy; the name
    /// has no NUL, so this cannot fail).
    pub fn to_cstring(&self) -> std::ffi::CString {
        // The constructors refused NUL bytes.
        std::ffi::CString::new(self.0).unwrap_or_default()
    }
}

impl fmt::Debug for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.0))
    }
}

/// At most [`MAXWELEM`] items, without allocation: the names of a `Twalk`,
/// the qids of an `Rwalk`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WalkList<T: Copy + Default> {
    items: [T; MAXWELEM],
    len: u8,
}

/// The names of a `Twalk`.
pub type WalkNames<'a> = WalkList<Name<'a>>;
/// The qids of an `Rwalk`.
pub type WalkQids = WalkList<Qid>;

impl<T: Copy + Default> WalkList<T> {
    /// An empty list (a `Twalk` with no names clones a fid).
    pub fn new() -> Self {
        WalkList { items: [T::default(); MAXWELEM], len: 0 }
    }

    /// A list of `items`; `None` if there are more than [`MAXWELEM`].
    pub fn from_slice(items: &[T]) -> Option<Self> {
        let mut list = WalkList::new();
        for &item in items {
            if !list.push(item) {
                return None;
            }
        }
        Some(list)
    }

    /// Adds an item; returns `false` (and adds nothing) when full.
    pub fn push(&mut self, item: T) -> bool {
        match self.items.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = item;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The items.
    pub fn as_slice(&self) -> &[T] {
        &self.items[..usize::from(self.len)]
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T: Copy + Default> Default for WalkList<T> {
    fn default() -> Self {
        WalkList::new()
    }
}

impl<T: Copy + Default + fmt::Debug> fmt::Debug for WalkList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Name::walk_element(b"a.txt").map(|n| n.as_bytes()), Ok(&b"a.txt"[..]));
        assert!(Name::walk_element(b"..").unwrap().is_dotdot());
        assert!(Name::walk_element(b".").unwrap().is_dot_or_dotdot());
        assert!(!Name::walk_element(b"...").unwrap().is_dot_or_dotdot());
        assert_eq!(Name::walk_element(b""), Err(NameError::Empty));
        assert_eq!(Name::walk_element(b"a/b"), Err(NameError::Slash));
        assert_eq!(Name::walk_element(b"/"), Err(NameError::Slash));
        assert_eq!(Name::walk_element(b"a\0b"), Err(NameError::Nul));
        assert_eq!(Name::entry(b".."), Err(NameError::Dot));
        assert_eq!(Name::entry(b"."), Err(NameError::Dot));
        assert_eq!(Name::entry(b"..a").map(|n| n.as_bytes()), Ok(&b"..a"[..]));
        assert_eq!(Name::entry(b"x").unwrap().to_cstring().as_bytes(), b"x");
    }

    #[test]
    fn walk_list_holds_at_most_maxwelem() {
        let mut list = WalkQids::new();
        for i in 0..MAXWELEM as u64 {
            assert!(list.push(Qid { path: i, ..Qid::default() }));
        }
        assert!(!list.push(Qid::default()));
        assert_eq!(list.len(), MAXWELEM);
        assert_eq!(list.as_slice()[15].path, 15);
        assert!(WalkQids::from_slice(&[Qid::default(); MAXWELEM + 1]).is_none());
        assert!(WalkQids::from_slice(&[]).unwrap().is_empty());
    }
}
