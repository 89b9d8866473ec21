//! virtiofsd's command-line forms of id and xattr translation, read into the
//! policy's own rules: `--translate-uid`/`--translate-gid`
//! (`TYPE:SOURCE:TARGET:COUNT`, [`parse_translate`]) and `--xattrmap`
//! (`:TYPE:SCOPE:KEY:PREPEND:` rules, [`parse_xattrmap`]). With them avpfs
//! takes a virtiofsd command line unchanged; the rules end up in the same
//! [`IdMap`] and [`XattrRules`] a policy file sets, enforced by the same layer.

use crate::idmap::{IdMap, IdMapError, IdRange, OneWay, Unmapped};
use crate::xattr::{XattrAction, XattrRule, XattrRules};

/// Why a virtiofsd-style translation argument is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompatError {
    /// The type before the first `:` is not one virtiofsd knows.
    #[error("{arg}: unknown type {kind:?} (guest, host, squash-guest, squash-host, forbid-guest, map)")]
    UnknownIdType {
        /// The argument.
        arg: String,
        /// Its type field.
        kind: String,
    },
    /// Wrong number of fields or a field that is not a 32-bit number.
    #[error("{arg}: expected {expected}")]
    BadIdFields {
        /// The argument.
        arg: String,
        /// The form the type takes.
        expected: &'static str,
    },
    /// The rules together do not form a valid map.
    #[error("{arg}: {source}")]
    InvalidMap {
        /// The argument that made the map invalid.
        arg: String,
        /// Why.
        source: IdMapError,
    },
    /// An xattrmap rule is malformed.
    #[error("--xattrmap rule {rule}: {why}")]
    BadXattrRule {
        /// Rule number (1-based).
        rule: usize,
        /// Why.
        why: String,
    },
    /// The xattrmap has no rule at all.
    #[error("--xattrmap has no rules")]
    NoXattrRules,
}

/// One parsed `--translate-uid`/`--translate-gid` argument.
enum IdArg {
    Both(IdRange),
    GuestToHost(OneWay),
    HostToGuest(OneWay),
}

fn parse_id_arg(arg: &str) -> Result<IdArg, CompatError> {
    let (kind, rest) = arg.split_once(':').unwrap_or((arg, ""));
    let (arity, expected) = match kind {
        "forbid-guest" => (2, "forbid-guest:<guest base>:<count>"),
        "guest" => (3, "guest:<guest base>:<host base>:<count>"),
        "host" => (3, "host:<host base>:<guest base>:<count>"),
        "squash-guest" => (3, "squash-guest:<guest base>:<host id>:<count>"),
        "squash-host" => (3, "squash-host:<host base>:<guest id>:<count>"),
        "map" => (3, "map:<guest base>:<host base>:<count>"),
        _ => return Err(CompatError::UnknownIdType { arg: arg.into(), kind: kind.into() }),
    };
    let bad = || CompatError::BadIdFields { arg: arg.into(), expected };
    let fields: Vec<u32> =
        rest.split(':').map(|f| f.trim().parse::<u32>()).collect::<Result<_, _>>().map_err(|_| bad())?;
    if fields.len() != arity {
        return Err(bad());
    }
    Ok(match kind {
        "forbid-guest" => IdArg::GuestToHost(OneWay::Forbid { from: fields[0], count: fields[1] }),
        "guest" => IdArg::GuestToHost(OneWay::Range { from: fields[0], to: fields[1], count: fields[2] }),
        "host" => IdArg::HostToGuest(OneWay::Range { from: fields[0], to: fields[1], count: fields[2] }),
        "squash-guest" => IdArg::GuestToHost(OneWay::Squash { from: fields[0], to: fields[1], count: fields[2] }),
        "squash-host" => IdArg::HostToGuest(OneWay::Squash { from: fields[0], to: fields[1], count: fields[2] }),
        _ => IdArg::Both(IdRange { guest: fields[0], host: fields[1], count: fields[2] }),
    })
}

/// Reads virtiofsd's `--translate-uid` (or `--translate-gid`) arguments, in
/// order, into an id map. Ids no argument covers pass unchanged, as in
/// virtiofsd; no two arguments of one direction may cover the same id.
pub fn parse_translate<S: AsRef<str>>(args: &[S]) -> Result<IdMap, CompatError> {
    let (mut ranges, mut guest, mut host) = (Vec::new(), Vec::new(), Vec::new());
    let mut map = IdMap::identity();
    for arg in args {
        let arg = arg.as_ref();
        match parse_id_arg(arg)? {
            IdArg::Both(r) => ranges.push(r),
            IdArg::GuestToHost(r) => guest.push(r),
            IdArg::HostToGuest(r) => host.push(r),
        }
        // Built after each argument, so the error names the one that broke it.
        map = IdMap::with_one_way(ranges.clone(), guest.clone(), host.clone(), Unmapped::Identity)
            .map_err(|source| CompatError::InvalidMap { arg: arg.into(), source })?;
    }
    Ok(map)
}

