//! A small DNS server for the discovery tests: UDP on 127.0.0.1:0, answering A and SRV
//! queries from a table the test switches, with TTL 1; `fail` makes it answer SERVFAIL.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// What the server answers.
#[derive(Default)]
struct Zone {
    a: HashMap<String, Vec<Ipv4Addr>>,
    srv: HashMap<String, Vec<(u16, u16, u16, String)>>,
    fail: bool,
}

/// The test DNS server; stops on drop.
pub struct DnsServer {
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n.ends_with('.') { n } else { format!("{n}.") }
}

impl DnsServer {
    /// Starts an empty server (every name: no records).
    pub async fn start() -> DnsServer {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let zone: Arc<Mutex<Zone>> = Arc::default();
        let queries = Arc::new(AtomicUsize::new(0));
        let (z, q) = (zone.clone(), queries.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                q.fetch_add(1, Ordering::SeqCst);
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let answer = answer(&z.lock().unwrap(), &query);
                let _ = sock.send_to(&answer.to_vec().unwrap(), from).await;
            }
        });
        DnsServer {
            addr,
            zone,
            queries,
            task,
        }
    }

    /// `name` answers these A records.
    pub fn set_a(&self, name: &str, ips: &[Ipv4Addr]) {
        self.zone.lock().unwrap().a.insert(key(name), ips.to_vec());
    }

    /// `name` answers these SRV records: (priority, weight, port, target).
    pub fn set_srv(&self, name: &str, records: &[(u16, u16, u16, &str)]) {
        let r = records
            .iter()
            .map(|(p, w, port, t)| (*p, *w, *port, key(t)))
            .collect();
        self.zone.lock().unwrap().srv.insert(key(name), r);
    }

    /// From now on every query gets SERVFAIL (`true`) or its records (`false`).
    pub fn fail(&self, fail: bool) {
        self.zone.lock().unwrap().fail = fail;
    }

    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

fn answer(zone: &Zone, query: &Message) -> Message {
    let mut m = Message::new();
    m.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true);
    let Some(q) = query.queries().first() else {
        m.set_response_code(ResponseCode::FormErr);
        return m;
    };
    m.add_query(q.clone());
    if zone.fail {
        m.set_response_code(ResponseCode::ServFail);
        return m;
    }
    let name = q.name().clone();
    let k = key(&name.to_ascii());
    match q.query_type() {
        RecordType::A => {
            for ip in zone.a.get(&k).into_iter().flatten() {
                m.add_answer(Record::from_rdata(name.clone(), 1, RData::A(A(*ip))));
            }
        }
        RecordType::SRV => {
            for (p, w, port, target) in zone.srv.get(&k).into_iter().flatten() {
                let t = Name::from_ascii(target).unwrap();
                let srv = SRV::new(*p, *w, *port, t);
                m.add_answer(Record::from_rdata(name.clone(), 1, RData::SRV(srv)));
            }
        }
        _ => {}
    }
    m
}
