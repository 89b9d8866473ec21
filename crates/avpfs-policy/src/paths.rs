//! Subtree rules: parts of a share that are hidden from the guest or
//! read-only inside a writable share, and the subtrees whose files the
//! guest maps through the DAX window (`[dax] paths`).
//!
//! Rules name paths relative to the share root, one component at a time, in a
//! small tree. The enforcement layer keeps a [`Position`] per node it has
//! handed to the guest and derives a child's position from its parent's and
//! the child's name, so no host path is ever built or resolved for a check.

use std::collections::HashMap;
use std::fmt;

/// What a subtree rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// Read and write as the share allows.
    Normal,
    /// Read only: modifications fail with EROFS.
    ReadOnly,
    /// Not there: lookups fail with ENOENT and listings leave it out.
    Hidden,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Normal => "normal",
            Access::ReadOnly => "read-only",
            Access::Hidden => "hidden",
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RuleNode {
    children: HashMap<Vec<u8>, usize>,
    access: Option<Access>,
    rule: String,
    /// A `[dax] paths` subtree starts here.
    dax: bool,
    /// The path of the DAX rule, as written.
    dax_rule: String,
}

/// Where a node sits relative to the rules: cheap to copy and store per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    node: Option<usize>,
    access: Access,
    rule: Option<usize>,
    dax: bool,
}

impl Position {
    /// The access that applies here (the strictest rule on the path).
    pub fn access(&self) -> Access {
        self.access
    }

    /// Whether this is inside a `[dax] paths` subtree.
    pub fn dax(&self) -> bool {
        self.dax
    }
}

/// A path rule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRuleError {
    /// The path is empty or names the share root.
    #[error("path {0:?} names the share root; use the share's readonly setting instead")]
    Root(String),
    /// The path has a `.` or `..` component, or is absolute.
    #[error("path {0:?} must be relative to the share and may not contain '.' or '..'")]
    NotNormal(String),
    /// The same path has two rules.
    #[error("path {0:?} has two rules")]
    Duplicate(String),
}

/// The subtree rules of a share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRules {
    nodes: Vec<RuleNode>,
}

impl Default for PathRules {
    fn default() -> Self {
        PathRules { nodes: vec![RuleNode::default()] }
    }
}

