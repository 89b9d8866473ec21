//! Whether one policy is at least as strict as another: a guest of a share
//! may have its own policy, narrower than the share's (read-only, fewer file
//! types, lower limits, more hidden paths), never wider.

use crate::Policy;

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
        Ok(())
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
