//! The share policy file (TOML) and its checks. Every error names the line
//! and the key.
//!
//! ```toml
//! [share]
//! readonly = false
//! allow_setuid = false                   # strip setuid/setgid bits (default)
//! create = ["file", "dir", "symlink"]    # also "fifo", "socket", "device"
//! max_file_size = "1G"                   # bytes, or with K/M/G/T
//! max_inodes = 100000                    # node ids the guest may hold
//! max_open_files = 1024                  # handles the guest may hold
//! audit = true                           # one log line per denied operation
//!
//! [paths]
//! hidden = ["secrets"]                   # ENOENT, not listed
//! readonly = ["firmware"]                # EROFS inside a writable share
//!
//! [uid]                                  # same form for [gid]
//! map = [{ guest = 0, host = 100000, count = 65536 }]
//! unmapped = "deny"                      # or "identity", or "squash:65534"
//!
//! [xattr]
//! default = "allow"                      # or "deny"
//! rules = [
//!   { prefix = "trusted.", action = "deny" },
//!   { prefix = "security.", rename = "user.avpfs.security." },
//! ]
//!
//! [dax]                                  # guests mounting with dax=inode
//! files = "paths"                        # "none" (no [dax]: the same), "all",
//!                                        # "read-only", "executables", "paths"
//! paths = ["bin", "usr/lib"]             # with "paths" only: these subtrees
//! ```

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::idmap::{IdMap, IdRange, Unmapped};
use crate::paths::{Access, PathRules};
use crate::xattr::{XattrAction, XattrRule, XattrRules};
use crate::{DaxFiles, FileTypes, Policy};

