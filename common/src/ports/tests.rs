use super::*;
use proptest::prelude::*;

fn srv(s: &str) -> ServerName {
    ServerName::parse(s).unwrap()
}
fn svc(s: &str) -> ServiceName {
    ServiceName::parse(s).unwrap()
}

#[test]
fn ports_and_ranges_validate() {
    Port::new(0).unwrap_err();
    Port::new(65536).unwrap_err();
    assert_eq!(Port::new(8080).unwrap().get(), 8080);
    assert!(serde_json::from_str::<Port>("0").is_err());
    assert!(serde_json::from_str::<Port>("70000").is_err());
    assert_eq!(serde_json::from_str::<Port>("80").unwrap().get(), 80);

    let r = PortRange::parse("20000-32000").unwrap();
    assert_eq!((r.start(), r.end(), r.len()), (20000, 32000, 12001));
    assert_eq!(r.to_string(), "20000-32000");
    for bad in ["", "1", "0-10", "10-1", "a-b", "1-70000"] {
        PortRange::parse(bad).unwrap_err();
    }
    assert!(PortRange::parse("10-1")
        .unwrap_err()
        .to_string()
        .contains("start is greater than end"));
}

#[test]
fn lowest_free_sticky_and_exhaustion() {
    let mut l = PortLedger::default();
    let s = srv("web-1");
    l.set_range(&s, PortRange::new(100, 102).unwrap());
    let a = l.allocate(&s, &svc("a")).unwrap();
    assert_eq!((a.port, a.newly_allocated), (100, true));
    // Sticky and idempotent.
    let again = l.allocate(&s, &svc("a")).unwrap();
    assert_eq!((again.port, again.newly_allocated), (100, false));
    assert_eq!(l.allocate(&s, &svc("b")).unwrap().port, 101);
    assert_eq!(l.allocate(&s, &svc("c")).unwrap().port, 102);
    let err = l.allocate(&s, &svc("d")).unwrap_err();
    assert_eq!(
        err,
        PortError::Exhausted {
            server: s.clone(),
            range: PortRange::new(100, 102).unwrap()
        }
    );
    // Releasing makes the lowest port available again.
    assert_eq!(l.release(&s, &svc("b")), Some(101));
    assert_eq!(l.allocate(&s, &svc("d")).unwrap().port, 101);
    assert_eq!(l.server(&s).unwrap().free_count(), 0);
}

#[test]
fn host_bound_ports_are_skipped_and_returned() {
    let mut l = PortLedger::default();
    let s = srv("web-1");
    l.set_range(&s, PortRange::new(100, 104).unwrap());
    l.set_host_bound(&s, BTreeSet::from([100, 101, 103]))
        .unwrap();
    assert_eq!(l.allocate(&s, &svc("a")).unwrap().port, 102);
    assert_eq!(l.allocate(&s, &svc("b")).unwrap().port, 104);
    l.allocate(&s, &svc("c")).unwrap_err();
    // The foreign process on 101 went away.
    l.set_host_bound(&s, BTreeSet::from([100, 103])).unwrap();
    assert_eq!(l.allocate(&s, &svc("c")).unwrap().port, 101);
    let ports = l.server(&s).unwrap();
    assert_eq!((ports.used_count(), ports.free_count()), (5, 0));
}

#[test]
fn explicit_ports() {
    let mut l = PortLedger::default();
    let s = srv("web-1");
    l.set_range(&s, PortRange::new(100, 110).unwrap());
    let p = |n| Port::new(n).unwrap();
    assert!(l.reserve(&s, &svc("a"), p(105)).unwrap().newly_allocated);
    assert!(!l.reserve(&s, &svc("a"), p(105)).unwrap().newly_allocated);
    assert!(matches!(
        l.reserve(&s, &svc("b"), p(105)),
        Err(PortError::Taken { port: 105, .. })
    ));
    // Moving a service to another port frees the old one.
    l.reserve(&s, &svc("a"), p(8080)).unwrap();
    assert!(l.server(&s).unwrap().is_free(105));
    assert_eq!(l.server(&s).unwrap().holder_of(8080), Some(&svc("a")));
    l.set_host_bound(&s, BTreeSet::from([9000])).unwrap();
    let e = l.reserve(&s, &svc("b"), p(9000)).unwrap_err();
    assert!(e.to_string().contains("a process on the host"));
    assert_eq!(
        l.allocate(&srv("nope"), &svc("a")),
        Err(PortError::UnknownServer {
            server: srv("nope")
        })
    );
}

#[test]
fn release_service_everywhere_and_range_change_keeps_assignments() {
    let mut l = PortLedger::default();
    for s in ["a", "b"] {
        l.set_range(&srv(s), PortRange::new(100, 200).unwrap());
        l.allocate(&srv(s), &svc("api")).unwrap();
    }
    l.set_range(&srv("a"), PortRange::new(150, 160).unwrap());
    assert_eq!(l.server(&srv("a")).unwrap().assignments()[&svc("api")], 100);
    assert_eq!(l.allocate(&srv("a"), &svc("web")).unwrap().port, 150);
    let freed = l.release_service(&svc("api"));
    assert_eq!(freed, vec![(srv("a"), 100), (srv("b"), 100)]);
}

