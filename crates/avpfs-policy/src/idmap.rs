//! Mapping user and group ids between a guest and the host.
//!
//! A map is a list of ranges (`guest`, `host`, `count`) plus what to do with
//! an id outside every range: pass it through unchanged, squash it to one id,
//! or refuse the request. The same map translates in both directions: guest
//! ids of requests and of new owners to host ids, host ids of attributes back
//! to guest ids.

use std::fmt;

/// One range of a map: `count` ids from `guest` map to `count` ids from `host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First guest id.
    pub guest: u32,
    /// First host id.
    pub host: u32,
    /// Number of ids (at least 1).
    pub count: u32,
}

impl IdRange {
    fn guest_to_host(&self, id: u32) -> Option<u32> {
        let off = id.checked_sub(self.guest)?;
        (off < self.count).then(|| self.host + off)
    }

    fn host_to_guest(&self, id: u32) -> Option<u32> {
        let off = id.checked_sub(self.host)?;
        (off < self.count).then(|| self.guest + off)
    }

    fn overlaps_guest(&self, o: &IdRange) -> bool {
        u64::from(self.guest) < u64::from(o.guest) + u64::from(o.count)
            && u64::from(o.guest) < u64::from(self.guest) + u64::from(self.count)
    }

    fn overlaps_host(&self, o: &IdRange) -> bool {
        u64::from(self.host) < u64::from(o.host) + u64::from(o.count)
            && u64::from(o.host) < u64::from(self.host) + u64::from(self.count)
    }
}

/// What happens to an id that no range covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unmapped {
    /// The id is used unchanged (no translation).
    #[default]
    Identity,
    /// The id becomes this id (guest→host: the host id; host→guest: the guest id).
    Squash(u32),
    /// A request with this id is refused (EPERM); attributes show the overflow id.
    Deny,
}

/// The overflow id shown for host ids that have no guest id (like /proc/sys/fs/overflowuid).
pub const OVERFLOW_ID: u32 = 65534;

/// A rule of one direction only (guest→host or host→guest), as virtiofsd's
/// `--translate-uid`/`--translate-gid` types `guest`, `host`, `squash-guest`,
/// `squash-host` and `forbid-guest` describe them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneWay {
    /// `count` ids from `from` map 1:1 to ids from `to`.
    Range {
        /// First source id.
        from: u32,
        /// First target id.
        to: u32,
        /// Number of ids (at least 1).
        count: u32,
    },
    /// `count` ids from `from` all map to `to`.
    Squash {
        /// First source id.
        from: u32,
        /// Number of ids (at least 1).
        count: u32,
        /// The one target id.
        to: u32,
    },
    /// `count` ids from `from` are refused (guest→host only).
    Forbid {
        /// First source id.
        from: u32,
        /// Number of ids (at least 1).
        count: u32,
    },
}

impl OneWay {
    fn span(&self) -> (u32, u32) {
        match *self {
            OneWay::Range { from, count, .. } | OneWay::Squash { from, count, .. } | OneWay::Forbid { from, count } => {
                (from, count)
            }
        }
    }

    /// `Some(Some(id))`: mapped; `Some(None)`: forbidden; `None`: not covered.
    fn apply(&self, id: u32) -> Option<Option<u32>> {
        let (from, count) = self.span();
        let off = id.checked_sub(from)?;
        if off >= count {
            return None;
        }
        Some(match *self {
            OneWay::Range { to, .. } => Some(to + off),
            OneWay::Squash { to, .. } => Some(to),
            OneWay::Forbid { .. } => None,
        })
    }
}

fn spans_overlap(a: (u32, u32), b: (u32, u32)) -> bool {
    u64::from(a.0) < u64::from(b.0) + u64::from(b.1) && u64::from(b.0) < u64::from(a.0) + u64::from(a.1)
}

/// A checked id map.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdMap {
    ranges: Vec<IdRange>,
    unmapped: Unmapped,
    /// Guest→host rules tried after `ranges`.
    guest_rules: Vec<OneWay>,
    /// Host→guest rules tried after `ranges`.
    host_rules: Vec<OneWay>,
}

