//! The host's port table: which ports are bound (by anyone), and which of them our
//! containers hold.
//!
//! A bind probe answers "could a service be published on this port right now?" for one
//! port; the heartbeat's list of bound ports comes from a scan of the kernel's listening
//! sockets (`/proc/net/tcp` and `tcp6`), which costs one file read instead of thousands of
//! binds.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener};

use sluice_common::ports::PortRange;

/// Whether `port` is taken on `ip`: a bind there fails. (Permission errors count as taken:
/// nothing could be published there by this agent either.)
pub fn is_bound(ip: IpAddr, port: u16) -> bool {
    match TcpListener::bind(SocketAddr::new(ip, port)) {
        Ok(_) => false,
        Err(e) => {
            if e.kind() != ErrorKind::AddrInUse {
                tracing::debug!(port, error = %e, "bind probe failed");
            }
            true
        }
    }
}

/// Ports in `range` with a listening TCP socket on any address.
pub fn listening_in(range: PortRange) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            out.extend(parse_listening(&text).filter(|p| range.contains(*p)));
        }
    }
    out
}

/// Local ports of sockets in state LISTEN (`0A`) in a `/proc/net/tcp` table.
fn parse_listening(table: &str) -> impl Iterator<Item = u16> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let mut cols = line.split_whitespace();
        let local = cols.nth(1)?;
        let state = cols.nth(1)?;
        if state != "0A" {
            return None;
        }
        let port = local.rsplit(':').next()?;
        u16::from_str_radix(port, 16).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0100007F:A0B0 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n";
        assert_eq!(parse_listening(t).collect::<Vec<_>>(), vec![8080]);
    }

    #[test]
    fn a_held_port_is_bound_and_a_released_one_is_not() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(is_bound(lo, port));
        assert!(listening_in(PortRange::new(port, port).unwrap()).contains(&port));
        drop(l);
        assert!(!is_bound(lo, port));
    }
}
