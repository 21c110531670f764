//! Network namespaces for partition tests: every member (a coordinator, an agent) in a
//! namespace of its own, so that a partition is a real cut in the kernel, not a mock.
//!
//! # Topology
//! For members `m0..mN` on subnet `10.A.B.0/24` (A.B picked per run, not in use on the host):
//!
//! | where | what |
//! |---|---|
//! | namespace `sluice-<pid>-<seq>-br` | bridge `br0`; ports `p<i>` (one per member) and `gw` |
//! | namespace `sluice-<pid>-<seq>-<name>` | `eth0` = `10.A.B.(10+i)/24` (peer of `p<i>`), `lo` up |
//! | root namespace | `sl<pid>g<seq>` = `10.A.B.1/24` (peer of `gw`): the [`Net::gateway`] |
//!
//! The bridge lives in a namespace of its own because Docker sets the root namespace's
//! `FORWARD` policy to `DROP` and `br_netfilter` (`bridge-nf-call-iptables = 1`) sends bridged
//! frames through it: a bridge in the root namespace would silently drop member-to-member
//! traffic. The gateway is where Docker publishes container ports, so an agent inside a
//! namespace reaches its containers through a real link (set its `host_ip` to the gateway).
//!
//! # Faults
//! - [`Net::cut`] / [`Net::heal`]: the member's bridge port goes down / up. The member is cut
//!   from everything, the root namespace included.
//! - [`Net::partition`] / [`Net::unpartition`]: `iptables` DROP rules in the member's own
//!   namespace (`INPUT -s peer`, `OUTPUT -d peer`) for each peer named: only those pairs are
//!   cut, both ways. Packets vanish (no RST, no ICMP), as on a real partition; removing the
//!   rules restores the link, and established connections resume.
//!
//! Processes are put in a namespace with [`Net::placement`] (`ip netns exec NS BIN ...`).
//! Dropping the [`Net`] deletes the root-side link and every namespace; [`cleanup_stale`]
//! (run by [`Net::create`]) removes what a crashed run (a dead pid) left behind, and ends the
//! processes still running in those namespaces.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::cluster::Placement;

/// Every namespace this module creates starts with this.
pub const PREFIX: &str = "sluice-";

/// Runs `cmd args...`; its stdout, or why it failed.
fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{cmd} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether this process can build namespaces: root, `ip` and `iptables` present. `Err`
/// says what is missing.
pub fn preflight() -> Result<(), String> {
    if euid() != Some(0) {
        return Err("network namespace tests need root (euid 0)".into());
    }
    run("ip", &["-V"]).map_err(|e| format!("iproute2 `ip` is needed: {e}"))?;
    run("iptables", &["-V"]).map_err(|e| format!("`iptables` is needed: {e}"))?;
    Ok(())
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid in `sluice-<pid>-...`.
fn ns_owner(ns: &str) -> Option<u32> {
    ns.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// The pid in a root-side link name `sl<pid>g<seq>`.
fn link_owner(link: &str) -> Option<u32> {
    let rest = link.strip_prefix("sl")?;
    let (pid, seq) = rest.split_once('g')?;
    seq.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// Removes namespaces and root-side links left by runs whose process is gone (killing what
/// still runs inside those namespaces: harness processes of the crashed run).
pub fn cleanup_stale() {
    let me = std::process::id();
    if let Ok(list) = run("ip", &["netns", "list"]) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let Some(owner) = ns_owner(ns) else { continue };
            if owner == me || pid_alive(owner) {
                continue;
            }
            if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
                for pid in pids.split_whitespace() {
                    let _ = run("kill", &["-9", pid]);
                }
            }
            let _ = run("ip", &["netns", "delete", ns]);
        }
    }
    if let Ok(links) = run("ip", &["-o", "link", "show"]) {
        for line in links.lines() {
            // "7: sl123g0@if6: <...>"
            let Some(name) = line.split_whitespace().nth(1) else {
                continue;
            };
            let name = name.trim_end_matches(':');
            let name = name.split('@').next().unwrap_or(name);
            if let Some(owner) = link_owner(name) {
                if owner != me && !pid_alive(owner) {
                    let _ = run("ip", &["link", "delete", name]);
                }
            }
        }
    }
}

/// One member: a namespace with one address.
#[derive(Debug, Clone)]
pub struct Member {
    /// The name given to [`Net::create`].
    pub name: String,
    /// Its namespace.
    pub ns: String,
    /// Its address on the bridge.
    pub ip: Ipv4Addr,
    /// Its port on the bridge (in the bridge namespace).
    port: String,
}