/// Why a map is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdMapError {
    /// A range has a count of zero.
    #[error("range {0} has count 0")]
    EmptyRange(usize),
    /// A range runs past the last id.
    #[error("range {0} runs past id 4294967295")]
    Overflow(usize),
    /// Two ranges map the same guest ids.
    #[error("ranges {0} and {1} overlap on the guest side")]
    GuestOverlap(usize, usize),
    /// Two ranges map to the same host ids.
    #[error("ranges {0} and {1} overlap on the host side")]
    HostOverlap(usize, usize),
    /// A host→guest rule forbids ids (only guest ids can be forbidden).
    #[error("host-side rule {0} cannot forbid ids")]
    HostForbid(usize),
}

impl IdMap {
    /// The identity map.
    pub fn identity() -> Self {
        IdMap::default()
    }

    /// A map from ranges; ranges may not overlap on either side, so the map
    /// is a bijection on the ids it covers.
    pub fn new(ranges: Vec<IdRange>, unmapped: Unmapped) -> Result<Self, IdMapError> {
        for (i, r) in ranges.iter().enumerate() {
            if r.count == 0 {
                return Err(IdMapError::EmptyRange(i));
            }
            if u64::from(r.guest) + u64::from(r.count) > 1 << 32 || u64::from(r.host) + u64::from(r.count) > 1 << 32 {
                return Err(IdMapError::Overflow(i));
            }
            for (j, o) in ranges.iter().enumerate().take(i) {
                if r.overlaps_guest(o) {
                    return Err(IdMapError::GuestOverlap(j, i));
                }
                if r.overlaps_host(o) {
                    return Err(IdMapError::HostOverlap(j, i));
                }
            }
        }
        Ok(IdMap { ranges, unmapped, guest_rules: Vec::new(), host_rules: Vec::new() })
    }

    /// A map from two-way `ranges` plus one-way rules for each direction;
    /// no two rules of one direction may cover the same id (rule numbers in
    /// errors count `ranges` first, then `guest_rules`, then `host_rules`).
    pub fn with_one_way(
        ranges: Vec<IdRange>,
        guest_rules: Vec<OneWay>,
        host_rules: Vec<OneWay>,
        unmapped: Unmapped,
    ) -> Result<Self, IdMapError> {
        let mut map = IdMap::new(ranges, unmapped)?;
        let n = map.ranges.len();
        let guest_spans: Vec<(u32, u32)> = map.ranges.iter().map(|r| (r.guest, r.count)).collect();
        let host_spans: Vec<(u32, u32)> = map.ranges.iter().map(|r| (r.host, r.count)).collect();
        for (side, rules, base, mut spans) in
            [(false, &guest_rules, n, guest_spans), (true, &host_rules, n + guest_rules.len(), host_spans)]
        {
            for (k, rule) in rules.iter().enumerate() {
                let i = base + k;
                let (from, count) = rule.span();
                if count == 0 {
                    return Err(IdMapError::EmptyRange(i));
                }
                let to_end = match *rule {
                    OneWay::Range { to, count, .. } => u64::from(to) + u64::from(count),
                    _ => 0,
                };
                if u64::from(from) + u64::from(count) > 1 << 32 || to_end > 1 << 32 {
                    return Err(IdMapError::Overflow(i));
                }
                if side && matches!(rule, OneWay::Forbid { .. }) {
                    return Err(IdMapError::HostForbid(i));
                }
                if let Some(j) = spans.iter().position(|&s| spans_overlap(s, (from, count))) {
                    let j = if j < n { j } else { j + if side { guest_rules.len() } else { 0 } };
                    return Err(if side { IdMapError::HostOverlap(j, i) } else { IdMapError::GuestOverlap(j, i) });
                }
                spans.push((from, count));
            }
        }
        map.guest_rules = guest_rules;
        map.host_rules = host_rules;
        Ok(map)
    }

    /// Whether this map changes nothing.
    pub fn is_identity(&self) -> bool {
        self.ranges.is_empty()
            && self.guest_rules.is_empty()
            && self.host_rules.is_empty()
            && self.unmapped == Unmapped::Identity
    }

