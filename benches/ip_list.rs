//! IP list lookup at 10 and 100,000 networks (target < 100 ns per lookup): sorted, merged
//! ranges and one binary search, for addresses inside, outside and in the IPv6 space.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use portico::filter::ip_list::{IpList, Mode};
use portico::net::Cidr;

/// `n` networks: /24s spread over the IPv4 space (a stride that never makes them adjacent)
/// and, every 10th, an IPv6 /48.
fn networks(n: usize) -> Vec<Cidr> {
    (0..n as u32)
        .map(|i| {
            let text = if i % 10 == 9 {
                format!("2001:db8:{:x}::/48", i / 10)
            } else {
                let base = i.wrapping_mul(2_654_435_761) & 0xffff_ff00;
                format!("{}/24", Ipv4Addr::from(base))
            };
            Cidr::parse(&text).unwrap()
        })
        .collect()
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("ip_list");
    for n in [10usize, 100_000] {
        let nets = networks(n);
        let list = IpList::new("bench".into(), Mode::Allow, &nets);
        let inside = IpAddr::from(Ipv4Addr::from(
            0u32.wrapping_mul(2_654_435_761) & 0xffff_ff00 | 7,
        ));
        let probes: Vec<(&str, IpAddr)> = vec![
            ("v4_inside", inside),
            ("v4_outside", IpAddr::from(Ipv4Addr::new(198, 51, 100, 1))),
            (
                "v6",
                IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1)),
            ),
        ];
        assert!(list.admits(inside));
        for (name, ip) in probes {
            group.bench_with_input(BenchmarkId::new(name, n), &ip, |b, ip| {
                b.iter(|| black_box(&list).admits(black_box(*ip)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
