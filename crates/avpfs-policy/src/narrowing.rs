//! Whether one policy is at least as strict as another: a guest of a share
//! may have its own policy, narrower than the share's (read-only, fewer file
//! types, lower limits, more hidden paths), never wider.

use crate::paths::{Access, Position};
use crate::{DaxFiles, Policy};

/// How a guest's policy would grant more than its share's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("wider than the share's policy: {0}")]
pub struct Widening(pub String);

fn limit_widens(guest: Option<u64>, share: Option<u64>) -> bool {
    match (guest, share) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(g), Some(s)) => g > s,
    }
}

impl Policy {
    /// Checks that `self` (a guest's policy) grants nothing that `share`
    /// does not: every restriction of the share holds in it, equally or
    /// more strictly. Id maps and extended attribute rules decide how the
    /// share's files are stored, so a share that sets them fixes them for
    /// its guests; a share that leaves them alone lets each guest set its
    /// own (a guest mapped to other host ids is narrower than one mapped
    /// to itself).
    pub fn check_narrower_than(&self, share: &Policy) -> Result<(), Widening> {
        let wide = |what: &str| Err(Widening(what.to_string()));
        if share.readonly && !self.readonly {
            return wide("the share is read-only and the guest's policy is not");
        }
        if self.allow_setuid && !share.allow_setuid {
            return wide("allow_setuid is on; the share strips setuid/setgid bits");
        }
        if !share.create.contains(self.create) {
            return Err(Widening(format!("create allows {}; the share allows {}", self.create, share.create)));
        }
        for (name, g, s) in [
            ("max_file_size", self.max_file_size, share.max_file_size),
            ("max_inodes", self.max_inodes, share.max_inodes),
            ("max_open_files", self.max_open_files, share.max_open_files),
        ] {
            if limit_widens(g, s) {
                return Err(Widening(format!(
                    "{name} is {}; the share's is {}",
                    g.map_or("unlimited".into(), |v| v.to_string()),
                    s.map_or("unlimited".into(), |v| v.to_string())
                )));
            }
        }
        for (path, access) in share.paths.list() {
            let mut pos = self.paths.root();
            for c in path.split('/').filter(|c| !c.is_empty()) {
                pos = self.paths.child(pos, c.as_bytes());
            }
            if pos.access() < access {
                return Err(Widening(format!(
                    "path {path:?} is {} for the guest; the share makes it {access}",
                    pos.access()
                )));
            }
        }
        for (name, g, s) in [("uid", &self.uid, &share.uid), ("gid", &self.gid, &share.gid)] {
            if !s.is_identity() && g != s {
                return Err(Widening(format!("the {name} map differs from the share's ({s})")));
            }
        }
        if !share.xattr.is_passthrough() && self.xattr != share.xattr {
            return wide("the xattr rules differ from the share's");
        }
        self.check_dax_narrower_than(share)
    }

