//! Per-inode DAX: which files a guest that mounts with `dax=inode` maps
//! through the DAX window (`[dax] files`). The server marks the entries of
//! the files picked here with FUSE_ATTR_DAX and refuses SETUPMAPPING of the
//! others with EPERM; see docs/dax.md.

use std::fmt;

use crate::paths::{Access, Position};

/// Which regular files get DAX (`[dax] files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaxFiles {
    /// None (also what a policy without `[dax]` picks).
    None,
    /// Every regular file the guest can see.
    All,
    /// Files in a read-only share or a read-only subtree (`[paths]
    /// readonly`): nothing the guest can truncate through avpfs.
    ReadOnly,
    /// Regular files with any execute bit.
    Executables,
    /// Files inside the `[dax] paths` subtrees (marked in the policy's
    /// [`PathRules`](crate::PathRules)).
    Paths,
}

impl DaxFiles {
    const NAMES: [(&'static str, DaxFiles); 5] = [
        ("none", DaxFiles::None),
        ("all", DaxFiles::All),
        ("read-only", DaxFiles::ReadOnly),
        ("executables", DaxFiles::Executables),
        ("paths", DaxFiles::Paths),
    ];

    /// The value named in a policy file.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// Whether the regular file of `st_mode` `mode` at `pos` is picked, in
    /// a share that is read-only when `share_readonly`. A hidden file never
    /// is.
    pub fn picks(self, mode: u32, pos: Position, share_readonly: bool) -> bool {
        if mode & libc::S_IFMT != libc::S_IFREG || pos.access() == Access::Hidden {
            return false;
        }
        match self {
            DaxFiles::None => false,
            DaxFiles::All => true,
            DaxFiles::ReadOnly => share_readonly || pos.access() == Access::ReadOnly,
            DaxFiles::Executables => mode & 0o111 != 0,
            DaxFiles::Paths => pos.dax(),
        }
    }
}

impl fmt::Display for DaxFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::NAMES.iter().find(|(_, v)| v == self).map_or("?", |(n, _)| n);
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PathRules;

    fn walk(r: &PathRules, path: &str) -> Position {
        path.split('/').fold(r.root(), |p, c| r.child(p, c.as_bytes()))
    }

    #[test]
    fn each_mode_picks_its_files() {
        let mut r = PathRules::new([("ro", Access::ReadOnly), ("hidden", Access::Hidden)]).unwrap();
        r.add_dax("bin").unwrap();
        r.add_dax("hidden").unwrap();
        let file = libc::S_IFREG | 0o644;
        let exe = libc::S_IFREG | 0o700;
        let (plain, ro, bin, hidden) = (walk(&r, "a"), walk(&r, "ro/a"), walk(&r, "bin/a"), walk(&r, "hidden/a"));
        let picks = |f: DaxFiles, mode, pos| f.picks(mode, pos, false);
        assert!(!picks(DaxFiles::None, file, plain));
        assert!(picks(DaxFiles::All, file, plain) && picks(DaxFiles::All, exe, ro));
        assert!(picks(DaxFiles::ReadOnly, file, ro) && !picks(DaxFiles::ReadOnly, file, plain));
        assert!(DaxFiles::ReadOnly.picks(file, plain, true), "a read-only share is read-only everywhere");
        assert!(picks(DaxFiles::Executables, exe, plain) && picks(DaxFiles::Executables, libc::S_IFREG | 0o001, plain));
        assert!(!picks(DaxFiles::Executables, file, plain));
        assert!(picks(DaxFiles::Paths, file, bin) && !picks(DaxFiles::Paths, file, plain));
        for f in [DaxFiles::All, DaxFiles::Paths, DaxFiles::Executables] {
            assert!(!picks(f, exe, hidden), "{f}: hidden files never");
            assert!(!picks(f, libc::S_IFDIR | 0o755, bin), "{f}: only regular files");
            assert!(!picks(f, libc::S_IFLNK | 0o777, bin), "{f}: only regular files");
        }
    }

    #[test]
    fn names_round_trip() {
        for (n, f) in DaxFiles::NAMES {
            assert_eq!(DaxFiles::from_name(n), Some(f));
            assert_eq!(f.to_string(), n);
        }
        assert_eq!(DaxFiles::from_name("always"), None);
    }
}