/// Reads a virtiofsd `--xattrmap` into xattr rules.
///
/// Rules are separated by white space; each starts with its own delimiter
/// character: `:TYPE:SCOPE:KEY:PREPEND:` with TYPE `prefix` (guest names
/// starting with KEY get PREPEND in front on the host), `ok` (unchanged),
/// `bad` (refused with EPERM, hidden from listings) or `unsupported` (the
/// same, for avpfs), SCOPE `client`, `server` or `all`; and
/// `:map:KEY:PREPEND:` (at most once, last), which stands for a `prefix`
/// rule, then (with a KEY) `bad` for names already starting with PREPEND and
/// `ok` for everything else, or (without) `bad` for everything else.
///
/// avpfs applies the client side of the rules (the guest's names), first
/// match wins, and lists a host name exactly when some guest name maps to
/// it, so a listing never shows a name the guest could not use. virtiofsd's
/// server-scope rules describe that same listing; they are checked for form
/// and otherwise implied. A guest name no rule matches is refused.
pub fn parse_xattrmap(map: &str) -> Result<XattrRules, CompatError> {
    let mut rules = Vec::new();
    let mut rest = map.trim_start();
    let mut n = 0;
    let mut seen_map = false;
    while !rest.is_empty() {
        n += 1;
        let bad = |why: &str| CompatError::BadXattrRule { rule: n, why: why.into() };
        if seen_map {
            return Err(bad("the map rule must be the last rule"));
        }
        let delim = rest.chars().next().ok_or_else(|| bad("empty rule"))?;
        let body = &rest[delim.len_utf8()..];
        let kind_end = body.find(delim).ok_or_else(|| bad("missing fields"))?;
        let kind = &body[..kind_end];
        let nfields = match kind {
            "map" => 2,
            "prefix" | "ok" | "bad" | "unsupported" => 3,
            other => return Err(bad(&format!("unknown type {other:?} (prefix, ok, bad, unsupported, map)"))),
        };
        let mut fields = Vec::with_capacity(nfields);
        let mut cursor = &body[kind_end + delim.len_utf8()..];
        for _ in 0..nfields {
            let end = cursor.find(delim).ok_or_else(|| bad("missing fields"))?;
            fields.push(&cursor[..end]);
            cursor = &cursor[end + delim.len_utf8()..];
        }
        if cursor.chars().next().is_some_and(|c| !c.is_whitespace()) {
            return Err(bad("text after the closing delimiter"));
        }
        rest = cursor.trim_start();
        if kind == "map" {
            seen_map = true;
            let (key, prepend) = (fields[0], fields[1]);
            rules.push(XattrRule { prefix: key.into(), action: XattrAction::Rename(prepend.into()) });
            if key.is_empty() {
                rules.push(XattrRule { prefix: String::new(), action: XattrAction::Deny });
            } else {
                rules.push(XattrRule { prefix: prepend.into(), action: XattrAction::Deny });
                rules.push(XattrRule { prefix: String::new(), action: XattrAction::Allow });
            }
            continue;
        }
        let client = match fields[0] {
            "client" | "all" => true,
            "server" => false,
            other => return Err(bad(&format!("unknown scope {other:?} (client, server, all)"))),
        };
        if !client {
            continue;
        }
        let (key, prepend) = (fields[1], fields[2]);
        let action = match kind {
            "prefix" => XattrAction::Rename(prepend.into()),
            "ok" => XattrAction::Allow,
            _ => XattrAction::Deny,
        };
        rules.push(XattrRule { prefix: key.into(), action });
    }
    if n == 0 {
        return Err(CompatError::NoXattrRules);
    }
    Ok(XattrRules::new(rules, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translate_types_map_as_virtiofsd_describes() {
        let m = parse_translate(&[
            "map:1000:101000:10",
            "squash-guest:0:65534:1000",
            "forbid-guest:5000:100",
            "host:0:2000:1",
            "squash-host:1:3000:10",
            "guest:7000:17000:5",
        ])
        .unwrap();
        assert_eq!(m.to_host(1005), Some(101005));
        assert_eq!(m.to_guest(101005), 1005);
        assert_eq!(m.to_host(0), Some(65534));
        assert_eq!(m.to_host(999), Some(65534));
        assert_eq!(m.to_host(5050), None);
        assert_eq!(m.to_guest(0), 2000);
        assert_eq!(m.to_guest(5), 3000);
        assert_eq!(m.to_host(7001), Some(17001));
        assert_eq!(m.to_guest(17001), 17001);
        assert_eq!(m.to_host(40000), Some(40000), "uncovered ids pass, as in virtiofsd");
    }

    #[test]
    fn translate_errors_name_the_argument() {
        let err = |a: &[&str]| parse_translate(a).unwrap_err().to_string();
        assert!(err(&["mapp:1:2:3"]).contains("unknown type \"mapp\""));
        assert!(err(&["map:1:2"]).contains("map:<guest base>:<host base>:<count>"));
        assert!(err(&["forbid-guest:1:2:3"]).contains("forbid-guest:<guest base>:<count>"));
        assert!(err(&["guest:1:x:3"]).starts_with("guest:1:x:3"));
        assert!(err(&["guest:1:2:-3"]).starts_with("guest:1:2:-3"));
        let e = err(&["forbid-guest:0:1000", "map:999:999:1"]);
        assert!(e.starts_with("map:999:999:1") && e.contains("overlap"), "{e}");
        assert!(err(&["map:4294967295:0:2"]).contains("runs past"));
        assert!(err(&["squash-host:0:0:0"]).contains("count 0"));
    }

    #[test]
    fn xattrmap_map_without_key_keeps_every_guest_name_under_a_prefix() {
        let r = parse_xattrmap(":map::user.virtiofs.:").unwrap();
        assert_eq!(r.to_host(b"security.selinux").unwrap(), b"user.virtiofs.security.selinux");
        assert_eq!(r.to_guest(b"user.virtiofs.security.selinux").unwrap(), b"security.selinux");
        assert_eq!(r.to_guest(b"trusted.x"), None, "host names outside the prefix are hidden");
    }

    #[test]
    fn xattrmap_map_with_key_renames_that_key_only() {
        let r = parse_xattrmap(" :map:trusted.:user.virtiofs.: ").unwrap();
        assert_eq!(r.to_host(b"trusted.a").unwrap(), b"user.virtiofs.a");
        assert!(r.to_host(b"user.virtiofs.a").is_err(), "the host prefix cannot be reached directly");
        assert_eq!(r.to_host(b"user.b").unwrap(), b"user.b");
        assert_eq!(r.to_guest(b"user.virtiofs.a").unwrap(), b"trusted.a");
        assert_eq!(r.to_guest(b"trusted.host"), None);
    }

    #[test]
    fn xattrmap_full_rules_in_order() {
        // virtiofsd's documented example 2, with a different delimiter per rule.
        let r = parse_xattrmap(
            "/prefix/all/trusted./user.virtiofs./ /bad/server//trusted./ |bad|client|user.virtiofs.|| :ok:all:::",
        )
        .unwrap();
        assert_eq!(r.to_host(b"trusted.x").unwrap(), b"user.virtiofs.x");
        assert!(r.to_host(b"user.virtiofs.x").is_err());
        assert_eq!(r.to_host(b"user.y").unwrap(), b"user.y");
        assert_eq!(r.to_guest(b"trusted.x"), None);
        let list = r.list_to_guest(b"user.virtiofs.x\0trusted.h\0user.y\0");
        assert_eq!(list, b"trusted.x\0user.y\0");
        let deny_all = parse_xattrmap(":bad:all:::").unwrap();
        assert!(deny_all.to_host(b"user.a").is_err());
        let unmatched = parse_xattrmap(":ok:all:user.::").unwrap();
        assert!(unmatched.to_host(b"security.a").is_err(), "a name no rule matches is refused");
    }

    #[test]
    fn xattrmap_errors() {
        let err = |m: &str| parse_xattrmap(m).unwrap_err().to_string();
        assert_eq!(err("   "), "--xattrmap has no rules");
        assert!(err(":okay:all:::").contains("rule 1: unknown type \"okay\""));
        assert!(err(":ok:all:::  :ok:everywhere:::").contains("rule 2: unknown scope"));
        assert!(err(":ok:all::").contains("missing fields"));
        assert!(err(":ok:all:::x").contains("text after"));
        assert!(err(":map::p: :ok:all:::").contains("rule 2: the map rule must be the last"));
    }
}