    /// `[dax]`: a share without the table leaves the choice to each guest;
    /// a share with one bounds it: the guest's files must be a subset of
    /// the share's, whatever the files hold. So a guest may always pick no
    /// file (no table, or "none"), pick what the share picks, or, under a
    /// share's "all", anything; under "paths" it may name subtrees inside
    /// the share's; under "read-only" it may name "paths" or "read-only"
    /// inside what is read-only for the share. Anything else (e.g.
    /// "executables" under "read-only") is wider.
    fn check_dax_narrower_than(&self, share: &Policy) -> Result<(), Widening> {
        // No share table: the guest chooses; no guest table: no file.
        let (Some(s), Some(g)) = (share.dax, self.dax) else { return Ok(()) };
        // Whether each place the guest marks is inside a place of the share
        // for which `inside` holds.
        let places_within = |places: Vec<String>, inside: &dyn Fn(Position) -> bool| {
            places.into_iter().find(|p| {
                let pos = p
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .fold(share.paths.root(), |pos, c| share.paths.child(pos, c.as_bytes()));
                !inside(pos)
            })
        };
        let share_ro = |pos: Position| share.readonly || pos.access() >= Access::ReadOnly;
        let outside = match (s, g) {
            (_, DaxFiles::None) | (DaxFiles::All, _) => None,
            (s, g) if s == g && s != DaxFiles::Paths && s != DaxFiles::ReadOnly => None,
            (DaxFiles::Paths, DaxFiles::Paths) => places_within(self.paths.dax_list(), &|p| p.dax()),
            (DaxFiles::ReadOnly, DaxFiles::Paths) => places_within(self.paths.dax_list(), &share_ro),
            (DaxFiles::ReadOnly, DaxFiles::ReadOnly) => {
                if self.readonly && !share.readonly {
                    Some("the whole share (read-only for the guest only)".to_string())
                } else {
                    let ro = self.paths.list().into_iter().filter(|(_, a)| *a == Access::ReadOnly);
                    places_within(ro.map(|(p, _)| p).collect(), &share_ro)
                }
            }
            _ => return Err(Widening(format!("[dax] files is \"{g}\"; the share's is \"{s}\""))),
        };
        match outside {
            None => Ok(()),
            Some(place) => Err(Widening(format!(
                "[dax] files = \"{g}\" picks files in {place:?}, which the share's \"{s}\" does not"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Access, FileTypes, IdMap, IdRange, PathRules, Unmapped};

    fn strict() -> Policy {
        Policy::strict()
    }

    #[test]
    fn equal_and_stricter_policies_are_narrower() {
        let share = strict();
        assert!(share.check_narrower_than(&share).is_ok());
        let guest = Policy { readonly: true, create: FileTypes::FILE, max_inodes: Some(10), ..strict() };
        assert!(guest.check_narrower_than(&share).is_ok());
        // Anything is narrower than the permissive policy.
        assert!(guest.check_narrower_than(&Policy::permissive()).is_ok());
    }

    #[test]
    fn each_widening_is_named() {
        let share = Policy { readonly: true, max_open_files: Some(100), ..strict() };
        let cases = [
            (Policy { readonly: false, ..share.clone() }, "read-only"),
            (Policy { allow_setuid: true, ..share.clone() }, "allow_setuid"),
            (Policy { create: FileTypes::ALL, ..share.clone() }, "create allows"),
            (Policy { max_open_files: None, ..share.clone() }, "max_open_files is unlimited"),
            (Policy { max_open_files: Some(101), ..share.clone() }, "max_open_files is 101"),
        ];
        for (guest, what) in cases {
            let e = guest.check_narrower_than(&share).unwrap_err();
            assert!(e.to_string().contains(what), "{e} should say {what}");
        }
    }

    #[test]
    fn path_rules_must_cover_the_shares() {
        let share = Policy { paths: PathRules::new([("a/b", Access::ReadOnly)]).unwrap(), ..strict() };
        // The same rule, a stricter one, or a rule on an ancestor.
        for rules in [[("a/b", Access::ReadOnly)], [("a/b", Access::Hidden)], [("a", Access::ReadOnly)]] {
            let guest = Policy { paths: PathRules::new(rules).unwrap(), ..strict() };
            assert!(guest.check_narrower_than(&share).is_ok(), "{rules:?}");
        }
        for rules in [vec![], vec![("a/c", Access::Hidden)], vec![("a/b/c", Access::Hidden)]] {
            let guest = Policy { paths: PathRules::new(rules.clone()).unwrap(), ..strict() };
            let e = guest.check_narrower_than(&share).unwrap_err();
            assert!(e.to_string().contains("path \"a/b\""), "{rules:?}: {e}");
        }
    }

    /// A policy with the read-only subtree "ro" and `dax` as its `[dax]`
    /// table.
    fn dax(dax: &str) -> Policy {
        crate::parse(&format!("[paths]\nreadonly = [\"ro\"]\n{dax}")).unwrap()
    }

    fn files(f: &str) -> Policy {
        dax(&format!("[dax]\nfiles = \"{f}\"\n"))
    }

    fn paths(list: &str) -> Policy {
        dax(&format!("[dax]\nfiles = \"paths\"\npaths = [{list}]\n"))
    }

    #[test]
    fn a_guest_may_only_narrow_the_shares_dax_files() {
        let (no_table, none, all, exe, ro) =
            (dax(""), files("none"), files("all"), files("executables"), files("read-only"));
        let bin_lib = paths("\"bin\", \"lib\"");
        // No guest table or "none": narrower than anything; no share table: the guest chooses.
        for share in [&no_table, &none, &all, &exe, &ro, &bin_lib] {
            assert!(no_table.check_narrower_than(share).is_ok());
            assert!(none.check_narrower_than(share).is_ok());
            assert!(share.check_narrower_than(&no_table).is_ok());
        }
        // Under "all", anything; the same choice is no wider.
        for g in [&exe, &ro, &bin_lib, &all] {
            assert!(g.check_narrower_than(&all).is_ok());
            assert!(g.check_narrower_than(g).is_ok());
        }
        // Paths inside the share's paths, or inside its read-only places.
        assert!(paths("\"bin/x\", \"lib\"").check_narrower_than(&bin_lib).is_ok());
        assert!(paths("\"ro/x\"").check_narrower_than(&ro).is_ok());
        // A guest of a read-only share may pick what is read-only for it.
        let ro_share = Policy { readonly: true, ..ro.clone() };
        assert!(Policy { readonly: true, ..paths("\"x\"") }.check_narrower_than(&ro_share).is_ok());
        // Wider: another kind, paths outside, more read-only places.
        let more_ro = crate::parse("[paths]\nreadonly = [\"ro\", \"home\"]\n[dax]\nfiles = \"read-only\"\n").unwrap();
        let cases = [
            (&all, &exe, "files is \"all\"; the share's is \"executables\""),
            (&exe, &none, "files is \"executables\""),
            (&exe, &ro, "the share's is \"read-only\""),
            (&ro, &bin_lib, "the share's is \"paths\""),
            (&paths("\"etc\""), &bin_lib, "picks files in \"etc\""),
            (&paths("\"bin\", \"ro\""), &bin_lib, "picks files in \"ro\""),
            (&paths("\"bin\""), &ro, "picks files in \"bin\""),
            (&more_ro, &ro, "picks files in \"home\""),
            (&Policy { readonly: true, ..ro.clone() }, &ro, "the whole share"),
        ];
        for (guest, share, what) in cases {
            let e = guest.check_narrower_than(share).unwrap_err();
            assert!(e.to_string().contains(what), "{e} should say {what}");
        }
    }

    #[test]
    fn id_maps_are_the_shares_when_it_sets_one() {
        let map = IdMap::new(vec![IdRange { guest: 0, host: 100_000, count: 65_536 }], Unmapped::Deny).unwrap();
        // A share without a map lets a guest have one.
        let guest = Policy { uid: map.clone(), ..strict() };
        assert!(guest.check_narrower_than(&strict()).is_ok());
        // A share with one fixes it.
        let share = Policy { uid: map, ..strict() };
        assert!(share.check_narrower_than(&share).is_ok());
        let e = strict().check_narrower_than(&share).unwrap_err();
        assert!(e.to_string().contains("uid map differs"), "{e}");
    }
}
