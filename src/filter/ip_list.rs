//! `[ip_lists.NAME]` at request time: is a client address allowed? The networks are kept as
//! sorted, merged, disjoint address ranges, so a lookup is one binary search whatever the list
//! size (100,000 CIDRs cost about 17 comparisons).

pub mod compile;

use std::net::IpAddr;
use std::sync::Arc;

use crate::net::{Cidr, ip_number};

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
    /// Disjoint, non-adjacent inclusive ranges sorted by start (IPv4 in the IPv4-mapped space).
    ranges: Box<[(u128, u128)]>,
}

impl IpList {
    /// Builds a list from networks in any order; overlapping and adjacent ones are merged.
    pub fn new(name: Arc<str>, mode: Mode, networks: &[Cidr]) -> IpList {
        let mut ranges: Vec<(u128, u128)> = networks.iter().map(Cidr::range).collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        IpList {
            name,
            mode,
            ranges: merged.into_boxed_slice(),
        }
    }

    /// Whether `ip` is inside one of the list's networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let n = ip_number(ip);
        // The last range starting at or before `n` is the only one that can hold it.
        let i = self.ranges.partition_point(|&(start, _)| start <= n);
        i > 0 && n <= self.ranges[i - 1].1
    }

    /// Whether a client at `ip` may pass.
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.contains(ip) == (self.mode == Mode::Allow)
    }

    /// How many disjoint ranges the networks merged into.
    pub fn ranges(&self) -> usize {
        self.ranges.len()
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
        assert_eq!(l.ranges(), 1);
        assert!(l.admits(ip("1.2.3.4")) && l.admits(ip("fe80::1")));
        let l = list(Mode::Allow, &["10.0.0.0/24", "10.0.2.0/24"]);
        assert_eq!(l.ranges(), 2);
        assert!(!l.admits(ip("10.0.1.1")));
    }

    #[test]
    fn empty_allow_list_admits_nobody() {
        let l = list(Mode::Allow, &[]);
        assert!(!l.admits(ip("127.0.0.1")));
    }
}
