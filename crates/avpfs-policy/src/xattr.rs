//! Extended attribute name rules: allow, deny, or keep a guest's names under
//! another prefix on the host (so a guest can have `security.*` attributes
//! of its own, stored as `user.avpfs.security.*`, and never set host labels).
//!
//! Rules are tried in order; the first whose prefix matches a guest name
//! decides. A host name is listed to the guest only if some guest name maps
//! to it, so the two directions always agree.

use std::fmt;

/// What a rule does with the names it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XattrAction {
    /// The name is used as it is.
    Allow,
    /// Every operation on the name fails (EPERM for set/remove, ENODATA for get);
    /// it is never listed.
    Deny,
    /// The guest prefix is replaced by this host prefix.
    Rename(String),
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XattrRule {
    /// The guest name prefix the rule matches ("" matches everything).
    pub prefix: String,
    /// What to do.
    pub action: XattrAction,
}

/// An ordered list of rules with a default for names no rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XattrRules {
    rules: Vec<XattrRule>,
    default_allow: bool,
}

impl Default for XattrRules {
    fn default() -> Self {
        XattrRules { rules: Vec::new(), default_allow: true }
    }
}

/// Which rule decided, for audit lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decider {
    /// Rule number `n` (0-based) of the list.
    Rule(usize),
    /// No rule matched; the default applied.
    Default,
}

impl fmt::Display for Decider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decider::Rule(n) => write!(f, "xattr rule {}", n + 1),
            Decider::Default => write!(f, "xattr default"),
        }
    }
}

impl XattrRules {
    /// Rules in order, and whether unmatched names are allowed.
    pub fn new(rules: Vec<XattrRule>, default_allow: bool) -> Self {
        XattrRules { rules, default_allow }
    }

    /// Whether the rules change nothing.
    pub fn is_passthrough(&self) -> bool {
        self.rules.is_empty() && self.default_allow
    }

    /// The rules.
    pub fn rules(&self) -> &[XattrRule] {
        &self.rules
    }

    /// Whether unmatched names are allowed.
    pub fn default_allow(&self) -> bool {
        self.default_allow
    }

    /// The host name for a guest name, or the rule that denies it.
    pub fn to_host(&self, guest: &[u8]) -> Result<Vec<u8>, Decider> {
        for (i, r) in self.rules.iter().enumerate() {
            if let Some(rest) = guest.strip_prefix(r.prefix.as_bytes()) {
                return match &r.action {
                    XattrAction::Allow => Ok(guest.to_vec()),
                    XattrAction::Deny => Err(Decider::Rule(i)),
                    XattrAction::Rename(to) => Ok([to.as_bytes(), rest].concat()),
                };
            }
        }
        if self.default_allow {
            Ok(guest.to_vec())
        } else {
            Err(Decider::Default)
        }
    }

    /// The guest name under which a host name is shown, if any.
    pub fn to_guest(&self, host: &[u8]) -> Option<Vec<u8>> {
        // Candidates: the name itself, and every rename whose target prefix matches.
        let mut candidates = vec![host.to_vec()];
        for r in &self.rules {
            if let XattrAction::Rename(to) = &r.action {
                if let Some(rest) = host.strip_prefix(to.as_bytes()) {
                    candidates.push([r.prefix.as_bytes(), rest].concat());
                }
            }
        }
        candidates.into_iter().find(|g| self.to_host(g).as_deref() == Ok(host))
    }

    /// Maps a NUL-separated host name list to the guest's list.
    pub fn list_to_guest(&self, host_list: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(host_list.len());
        for name in host_list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            if let Some(g) = self.to_guest(name) {
                out.extend_from_slice(&g);
                out.push(0);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> XattrRules {
        XattrRules::new(
            vec![
                XattrRule { prefix: "trusted.".into(), action: XattrAction::Deny },
                XattrRule { prefix: "security.".into(), action: XattrAction::Rename("user.avpfs.security.".into()) },
                XattrRule { prefix: "user.avpfs.".into(), action: XattrAction::Deny },
                XattrRule { prefix: "user.".into(), action: XattrAction::Allow },
                XattrRule { prefix: "system.posix_acl_".into(), action: XattrAction::Allow },
            ],
            false,
        )
    }

    #[test]
    fn guest_names_map_to_host_names() {
        let r = rules();
        assert_eq!(r.to_host(b"user.x").unwrap(), b"user.x");
        assert_eq!(r.to_host(b"security.selinux").unwrap(), b"user.avpfs.security.selinux");
        assert_eq!(r.to_host(b"trusted.overlay.opaque"), Err(Decider::Rule(0)));
        assert_eq!(r.to_host(b"user.avpfs.security.selinux"), Err(Decider::Rule(2)), "no direct access to the store");
        assert_eq!(r.to_host(b"system.foo"), Err(Decider::Default));
    }

    #[test]
    fn host_names_are_listed_only_when_reachable() {
        let r = rules();
        assert_eq!(r.to_guest(b"user.avpfs.security.selinux").unwrap(), b"security.selinux");
        assert_eq!(r.to_guest(b"security.selinux"), None, "the host's own label is hidden");
        assert_eq!(r.to_guest(b"trusted.x"), None);
        assert_eq!(r.to_guest(b"user.plain").unwrap(), b"user.plain");
        let list = b"user.plain\0security.selinux\0user.avpfs.security.ima\0trusted.t\0";
        assert_eq!(r.list_to_guest(list), b"user.plain\0security.ima\0");
    }

    #[test]
    fn no_rules_is_passthrough() {
        let r = XattrRules::default();
        assert!(r.is_passthrough());
        assert_eq!(r.to_host(b"security.selinux").unwrap(), b"security.selinux");
        assert_eq!(r.list_to_guest(b"a\0b\0"), b"a\0b\0");
    }
}