/// A set of namespaces on one bridge; everything is removed on drop.
#[derive(Debug)]
pub struct Net {
    members: Vec<Member>,
    bridge_ns: String,
    gateway_link: String,
    gateway: Ipv4Addr,
}

/// A `10.A.B.0/24` not used on this host: no address in it and no route for it.
fn free_subnet(seq: u32) -> Result<(u8, u8), String> {
    let addrs = run("ip", &["-4", "-o", "addr", "show"])?;
    let routes = run("ip", &["-4", "route", "show"])?;
    let start = std::process::id().wrapping_mul(7).wrapping_add(seq * 131);
    for k in 0..(50 * 256) {
        let idx = (start.wrapping_add(k)) % (50 * 256);
        let (a, b) = (200 + (idx / 256) as u8, (idx % 256) as u8);
        let net = format!("10.{a}.{b}.");
        if !addrs.contains(&net) && !routes.contains(&net) {
            return Ok((a, b));
        }
    }
    Err("no free 10.x.y.0/24 subnet".into())
}

impl Net {
    /// Creates one namespace per name (names: letters, digits, `-`), all on one bridge, with
    /// the gateway in the root namespace. Cleans up stale runs first.
    pub fn create(names: &[&str]) -> Result<Net, String> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        preflight()?;
        cleanup_stale();
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let prefix = format!("{PREFIX}{pid}-{seq}");
        let (a, b) = free_subnet(seq)?;
        let mut net = Net {
            members: Vec::new(),
            bridge_ns: format!("{prefix}-br"),
            gateway_link: format!("sl{pid}g{seq}"),
            gateway: Ipv4Addr::new(10, a, b, 1),
        };
        // From here on, Drop removes whatever was made if a step fails.
        let br = net.bridge_ns.clone();
        run("ip", &["netns", "add", &br])?;
        run("ip", &["-n", &br, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &[
                "-n",
                &br,
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "stp_state",
                "0",
            ],
        )?;
        run("ip", &["-n", &br, "link", "set", "br0", "up"])?;
        // The gateway: root side `sl<pid>g<seq>`, bridge side `gw`.
        run(
            "ip",
            &[
                "link",
                "add",
                &net.gateway_link,
                "type",
                "veth",
                "peer",
                "name",
                "gw",
                "netns",
                &br,
            ],
        )?;
        run(
            "ip",
            &["-n", &br, "link", "set", "gw", "master", "br0", "up"],
        )?;
        let gw_cidr = format!("{}/24", net.gateway);
        run("ip", &["addr", "add", &gw_cidr, "dev", &net.gateway_link])?;
        run("ip", &["link", "set", &net.gateway_link, "up"])?;
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("bad member name {name:?}"));
            }
            let m = Member {
                name: name.to_string(),
                ns: format!("{prefix}-{name}"),
                ip: Ipv4Addr::new(10, a, b, 10 + i as u8),
                port: format!("p{i}"),
            };
            run("ip", &["netns", "add", &m.ns])?;
            net.members.push(m.clone());
            run(
                "ip",
                &[
                    "-n", &br, "link", "add", &m.port, "type", "veth", "peer", "name", "eth0",
                    "netns", &m.ns,
                ],
            )?;
            run(
                "ip",
                &["-n", &br, "link", "set", &m.port, "master", "br0", "up"],
            )?;
            let cidr = format!("{}/24", m.ip);
            run("ip", &["-n", &m.ns, "addr", "add", &cidr, "dev", "eth0"])?;
            run("ip", &["-n", &m.ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &m.ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name:?} in {:?}", self.names()))
    }

    /// The members' names, in creation order.
    pub fn names(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.name.as_str()).collect()
    }

    /// The member called `name`.
    pub fn get(&self, name: &str) -> &Member {
        self.member(name)
    }

    /// `name`'s address.
    pub fn ip(&self, name: &str) -> Ipv4Addr {
        self.member(name).ip
    }

    /// `name`'s namespace.
    pub fn ns(&self, name: &str) -> &str {
        &self.member(name).ns
    }

    /// The root namespace's address on the bridge (where Docker publishes ports).
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Runs processes inside `name`'s namespace, listening on its address.
    pub fn placement(&self, name: &str) -> Placement {
        let m = self.member(name);
        Placement {
            ip: m.ip.to_string(),
            prefix: ["ip", "netns", "exec", m.ns.as_str()]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// Runs `args` inside `name`'s namespace; its stdout.
    pub fn exec(&self, name: &str, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["netns", "exec", self.ns(name)];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Sets a sysctl inside `name`'s namespace (e.g. `net.ipv4.ip_nonlocal_bind`).
    pub fn sysctl(&self, name: &str, key: &str, value: &str) -> Result<(), String> {
        self.exec(name, &["sysctl", "-q", "-w", &format!("{key}={value}")])
            .map(drop)
    }

    /// Cuts `name` from everything: its bridge port goes down.
    pub fn cut(&self, name: &str) -> Result<(), String> {
        let m = self.member(name);
        run(
            "ip",
            &["-n", &self.bridge_ns, "link", "set", &m.port, "down"],
        )
        .map(drop)
    }

    /// Undoes [`Net::cut`].
    pub fn heal(&self, name: &str) -> Result<(), String> {
        let m = self.member(name);
        run("ip", &["-n", &self.bridge_ns, "link", "set", &m.port, "up"]).map(drop)
    }

    fn rules(&self, name: &str, from: &[&str], action: &str) -> Result<(), String> {
        for peer in from {
            let ip = self.member(peer).ip.to_string();
            self.exec(
                name,
                &["iptables", "-w", action, "INPUT", "-s", &ip, "-j", "DROP"],
            )?;
            self.exec(
                name,
                &["iptables", "-w", action, "OUTPUT", "-d", &ip, "-j", "DROP"],
            )?;
        }
        Ok(())
    }

    /// Cuts `name` from each member in `from`, both ways; every other link stays up.
    pub fn partition(&self, name: &str, from: &[&str]) -> Result<(), String> {
        self.rules(name, from, "-A")
    }

    /// Undoes [`Net::partition`] for the members in `from`.
    pub fn unpartition(&self, name: &str, from: &[&str]) -> Result<(), String> {
        self.rules(name, from, "-D")
    }

    /// The DROP rules in `name`'s namespace (`iptables -S`), for failure messages.
    pub fn rules_of(&self, name: &str) -> String {
        self.exec(name, &["iptables", "-S"])
            .unwrap_or_else(|e| e.to_string())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The root-side link first: namespace teardown is asynchronous in the kernel, and
        // the link would otherwise linger (with its route) for a moment.
        let _ = run("ip", &["link", "delete", &self.gateway_link]);
        for m in &self.members {
            let _ = run("ip", &["netns", "delete", &m.ns]);
        }
        let _ = run("ip", &["netns", "delete", &self.bridge_ns]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_parsed_from_names() {
        assert_eq!(ns_owner("sluice-4242-0-c1"), Some(4242));
        assert_eq!(ns_owner("sluice-x-0-c1"), None);
        assert_eq!(ns_owner("other-4242"), None);
        assert_eq!(link_owner("sl4242g3"), Some(4242));
        assert_eq!(link_owner("slave0"), None);
        assert_eq!(link_owner("sl12gx"), None);
    }

    /// Real namespaces: only as root (skipped otherwise; `coordinator/tests/partition.rs`
    /// is the test that must not skip under CI).
    #[test]
    fn partition_cuts_only_the_named_pairs_and_heals() {
        if let Err(why) = preflight().and_then(|()| run("python3", &["-V"]).map(drop)) {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED netns self-test: {why}");
            return;
        }
        let net = Net::create(&["a", "b", "c"]).unwrap();
        let server = |name: &str| {
            let ip = net.ip(name);
            // A listener inside `name`'s namespace, found by connecting from another.
            net.placement(name)
                .command(std::path::Path::new("python3"))
                .args([
                    "-c",
                    &format!(
                        "import socket,time\ns=socket.socket();s.bind(('{ip}',7777));s.listen()\nwhile True:\n  c,_=s.accept();c.close()"
                    ),
                ])
                .spawn()
                .unwrap()
        };
        let reach = |from: &str, to: &str| {
            let code = format!(
                "import socket\ns=socket.socket();s.settimeout(0.5)\ntry:\n  s.connect(('{}',7777));print('ok')\nexcept Exception:\n  print('no')",
                net.ip(to)
            );
            net.exec(from, &["python3", "-c", &code]).unwrap().trim() == "ok"
        };
        let mut b = server("b");
        let mut c = server("c");
        let ok = crate::eventually::patience() * 50.0;
        let mut tries = 0.0;
        while !(reach("a", "b") && reach("a", "c")) {
            tries += 1.0;
            assert!(tries < ok, "listeners never came up");
        }
        net.partition("a", &["b"]).unwrap();
        assert!(!reach("a", "b"), "{}", net.rules_of("a"));
        assert!(reach("a", "c"));
        net.unpartition("a", &["b"]).unwrap();
        assert!(reach("a", "b"));
        net.cut("c").unwrap();
        assert!(!reach("a", "c"));
        net.heal("c").unwrap();
        assert!(reach("a", "c"));
        let _ = b.kill();
        let _ = c.kill();
        let _ = b.wait();
        let _ = c.wait();
    }
}
