//! The avpfs share policy: what a guest may see and do on a share.
//!
//! The rules ([`Policy`]), how they are read from a TOML file ([`config`]),
//! and [`PolicyFs`], the one layer between the FUSE server and the
//! passthrough file system where they are enforced. No host I/O happens here.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod dax;
pub mod enforce;
pub mod idmap;
pub mod narrowing;
pub mod paths;
pub mod virtiofsd;
pub mod xattr;

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

pub use config::{parse, ConfigError};
pub use dax::DaxFiles;
pub use enforce::PolicyFs;
pub use idmap::{IdMap, IdRange, OneWay, Unmapped};
pub use narrowing::Widening;
pub use paths::{Access, PathRules, Position};
pub use xattr::{XattrAction, XattrRule, XattrRules};

/// A set of file types a guest may create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileTypes(u8);

#[allow(missing_docs)]
impl FileTypes {
    pub const FILE: FileTypes = FileTypes(1);
    pub const DIR: FileTypes = FileTypes(2);
    pub const SYMLINK: FileTypes = FileTypes(4);
    pub const FIFO: FileTypes = FileTypes(8);
    pub const SOCKET: FileTypes = FileTypes(16);
    pub const DEVICE: FileTypes = FileTypes(32);
    pub const ALL: FileTypes = FileTypes(63);

    const NAMES: [(&'static str, FileTypes); 6] = [
        ("file", Self::FILE),
        ("dir", Self::DIR),
        ("symlink", Self::SYMLINK),
        ("fifo", Self::FIFO),
        ("socket", Self::SOCKET),
        ("device", Self::DEVICE),
    ];

    /// No type.
    pub const fn empty() -> Self {
        FileTypes(0)
    }

    /// Whether every type of `other` is in the set.
    pub const fn contains(self, other: FileTypes) -> bool {
        self.0 & other.0 == other.0
    }

    /// The type named in a policy file.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// The type of a `st_mode` value.
    pub fn from_mode(mode: u32) -> Self {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Self::FILE,
            libc::S_IFDIR => Self::DIR,
            libc::S_IFLNK => Self::SYMLINK,
            libc::S_IFIFO => Self::FIFO,
            libc::S_IFSOCK => Self::SOCKET,
            libc::S_IFCHR | libc::S_IFBLK => Self::DEVICE,
            // mknod with a type of 0 creates a regular file.
            0 => Self::FILE,
            _ => Self::DEVICE,
        }
    }
}

impl BitOr for FileTypes {
    type Output = FileTypes;
    fn bitor(self, o: FileTypes) -> FileTypes {
        FileTypes(self.0 | o.0)
    }
}

impl BitOrAssign for FileTypes {
    fn bitor_assign(&mut self, o: FileTypes) {
        self.0 |= o.0;
    }
}

impl fmt::Display for FileTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Self::NAMES.iter().filter(|(_, t)| self.contains(*t)).map(|(n, _)| *n).collect();
        write!(f, "{}", if names.is_empty() { "none".to_string() } else { names.join(", ") })
    }
}

/// Everything a share's policy says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Every modification fails with EROFS.
    pub readonly: bool,
    /// Keep setuid/setgid bits the guest sets; otherwise they are stripped.
    pub allow_setuid: bool,
    /// File types the guest may create.
    pub create: FileTypes,
    /// Largest size a file may reach (EFBIG beyond).
    pub max_file_size: Option<u64>,
    /// Most node ids the guest may hold at once (ENFILE beyond).
    pub max_inodes: Option<u64>,
    /// Most open handles the guest may hold at once (EMFILE beyond).
    pub max_open_files: Option<u64>,
    /// Log one line per denied operation.
    pub audit: bool,
    /// Hidden and read-only subtrees.
    pub paths: PathRules,
    /// User id mapping.
    pub uid: IdMap,
    /// Group id mapping.
    pub gid: IdMap,
    /// Extended attribute name rules.
    pub xattr: XattrRules,
    /// Which files a guest mounting with `dax=inode` maps through the DAX
    /// window (`[dax] files`; the `paths` subtrees are marked in
    /// [`Policy::paths`]). `None`, no `[dax]` table: no file, and each
    /// guest of the share may choose with its own policy.
    pub dax: Option<DaxFiles>,
}