#[test]
fn serde_rebuilds_free_set() {
    let mut l = PortLedger::default();
    let s = srv("web-1");
    l.set_range(&s, PortRange::new(100, 110).unwrap());
    l.allocate(&s, &svc("a")).unwrap();
    l.set_host_bound(&s, BTreeSet::from([101])).unwrap();
    let json = serde_json::to_string(&l).unwrap();
    let back: PortLedger = serde_json::from_str(&json).unwrap();
    assert_eq!(back, l);
    assert_eq!(back.clone().allocate(&s, &svc("b")).unwrap().port, 102);
}

#[derive(Debug, Clone)]
enum Op {
    Allocate(usize, usize),
    Reserve(usize, usize, u16),
    Release(usize, usize),
    ReleaseService(usize),
    HostBound(usize, BTreeSet<u16>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..12usize).prop_map(|(a, b)| Op::Allocate(a, b)),
        1 => (0..2usize, 0..12usize, 95u16..125).prop_map(|(a, b, p)| Op::Reserve(a, b, p)),
        2 => (0..2usize, 0..12usize).prop_map(|(a, b)| Op::Release(a, b)),
        1 => (0..12usize).prop_map(Op::ReleaseService),
        1 => (0..2usize, proptest::collection::btree_set(98u16..122, 0..6))
            .prop_map(|(a, s)| Op::HostBound(a, s)),
    ]
}

proptest! {
    /// Against a naive model: no port is ever held by two services on one server, every
    /// allocation is the lowest port free in the model, and the free set matches exactly.
    #[test]
    fn never_handed_out_twice(ops in proptest::collection::vec(op(), 1..120)) {
        let servers = [srv("s0"), srv("s1")];
        let services: Vec<ServiceName> = (0..12).map(|i| svc(&format!("svc{i}"))).collect();
        let range = PortRange::new(100, 115).unwrap();
        let mut l = PortLedger::default();
        // Model: per server, port -> service, and host-bound set.
        let mut model: Vec<(BTreeMap<u16, usize>, BTreeSet<u16>)> = vec![Default::default(); 2];
        for s in &servers { l.set_range(s, range); }
        for op in ops {
            match op {
                Op::Allocate(si, vi) => {
                    let (held, bound) = &mut model[si];
                    let existing = held.iter().find(|(_, v)| **v == vi).map(|(p, _)| *p);
                    let expect = existing.or_else(|| {
                        (range.start()..=range.end()).find(|p| !held.contains_key(p) && !bound.contains(p))
                    });
                    match (l.allocate(&servers[si], &services[vi]), expect) {
                        (Ok(a), Some(p)) => {
                            prop_assert_eq!(a.port, p);
                            prop_assert_eq!(a.newly_allocated, existing.is_none());
                            held.insert(p, vi);
                        }
                        (Err(PortError::Exhausted { .. }), None) => {}
                        (got, want) => prop_assert!(false, "got {:?}, model wanted {:?}", got, want),
                    }
                }
                Op::Reserve(si, vi, p) => {
                    let (held, bound) = &mut model[si];
                    let result = l.reserve(&servers[si], &services[vi], Port::new(p.into()).unwrap());
                    let mine = held.get(&p) == Some(&vi);
                    let taken = !mine && (held.contains_key(&p) || bound.contains(&p));
                    prop_assert_eq!(result.is_err(), taken);
                    if result.is_ok() {
                        held.retain(|_, v| *v != vi);
                        held.insert(p, vi);
                    }
                }
                Op::Release(si, vi) => {
                    let (held, _) = &mut model[si];
                    let before = held.iter().find(|(_, v)| **v == vi).map(|(p, _)| *p);
                    held.retain(|_, v| *v != vi);
                    prop_assert_eq!(l.release(&servers[si], &services[vi]), before);
                }
                Op::ReleaseService(vi) => {
                    for (held, _) in model.iter_mut() { held.retain(|_, v| *v != vi); }
                    l.release_service(&services[vi]);
                }
                Op::HostBound(si, set) => {
                    model[si].1 = set.clone();
                    l.set_host_bound(&servers[si], set).unwrap();
                }
            }
            for (si, s) in servers.iter().enumerate() {
                let ports = l.server(s).unwrap();
                let (held, bound) = &model[si];
                // Ledger matches the model: each port has one holder, each service one port.
                let ledger: BTreeMap<u16, ServiceName> =
                    ports.assignments().iter().map(|(v, p)| (*p, v.clone())).collect();
                prop_assert_eq!(ledger.len(), ports.assignments().len(), "a port held twice");
                let want: BTreeMap<u16, ServiceName> =
                    held.iter().map(|(p, v)| (*p, services[*v].clone())).collect();
                prop_assert_eq!(&ledger, &want);
                for p in range.start()..=range.end() {
                    let free = !held.contains_key(&p) && !bound.contains(&p);
                    prop_assert_eq!(ports.is_free(p), free, "port {}", p);
                }
                let free_n = (range.start()..=range.end()).filter(|p| ports.is_free(*p)).count();
                prop_assert_eq!(ports.free_count() as usize, free_n);
            }
        }
    }
}