impl PathRules {
    /// Builds the rules from (path, access) pairs.
    pub fn new<'a>(rules: impl IntoIterator<Item = (&'a str, Access)>) -> Result<Self, PathRuleError> {
        let mut t = PathRules::default();
        for (path, access) in rules {
            t.add(path, access)?;
        }
        Ok(t)
    }

    /// Adds one rule.
    pub fn add(&mut self, path: &str, access: Access) -> Result<(), PathRuleError> {
        let at = self.node_for(path)?;
        if self.nodes[at].access.is_some() {
            return Err(PathRuleError::Duplicate(path.into()));
        }
        self.nodes[at].access = Some(access);
        self.nodes[at].rule = path.into();
        Ok(())
    }

    /// Marks a subtree whose files the guest maps through the DAX window
    /// (`[dax] paths`). Independent of the access rules: a path may have
    /// both.
    pub fn add_dax(&mut self, path: &str) -> Result<(), PathRuleError> {
        let at = self.node_for(path)?;
        if self.nodes[at].dax {
            return Err(PathRuleError::Duplicate(path.into()));
        }
        self.nodes[at].dax = true;
        self.nodes[at].dax_rule = path.into();
        Ok(())
    }

    /// The rule tree node of `path`, made when missing.
    fn node_for(&mut self, path: &str) -> Result<usize, PathRuleError> {
        if path.starts_with('/') {
            return Err(PathRuleError::NotNormal(path.into()));
        }
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        if comps.is_empty() {
            return Err(PathRuleError::Root(path.into()));
        }
        if comps.iter().any(|c| *c == "." || *c == "..") {
            return Err(PathRuleError::NotNormal(path.into()));
        }
        let mut at = 0;
        for c in comps {
            at = match self.nodes[at].children.get(c.as_bytes()) {
                Some(&n) => n,
                None => {
                    self.nodes.push(RuleNode::default());
                    let n = self.nodes.len() - 1;
                    self.nodes[at].children.insert(c.as_bytes().to_vec(), n);
                    n
                }
            };
        }
        Ok(at)
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1
    }

    /// The position of the share root.
    pub fn root(&self) -> Position {
        Position { node: Some(0), access: Access::Normal, rule: None, dax: false }
    }

    /// The position of `name` inside a directory at `parent`.
    pub fn child(&self, parent: Position, name: &[u8]) -> Position {
        let node = parent.node.and_then(|p| self.nodes[p].children.get(name).copied());
        let (access, rule) = match node.and_then(|n| self.nodes[n].access.map(|a| (a, n))) {
            Some((a, n)) if a > parent.access => (a, Some(n)),
            _ => (parent.access, parent.rule),
        };
        let dax = parent.dax || node.is_some_and(|n| self.nodes[n].dax);
        Position { node, access, rule, dax }
    }

    /// The rule text that decided `pos`, for audit lines.
    pub fn rule_of(&self, pos: Position) -> Option<&str> {
        pos.rule.map(|n| self.nodes[n].rule.as_str())
    }

    /// Every rule, for printing the effective policy.
    pub fn list(&self) -> Vec<(String, Access)> {
        let mut v: Vec<_> = self.nodes.iter().filter_map(|n| n.access.map(|a| (n.rule.clone(), a))).collect();
        v.sort();
        v
    }

    /// Every `[dax] paths` subtree, sorted.
    pub fn dax_list(&self) -> Vec<String> {
        let mut v: Vec<_> = self.nodes.iter().filter(|n| n.dax).map(|n| n.dax_rule.clone()).collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(r: &PathRules, path: &str) -> Position {
        path.split('/').fold(r.root(), |p, c| r.child(p, c.as_bytes()))
    }

    #[test]
    fn rules_apply_to_whole_subtrees() {
        let r =
            PathRules::new([("secrets", Access::Hidden), ("firmware", Access::ReadOnly), ("a/b/c", Access::Hidden)])
                .unwrap();
        assert_eq!(walk(&r, "secrets").access(), Access::Hidden);
        assert_eq!(walk(&r, "secrets/deep/er").access(), Access::Hidden);
        assert_eq!(walk(&r, "firmware/x.bin").access(), Access::ReadOnly);
        assert_eq!(walk(&r, "a").access(), Access::Normal);
        assert_eq!(walk(&r, "a/b").access(), Access::Normal);
        assert_eq!(walk(&r, "a/b/c").access(), Access::Hidden);
        assert_eq!(walk(&r, "a/b/cc").access(), Access::Normal);
        assert_eq!(walk(&r, "other/secrets").access(), Access::Normal, "rules are anchored at the root");
        assert_eq!(r.rule_of(walk(&r, "secrets/x")), Some("secrets"));
        assert_eq!(r.rule_of(walk(&r, "a/b")), None);
    }

    #[test]
    fn the_strictest_rule_on_the_path_wins() {
        let r = PathRules::new([
            ("ro", Access::ReadOnly),
            ("ro/hidden", Access::Hidden),
            ("h", Access::Hidden),
            ("h/ro", Access::ReadOnly),
        ])
        .unwrap();
        assert_eq!(walk(&r, "ro/hidden/x").access(), Access::Hidden);
        assert_eq!(walk(&r, "ro/other").access(), Access::ReadOnly);
        assert_eq!(walk(&r, "h/ro").access(), Access::Hidden, "a looser rule below a stricter one changes nothing");
    }

    #[test]
    fn dax_subtrees_are_marked_beside_the_access_rules() {
        let mut r = PathRules::new([("bin", Access::ReadOnly), ("secrets", Access::Hidden)]).unwrap();
        r.add_dax("bin").unwrap();
        r.add_dax("usr/lib").unwrap();
        assert!(walk(&r, "bin/ls").dax() && walk(&r, "bin/ls").access() == Access::ReadOnly);
        assert!(walk(&r, "usr/lib/x/libc.so").dax());
        assert!(!walk(&r, "usr").dax() && !walk(&r, "usr/libexec").dax() && !walk(&r, "secrets/k").dax());
        assert_eq!(r.dax_list(), ["bin", "usr/lib"]);
        assert_eq!(r.list().len(), 2, "DAX marks are not access rules");
        assert_eq!(r.add_dax("usr/lib/"), Err(PathRuleError::Duplicate("usr/lib/".into())));
        assert_eq!(r.add_dax(".."), Err(PathRuleError::NotNormal("..".into())));
        assert_eq!(r.add_dax("/"), Err(PathRuleError::NotNormal("/".into())));
    }

    #[test]
    fn bad_paths_are_refused() {
        assert_eq!(PathRules::new([("", Access::Hidden)]), Err(PathRuleError::Root("".into())));
        assert_eq!(PathRules::new([("/etc", Access::Hidden)]), Err(PathRuleError::NotNormal("/etc".into())));
        assert_eq!(PathRules::new([("a/../b", Access::Hidden)]), Err(PathRuleError::NotNormal("a/../b".into())));
        assert_eq!(
            PathRules::new([("a", Access::Hidden), ("a/", Access::ReadOnly)]),
            Err(PathRuleError::Duplicate("a/".into()))
        );
        assert!(PathRules::new([("a//b/", Access::Hidden)]).is_ok());
    }
}