/// A policy file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {key}: {message}")]
pub struct ConfigError {
    /// 1-based line of the offending value.
    pub line: usize,
    /// The key (dotted path) of the offending value.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    share: ShareSection,
    #[serde(default)]
    paths: PathsSection,
    uid: Option<IdSection>,
    gid: Option<IdSection>,
    xattr: Option<XattrSection>,
    dax: Option<DaxSection>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ShareSection {
    readonly: Option<bool>,
    allow_setuid: Option<bool>,
    create: Option<Spanned<Vec<Spanned<String>>>>,
    max_file_size: Option<Spanned<Size>>,
    max_inodes: Option<Spanned<u64>>,
    max_open_files: Option<Spanned<u64>>,
    audit: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PathsSection {
    #[serde(default)]
    hidden: Vec<Spanned<String>>,
    #[serde(default)]
    readonly: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdSection {
    map: Option<Spanned<Vec<RangeEntry>>>,
    unmapped: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeEntry {
    guest: u32,
    host: u32,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct XattrSection {
    default: Option<Spanned<String>>,
    #[serde(default)]
    rules: Vec<Spanned<XattrEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct XattrEntry {
    prefix: String,
    action: Option<String>,
    rename: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DaxSection {
    files: Spanned<String>,
    paths: Option<Spanned<Vec<Spanned<String>>>>,
}

struct Ctx<'a> {
    src: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError { line: line_of(self.src, span.start), key: key.into(), message: message.into() }
    }
}

/// The 1-based line of byte `offset` of `src`.
pub fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Where and what a TOML error of `src` is: its line, the key it names (an
/// unknown or a missing field), or `(syntax)`, and its message. Shared by
/// every TOML file avpfs reads (policies, the daemon configuration).
pub fn toml_error(src: &str, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map(|s| line_of(src, s.start)).unwrap_or(1);
    let message = e.message().to_string();
    let key = message
        .split('`')
        .nth(1)
        .filter(|_| message.starts_with("unknown field") || message.starts_with("missing field"))
        .unwrap_or("(syntax)")
        .to_string();
    ConfigError { line, key, message }
}

/// Parses and checks a policy file.
pub fn parse(src: &str) -> Result<Policy, ConfigError> {
    let file: File = toml::from_str(src).map_err(|e| toml_error(src, &e))?;
    let cx = Ctx { src };
    let mut p = Policy::strict();
    share_section(&cx, &file.share, &mut p)?;
    p.paths = path_rules(&cx, &file.paths)?;
    if let Some(u) = &file.uid {
        p.uid = id_map(&cx, u, "uid")?;
    }
    if let Some(g) = &file.gid {
        p.gid = id_map(&cx, g, "gid")?;
    }
    if let Some(x) = &file.xattr {
        p.xattr = xattr_rules(&cx, x)?;
    }
    if let Some(d) = &file.dax {
        p.dax = Some(dax_rule(&cx, d, &mut p.paths)?);
    }
    Ok(p)
}

/// `[share]`: read-only, setuid, the file types that may be created, limits,
/// audit.
fn share_section(cx: &Ctx<'_>, s: &ShareSection, p: &mut Policy) -> Result<(), ConfigError> {
    p.readonly = s.readonly.unwrap_or(false);
    p.allow_setuid = s.allow_setuid.unwrap_or(false);
    p.audit = s.audit.unwrap_or(true);
    if let Some(create) = &s.create {
        let mut types = FileTypes::empty();
        for t in create.get_ref() {
            types |= FileTypes::from_name(t.get_ref()).ok_or_else(|| {
                cx.err(
                    t.span(),
                    "share.create",
                    format!("unknown file type {:?} (file, dir, symlink, fifo, socket, device)", t.get_ref()),
                )
            })?;
        }
        p.create = types;
    }
    if let Some(size) = &s.max_file_size {
        let bytes = match size.get_ref() {
            Size::Bytes(b) => Some(*b),
            Size::Text(t) => parse_size(t),
        };
        p.max_file_size = Some(bytes.ok_or_else(|| {
            cx.err(size.span(), "share.max_file_size", "expected bytes, or a number with K, M, G or T")
        })?);
    }
    for (v, key) in [(&s.max_inodes, "share.max_inodes"), (&s.max_open_files, "share.max_open_files")] {
        if let Some(v) = v {
            if *v.get_ref() == 0 {
                return Err(cx.err(v.span(), key, "must be at least 1"));
            }
        }
    }
    p.max_inodes = s.max_inodes.as_ref().map(|v| *v.get_ref());
    p.max_open_files = s.max_open_files.as_ref().map(|v| *v.get_ref());
    Ok(())
}

/// `[paths]`: hidden and read-only subtrees.
fn path_rules(cx: &Ctx<'_>, paths: &PathsSection) -> Result<PathRules, ConfigError> {
    let rules =
        [(&paths.hidden, Access::Hidden, "paths.hidden"), (&paths.readonly, Access::ReadOnly, "paths.readonly")];
    // Add the rules one by one so that an error points at the rule that caused it.
    let mut tree = PathRules::default();
    for (list, access, key) in rules {
        for path in list {
            tree.add(path.get_ref(), access).map_err(|e| cx.err(path.span(), key, e.to_string()))?;
        }
    }
    Ok(tree)
}

/// `[dax]`: which files get per-inode DAX; the `paths` subtrees are marked
/// in `paths`.
fn dax_rule(cx: &Ctx<'_>, d: &DaxSection, paths: &mut PathRules) -> Result<DaxFiles, ConfigError> {
    let files = &d.files;
    let choice = DaxFiles::from_name(files.get_ref()).ok_or_else(|| {
        cx.err(
            files.span(),
            "dax.files",
            format!("{:?}: expected \"none\", \"all\", \"read-only\", \"executables\" or \"paths\"", files.get_ref()),
        )
    })?;
    match (&d.paths, choice) {
        (None, DaxFiles::Paths) => Err(cx.err(files.span(), "dax.paths", "files = \"paths\" needs a paths list")),
        (Some(list), DaxFiles::Paths) if list.get_ref().is_empty() => {
            Err(cx.err(list.span(), "dax.paths", "files = \"paths\" needs at least one path"))
        }
        (Some(list), DaxFiles::Paths) => {
            for path in list.get_ref() {
                paths.add_dax(path.get_ref()).map_err(|e| cx.err(path.span(), "dax.paths", e.to_string()))?;
            }
            Ok(choice)
        }
        (Some(list), _) => {
            Err(cx.err(list.span(), "dax.paths", format!("only with files = \"paths\", not \"{choice}\"")))
        }
        (None, _) => Ok(choice),
    }
}

/// `[xattr]`: the default and the prefix rules.
fn xattr_rules(cx: &Ctx<'_>, x: &XattrSection) -> Result<XattrRules, ConfigError> {
    let default_allow = match x.default.as_ref().map(|d| (d.get_ref().as_str(), d.span())) {
        None | Some(("allow", _)) => true,
        Some(("deny", _)) => false,
        Some((other, span)) => {
            return Err(cx.err(span, "xattr.default", format!("{other:?}: expected \"allow\" or \"deny\"")))
        }
    };
    let mut list = Vec::new();
    for r in &x.rules {
        let e = r.get_ref();
        let action = match (e.action.as_deref(), &e.rename) {
            (Some("allow"), None) => XattrAction::Allow,
            (Some("deny"), None) => XattrAction::Deny,
            (None, Some(to)) | (Some("rename"), Some(to)) => {
                if to.is_empty() || to.starts_with(&e.prefix) && !e.prefix.is_empty() {
                    return Err(cx.err(r.span(), "xattr.rules.rename", "the new prefix must differ from the old"));
                }
                XattrAction::Rename(to.clone())
            }
            _ => {
                return Err(cx.err(
                    r.span(),
                    "xattr.rules",
                    "each rule needs action = \"allow\" | \"deny\", or rename = \"prefix\"",
                ))
            }
        };
        list.push(XattrRule { prefix: e.prefix.clone(), action });
    }
    Ok(XattrRules::new(list, default_allow))
}

fn id_map(cx: &Ctx<'_>, s: &IdSection, which: &str) -> Result<IdMap, ConfigError> {
    let unmapped = match s.unmapped.as_ref() {
        None => Unmapped::Deny,
        Some(u) => match u.get_ref().as_str() {
            "deny" => Unmapped::Deny,
            "identity" => Unmapped::Identity,
            other => match other.strip_prefix("squash:").and_then(|n| n.parse().ok()) {
                Some(id) => Unmapped::Squash(id),
                None => {
                    return Err(cx.err(
                        u.span(),
                        &format!("{which}.unmapped"),
                        format!("{other:?}: expected \"deny\", \"identity\" or \"squash:ID\""),
                    ))
                }
            },
        },
    };
    let Some(map) = &s.map else {
        return IdMap::new(Vec::new(), unmapped).map_err(|e| cx.err(0..0, &format!("{which}.map"), e.to_string()));
    };
    let ranges = map.get_ref().iter().map(|r| IdRange { guest: r.guest, host: r.host, count: r.count }).collect();
    IdMap::new(ranges, unmapped).map_err(|e| cx.err(map.span(), &format!("{which}.map"), e.to_string()))
}

/// Parses "4096", "64K", "10M", "1G", "2T".
pub fn parse_size(t: &str) -> Option<u64> {
    let t = t.trim();
    let (num, mult) = match t.char_indices().last()? {
        (i, 'K' | 'k') => (&t[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&t[..i], 1 << 20),
        (i, 'G' | 'g') => (&t[..i], 1 << 30),
        (i, 'T' | 't') => (&t[..i], 1 << 40),
        _ => (t, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
[share]
readonly = false
allow_setuid = false
create = ["file", "dir", "symlink", "fifo"]
max_file_size = "1G"
max_inodes = 1000
max_open_files = 64

[paths]
hidden = ["secrets", "home/user/.ssh"]
readonly = ["firmware"]

[uid]
map = [{ guest = 0, host = 100000, count = 65536 }]
unmapped = "deny"

[gid]
map = [{ guest = 1000, host = 1000 }]
unmapped = "squash:65534"

[xattr]
default = "deny"
rules = [
  { prefix = "trusted.", action = "deny" },
  { prefix = "security.", rename = "user.avpfs.security." },
  { prefix = "user.", action = "allow" },
]
"#;

    #[test]
    fn a_full_policy_parses() {
        let p = parse(FULL).unwrap();
        assert!(!p.readonly && !p.allow_setuid && p.audit);
        assert_eq!(p.create, FileTypes::FILE | FileTypes::DIR | FileTypes::SYMLINK | FileTypes::FIFO);
        assert_eq!(p.max_file_size, Some(1 << 30));
        assert_eq!((p.max_inodes, p.max_open_files), (Some(1000), Some(64)));
        assert_eq!(p.paths.list().len(), 3);
        assert_eq!(p.uid.to_host(5), Some(100_005));
        assert_eq!(p.uid.to_host(70000), None);
        assert_eq!(p.gid.to_host(1000), Some(1000));
        assert_eq!(p.gid.to_host(0), Some(65534));
        assert_eq!(p.xattr.to_host(b"security.selinux").unwrap(), b"user.avpfs.security.selinux");
        assert!(p.xattr.to_host(b"system.x").is_err());
    }

    #[test]
    fn an_empty_file_is_the_strict_default() {
        let p = parse("").unwrap();
        assert_eq!(p, Policy::strict());
        assert!(!p.allow_setuid);
        assert_eq!(p.create, FileTypes::FILE | FileTypes::DIR | FileTypes::SYMLINK);
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let e = parse("[share]\nreadonly = true\nfrobnicate = 1\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "frobnicate"), "{e}");
        let e = parse("[share]\ncreate = [\"file\", \"door\"]\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "share.create"), "{e}");
        assert!(e.message.contains("door"));
        let e = parse("\n\n[paths]\nhidden = [\"ok\", \"../etc\"]\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (4, "paths.hidden"), "{e}");
        let e = parse("[uid]\nmap = [{ guest = 0, host = 0, count = 10 }, { guest = 5, host = 100, count = 1 }]\n")
            .unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "uid.map"), "{e}");
        let e = parse("[gid]\nunmapped = \"squash:x\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "gid.unmapped"), "{e}");
        let e = parse("[share]\nmax_file_size = \"12Q\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "share.max_file_size"), "{e}");
        let e = parse("[share]\nmax_inodes = 0\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "share.max_inodes"), "{e}");
        let e = parse("[xattr]\nrules = [\n  { prefix = \"a.\" },\n]\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "xattr.rules"), "{e}");
        let e = parse("[share\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert_eq!(e.to_string().split(':').next().unwrap(), "line 1");
    }

    #[test]
    fn the_dax_table_parses() {
        assert_eq!(parse("").unwrap().dax, None);
        for (name, files) in [
            ("none", DaxFiles::None),
            ("all", DaxFiles::All),
            ("read-only", DaxFiles::ReadOnly),
            ("executables", DaxFiles::Executables),
        ] {
            let p = parse(&format!("[dax]\nfiles = \"{name}\"\n")).unwrap();
            assert_eq!(p.dax, Some(files), "{name}");
            assert!(p.paths.dax_list().is_empty());
        }
        let p =
            parse("[paths]\nreadonly = [\"bin\"]\n[dax]\nfiles = \"paths\"\npaths = [\"bin\", \"usr/lib\"]\n").unwrap();
        assert_eq!(p.dax, Some(DaxFiles::Paths));
        assert_eq!(p.paths.dax_list(), ["bin", "usr/lib"]);
        assert_eq!(p.paths.list().len(), 1);
        assert!(p.to_string().contains("dax=inode:      files under bin, usr/lib"), "{p}");
        assert!(parse("").unwrap().to_string().contains("dax=inode:      no file (no [dax] rule)"));
    }

    #[test]
    fn dax_errors_name_the_line_and_key() {
        let cases = [
            ("[dax]\nfiles = \"always\"\n", 2, "dax.files", "always"),
            ("[dax]\nfiles = \"paths\"\n", 2, "dax.paths", "needs a paths list"),
            ("[dax]\nfiles = \"paths\"\npaths = []\n", 3, "dax.paths", "at least one"),
            ("[dax]\nfiles = \"all\"\npaths = [\"bin\"]\n", 3, "dax.paths", "only with files = \"paths\""),
            ("[dax]\nfiles = \"paths\"\npaths = [\"bin\",\n  \"../etc\"]\n", 4, "dax.paths", "'..'"),
            ("[dax]\nfiles = \"paths\"\npaths = [\"a\", \"a/\"]\n", 3, "dax.paths", "two rules"),
            ("[dax]\nfiles = \"all\"\nmode = 1\n", 3, "mode", "unknown field"),
            ("\n[dax]\npaths = [\"a\"]\n", 2, "files", "missing field"),
        ];
        for (src, line, key, what) in cases {
            let e = parse(src).unwrap_err();
            assert_eq!((e.line, e.key.as_str()), (line, key), "{src}: {e}");
            assert!(e.message.contains(what), "{src}: {e}");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64K"), Some(65536));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("99999999999T"), None);
    }
}
