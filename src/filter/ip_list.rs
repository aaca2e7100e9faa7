//! `[ip_lists.NAME]` at request time: is a client address allowed? The networks are kept as
//! sorted, merged, disjoint address ranges per family, so a lookup is one binary search whatever
//! the list size (100,000 CIDRs cost about 17 comparisons).

pub mod compile;

use std::net::IpAddr;
use std::sync::Arc;

use crate::net::{Cidr, canonical};

/// Whether the networks of a list are the ones let in or the ones kept out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `allow = [...]`: only these networks pass.
    Allow,
    /// `deny = [...]`: these networks are refused.
    Deny,
}

/// One compiled IP list.
#[derive(Debug)]
pub struct IpList {
    /// The list's name (logs).
    pub name: Arc<str>,
    mode: Mode,
    /// Disjoint, non-adjacent inclusive IPv4 ranges sorted by start: 8 bytes a range, so a
    /// 100,000-network list stays small enough for the cache.
    v4: Box<[(u32, u32)]>,
    /// The same for IPv6 (IPv4-mapped addresses are looked up in `v4`).
    v6: Box<[(u128, u128)]>,
}

/// `::ffff:0.0.0.0` to `::ffff:255.255.255.255`: where IPv4 lives in [`Cidr::range`] numbers.
const MAPPED: (u128, u128) = (0xffff_0000_0000, 0xffff_ffff_ffff);

impl IpList {
    /// Builds a list from networks in any order; overlapping and adjacent ones are merged.
    pub fn new(name: Arc<str>, mode: Mode, networks: &[Cidr]) -> IpList {
        let ranges: Vec<(u128, u128)> = networks.iter().map(Cidr::range).collect();
        // An IPv6 network over the IPv4-mapped space (e.g. ::/0) covers IPv4 clients too.
        let v4: Vec<(u32, u32)> = ranges
            .iter()
            .filter(|&&(start, end)| start <= MAPPED.1 && end >= MAPPED.0)
            .map(|&(start, end)| {
                let low = (start.max(MAPPED.0) - MAPPED.0) as u32;
                let high = (end.min(MAPPED.1) - MAPPED.0) as u32;
                (low, high)
            })
            .collect();
        IpList {
            name,
            mode,
            v4: merge(v4).into_boxed_slice(),
            v6: merge(ranges).into_boxed_slice(),
        }
    }

    /// Whether `ip` is inside one of the list's networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(v4) => find(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => find(&self.v6, u128::from(v6)),
        }
    }

    /// Whether a client at `ip` may pass.
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.contains(ip) == (self.mode == Mode::Allow)
    }

    /// How many disjoint ranges the networks merged into (IPv4, IPv6).
    pub fn ranges(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }
}

/// Sorts ranges and merges overlapping and adjacent ones.
fn merge<T: Copy + Ord + num_like::Successor>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut merged: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1.saturating_next() => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// Whether `n` is in one of the sorted disjoint `ranges`: the last range starting at or before
/// `n` is the only one that can hold it.
fn find<T: Copy + Ord>(ranges: &[(T, T)], n: T) -> bool {
    let i = ranges.partition_point(|&(start, _)| start <= n);
    i > 0 && n <= ranges[i - 1].1
}

mod num_like {
    /// `x + 1`, saturating: what "adjacent" means for a range end.
    pub trait Successor {
        fn saturating_next(self) -> Self;
    }
    impl Successor for u32 {
        fn saturating_next(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl Successor for u128 {
        fn saturating_next(self) -> Self {
            self.saturating_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(mode: Mode, nets: &[&str]) -> IpList {
        let nets: Vec<Cidr> = nets.iter().map(|n| Cidr::parse(n).unwrap()).collect();
        IpList::new("t".into(), mode, &nets)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn allow_list_covers_v4_v6_and_mapped() {
        let l = list(Mode::Allow, &["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]);
        assert!(l.admits(ip("10.255.255.255")));
        assert!(l.admits(ip("10.0.0.0")));
        assert!(!l.admits(ip("11.0.0.0")));
        assert!(!l.admits(ip("9.255.255.255")));
        assert!(l.admits(ip("192.168.1.7")));
        assert!(!l.admits(ip("192.168.1.8")));
        assert!(l.admits(ip("::ffff:10.1.2.3")));
        assert!(l.admits(ip("2001:db8:ffff::1")));
        assert!(!l.admits(ip("2001:db9::1")));
        assert!(!l.admits(ip("::1")));
    }

    #[test]
    fn deny_list_inverts() {
        let l = list(Mode::Deny, &["127.0.0.0/8", "::1"]);
        assert!(!l.admits(ip("127.0.0.1")));
        assert!(!l.admits(ip("::1")));
        assert!(l.admits(ip("8.8.8.8")));
    }

    #[test]
    fn overlapping_and_adjacent_networks_merge() {
        let l = list(
            Mode::Allow,
            &[
                "10.0.0.0/9",
                "10.128.0.0/9",
                "10.1.0.0/16",
                "0.0.0.0/0",
                "::/0",
            ],
        );
        assert_eq!(l.ranges(), (1, 1));
        assert!(l.admits(ip("1.2.3.4")) && l.admits(ip("fe80::1")));
        let l = list(Mode::Allow, &["10.0.0.0/24", "10.0.2.0/24"]);
        assert_eq!(l.ranges(), (2, 2));
        assert!(!l.admits(ip("10.0.1.1")));
        // An IPv6 network over the mapped space admits IPv4 clients.
        let l = list(Mode::Allow, &["::ffff:10.0.0.0/104"]);
        assert_eq!(l.ranges(), (1, 1));
        assert!(l.admits(ip("10.1.1.1")));
        assert!(!l.admits(ip("11.0.0.1")));
    }

    #[test]
    fn empty_allow_list_admits_nobody() {
        let l = list(Mode::Allow, &[]);
        assert!(!l.admits(ip("127.0.0.1")));
    }
}