impl Policy {
    /// No restriction beyond the host's own: what virtiofsd does without options.
    pub fn permissive() -> Self {
        Policy {
            readonly: false,
            allow_setuid: true,
            create: FileTypes::ALL,
            max_file_size: None,
            max_inodes: None,
            max_open_files: None,
            audit: false,
            paths: PathRules::default(),
            uid: IdMap::identity(),
            gid: IdMap::identity(),
            xattr: XattrRules::default(),
            dax: None,
        }
    }

    /// The defaults of a policy file: regular files, directories and symlinks
    /// only, setuid/setgid stripped, denied operations audited.
    pub fn strict() -> Self {
        Policy {
            allow_setuid: false,
            create: FileTypes::FILE | FileTypes::DIR | FileTypes::SYMLINK,
            audit: true,
            ..Policy::permissive()
        }
    }

    /// Whether the policy restricts nothing (the enforcement layer can be skipped).
    pub fn is_permissive(&self) -> bool {
        *self == Policy::permissive()
    }
}

fn limit(v: Option<u64>) -> String {
    v.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "share:          {}", if self.readonly { "read-only" } else { "read-write" })?;
        writeln!(f, "setuid/setgid:  {}", if self.allow_setuid { "kept" } else { "stripped" })?;
        writeln!(f, "may create:     {}", self.create)?;
        writeln!(f, "max file size:  {}", limit(self.max_file_size))?;
        writeln!(f, "max inodes:     {}", limit(self.max_inodes))?;
        writeln!(f, "max open files: {}", limit(self.max_open_files))?;
        writeln!(f, "audit:          {}", if self.audit { "on" } else { "off" })?;
        let rules = self.paths.list();
        if rules.is_empty() {
            writeln!(f, "paths:          no rules")?;
        }
        for (p, a) in rules {
            writeln!(f, "path:           {p} ({a})")?;
        }
        writeln!(f, "uid map:        {}", self.uid)?;
        writeln!(f, "gid map:        {}", self.gid)?;
        if self.xattr.is_passthrough() {
            writeln!(f, "xattr:          all names as they are")?;
        } else {
            for (i, r) in self.xattr.rules().iter().enumerate() {
                let what = match &r.action {
                    XattrAction::Allow => "allow".to_string(),
                    XattrAction::Deny => "deny".to_string(),
                    XattrAction::Rename(to) => format!("stored as {to}*"),
                };
                writeln!(f, "xattr rule {}:   {}* {what}", i + 1, r.prefix)?;
            }
            writeln!(f, "xattr default:  {}", if self.xattr.default_allow() { "allow" } else { "deny" })?;
        }
        let dax = match self.dax {
            None => "no file (no [dax] rule)".to_string(),
            Some(DaxFiles::None) => "no file".to_string(),
            Some(DaxFiles::All) => "every regular file".to_string(),
            Some(DaxFiles::ReadOnly) => "files of read-only subtrees or share".to_string(),
            Some(DaxFiles::Executables) => "executable files".to_string(),
            Some(DaxFiles::Paths) => format!("files under {}", self.paths.dax_list().join(", ")),
        };
        writeln!(f, "dax=inode:      {dax}")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_types_from_mode() {
        assert_eq!(FileTypes::from_mode(libc::S_IFREG | 0o644), FileTypes::FILE);
        assert_eq!(FileTypes::from_mode(0o644), FileTypes::FILE);
        assert_eq!(FileTypes::from_mode(libc::S_IFIFO), FileTypes::FIFO);
        assert_eq!(FileTypes::from_mode(libc::S_IFCHR), FileTypes::DEVICE);
        assert_eq!(FileTypes::from_mode(libc::S_IFBLK), FileTypes::DEVICE);
        assert_eq!(FileTypes::from_mode(libc::S_IFSOCK), FileTypes::SOCKET);
        assert_eq!(FileTypes::ALL.to_string(), "file, dir, symlink, fifo, socket, device");
    }

    #[test]
    fn permissive_is_recognised_and_printed() {
        assert!(Policy::permissive().is_permissive());
        assert!(!Policy::strict().is_permissive());
        let text = Policy::strict().to_string();
        assert!(text.contains("may create:     file, dir, symlink"), "{text}");
        assert!(text.contains("setuid/setgid:  stripped"), "{text}");
    }
}