    /// The host id for a guest id; `None` means the request must be refused.
    pub fn to_host(&self, guest: u32) -> Option<u32> {
        if let Some(h) = self.ranges.iter().find_map(|r| r.guest_to_host(guest)) {
            return Some(h);
        }
        if let Some(h) = self.guest_rules.iter().find_map(|r| r.apply(guest)) {
            return h;
        }
        match self.unmapped {
            Unmapped::Identity => Some(guest),
            Unmapped::Squash(id) => Some(id),
            Unmapped::Deny => None,
        }
    }

    /// The guest id shown for a host id.
    pub fn to_guest(&self, host: u32) -> u32 {
        if let Some(g) = self.ranges.iter().find_map(|r| r.host_to_guest(host)) {
            return g;
        }
        if let Some(g) = self.host_rules.iter().find_map(|r| r.apply(host)) {
            return g.unwrap_or(OVERFLOW_ID);
        }
        match self.unmapped {
            Unmapped::Identity => host,
            Unmapped::Squash(_) | Unmapped::Deny => OVERFLOW_ID,
        }
    }

    /// The ranges.
    pub fn ranges(&self) -> &[IdRange] {
        &self.ranges
    }

    /// The rule for ids outside the ranges.
    pub fn unmapped(&self) -> Unmapped {
        self.unmapped
    }
}

impl fmt::Display for IdMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_identity() {
            return write!(f, "identity");
        }
        for r in &self.ranges {
            write!(
                f,
                "guest {}..{} -> host {}..{}; ",
                r.guest,
                u64::from(r.guest) + u64::from(r.count) - 1,
                r.host,
                u64::from(r.host) + u64::from(r.count) - 1
            )?;
        }
        for (dir, rules) in [("guest", &self.guest_rules), ("host", &self.host_rules)] {
            let other = if dir == "guest" { "host" } else { "guest" };
            for r in rules.iter() {
                let (from, count) = r.span();
                let last = u64::from(from) + u64::from(count) - 1;
                match *r {
                    OneWay::Range { to, .. } => write!(
                        f,
                        "{dir} {from}..{last} -> {other} {to}..{} only; ",
                        u64::from(to) + u64::from(count) - 1
                    )?,
                    OneWay::Squash { to, .. } => write!(f, "{dir} {from}..{last} -> {other} {to} only; ")?,
                    OneWay::Forbid { .. } => write!(f, "{dir} {from}..{last} refused; ")?,
                }
            }
        }
        match self.unmapped {
            Unmapped::Identity => write!(f, "others unchanged"),
            Unmapped::Squash(id) => write!(f, "others squashed to {id}"),
            Unmapped::Deny => write!(f, "others refused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(guest: u32, host: u32, count: u32) -> IdRange {
        IdRange { guest, host, count }
    }

    #[test]
    fn ranges_translate_both_ways() {
        let m = IdMap::new(vec![range(0, 100_000, 65536)], Unmapped::Deny).unwrap();
        assert_eq!(m.to_host(0), Some(100_000));
        assert_eq!(m.to_host(1000), Some(101_000));
        assert_eq!(m.to_host(65535), Some(165_535));
        assert_eq!(m.to_host(65536), None);
        assert_eq!(m.to_guest(101_000), 1000);
        assert_eq!(m.to_guest(0), OVERFLOW_ID);
    }

    #[test]
    fn squash_maps_every_other_id_to_one() {
        let m = IdMap::new(vec![range(1000, 1000, 1)], Unmapped::Squash(65534)).unwrap();
        assert_eq!(m.to_host(1000), Some(1000));
        assert_eq!(m.to_host(0), Some(65534));
        assert_eq!(m.to_host(1001), Some(65534));
    }

    #[test]
    fn identity_changes_nothing() {
        let m = IdMap::identity();
        assert!(m.is_identity());
        assert_eq!(m.to_host(42), Some(42));
        assert_eq!(m.to_guest(42), 42);
    }

    #[test]
    fn invalid_maps_are_refused() {
        assert_eq!(IdMap::new(vec![range(0, 0, 0)], Unmapped::Identity), Err(IdMapError::EmptyRange(0)));
        assert_eq!(IdMap::new(vec![range(u32::MAX, 0, 2)], Unmapped::Identity), Err(IdMapError::Overflow(0)));
        assert_eq!(
            IdMap::new(vec![range(0, 0, 10), range(5, 100, 10)], Unmapped::Identity),
            Err(IdMapError::GuestOverlap(0, 1))
        );
        assert_eq!(
            IdMap::new(vec![range(0, 0, 10), range(50, 9, 10)], Unmapped::Identity),
            Err(IdMapError::HostOverlap(0, 1))
        );
        assert!(IdMap::new(vec![range(0, 0, 10), range(10, 10, 10)], Unmapped::Identity).is_ok());
    }

    #[test]
    fn one_way_rules_apply_in_their_direction_only() {
        let m = IdMap::with_one_way(
            vec![range(1000, 1000, 1)],
            vec![
                OneWay::Range { from: 2000, to: 12000, count: 10 },
                OneWay::Squash { from: 3000, count: 100, to: 99 },
                OneWay::Forbid { from: 0, count: 1000 },
            ],
            vec![OneWay::Squash { from: 0, count: 1000, to: 65534 }],
            Unmapped::Identity,
        )
        .unwrap();
        assert_eq!(m.to_host(1000), Some(1000));
        assert_eq!(m.to_host(2005), Some(12005));
        assert_eq!(m.to_guest(12005), 12005, "a guest-only range does not map back");
        assert_eq!(m.to_host(3050), Some(99));
        assert_eq!(m.to_host(0), None, "forbidden");
        assert_eq!(m.to_host(999), None, "forbidden");
        assert_eq!(m.to_host(5000), Some(5000), "uncovered ids pass");
        assert_eq!(m.to_guest(0), 65534);
        assert_eq!(m.to_guest(1000), 1000);
        assert!(!m.is_identity());
        let text = m.to_string();
        assert!(text.contains("guest 0..999 refused"), "{text}");
        assert!(text.contains("host 0..999 -> guest 65534 only"), "{text}");
    }

    #[test]
    fn one_way_rules_are_checked() {
        let fw = |from, count| OneWay::Forbid { from, count };
        assert_eq!(
            IdMap::with_one_way(vec![range(0, 0, 10)], vec![fw(5, 1)], vec![], Unmapped::Identity),
            Err(IdMapError::GuestOverlap(0, 1))
        );
        assert_eq!(
            IdMap::with_one_way(vec![], vec![fw(0, 10), fw(9, 1)], vec![], Unmapped::Identity),
            Err(IdMapError::GuestOverlap(0, 1))
        );
        assert_eq!(
            IdMap::with_one_way(vec![], vec![fw(0, 10)], vec![fw(0, 10)], Unmapped::Identity),
            Err(IdMapError::HostForbid(1))
        );
        assert_eq!(
            IdMap::with_one_way(vec![], vec![], vec![fw(0, 0)], Unmapped::Identity),
            Err(IdMapError::EmptyRange(0))
        );
        let sq = OneWay::Squash { from: 0, count: 10, to: 5 };
        assert_eq!(
            IdMap::with_one_way(vec![], vec![sq], vec![sq, sq], Unmapped::Identity),
            Err(IdMapError::HostOverlap(1, 2))
        );
        let wide = OneWay::Range { from: 0, to: u32::MAX, count: 2 };
        assert_eq!(IdMap::with_one_way(vec![], vec![wide], vec![], Unmapped::Identity), Err(IdMapError::Overflow(0)));
        // Both sides may cover the same ids: they are different directions.
        assert!(IdMap::with_one_way(vec![], vec![sq], vec![sq], Unmapped::Identity).is_ok());
    }

    #[test]
    fn last_id_is_usable() {
        let m = IdMap::new(vec![range(u32::MAX, 7, 1)], Unmapped::Deny).unwrap();
        assert_eq!(m.to_host(u32::MAX), Some(7));
        assert_eq!(m.to_guest(7), u32::MAX);
    }
}
