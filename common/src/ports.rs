//! Ports: validated numbers and ranges, and the per-server port ledger.
//!
//! The ledger is the pure core behind "no port is ever handed out twice". Allocation is
//! deterministic (the lowest port in the server's range that is neither in the ledger nor
//! reported bound on the host), so every Raft replica that applies the same commands holds
//! the same ledger. A service keeps its port on a server until it is released.
//!
//! Free ports are kept as a set of disjoint intervals, so finding the lowest free port and
//! taking or returning one are O(log n) in the number of intervals, however wide the range.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::{InvalidValue, ServerName, ServiceName};

mod free;

use free::FreeSet;

/// A TCP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u16")]
pub struct Port(u16);

impl Port {
    /// Validates a port number.
    pub fn new(n: u32) -> Result<Self, InvalidValue> {
        match u16::try_from(n) {
            Ok(p) if p > 0 => Ok(Self(p)),
            _ => Err(InvalidValue::new(
                "port",
                &n.to_string(),
                "must be between 1 and 65535",
            )),
        }
    }

    /// The number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<u32> for Port {
    type Error = InvalidValue;
    fn try_from(n: u32) -> Result<Self, InvalidValue> {
        Self::new(n)
    }
}

impl From<Port> for u16 {
    fn from(p: Port) -> u16 {
        p.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An inclusive port range, written `20000-32000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    start: u16,
    end: u16,
}

impl PortRange {
    /// The default range of DESIGN.md.
    pub const DEFAULT: PortRange = PortRange {
        start: 20000,
        end: 32000,
    };

    /// Builds a range; `start` must not exceed `end` and neither may be 0.
    pub fn new(start: u16, end: u16) -> Result<Self, InvalidValue> {
        let text = format!("{start}-{end}");
        if start == 0 {
            return Err(InvalidValue::new("port range", &text, "ports start at 1"));
        }
        if start > end {
            return Err(InvalidValue::new(
                "port range",
                &text,
                "start is greater than end",
            ));
        }
        Ok(Self { start, end })
    }

    /// Parses `start-end`.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let bad = |r: &str| InvalidValue::new("port range", s, r);
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| bad("must have the form START-END, e.g. 20000-32000"))?;
        let num = |x: &str| {
            x.trim()
                .parse::<u16>()
                .map_err(|_| bad("bounds must be numbers from 1 to 65535"))
        };
        Self::new(num(a)?, num(b)?).map_err(|e| bad(&e.reason))
    }

    /// First port.
    pub fn start(self) -> u16 {
        self.start
    }

    /// Last port (inclusive).
    pub fn end(self) -> u16 {
        self.end
    }

    /// Number of ports in the range.
    pub fn len(self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// Never true: a valid range holds at least one port. Present for clippy's sake.
    pub fn is_empty(self) -> bool {
        false
    }

    /// Whether `p` lies inside.
    pub fn contains(self, p: u16) -> bool {
        (self.start..=self.end).contains(&p)
    }
}

impl Default for PortRange {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl TryFrom<String> for PortRange {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, InvalidValue> {
        Self::parse(&s)
    }
}

impl From<PortRange> for String {
    fn from(r: PortRange) -> String {
        r.to_string()
    }
}

impl std::str::FromStr for PortRange {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        Self::parse(s)
    }
}

/// Why a port could not be allocated or released.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PortError {
    /// No port is left in the server's range.
    #[error("no free port left on server {server} in range {range}")]
    Exhausted {
        /// The server.
        server: ServerName,
        /// Its range.
        range: PortRange,
    },
    /// The server has no port range registered.
    #[error("server {server} is not known to the port ledger")]
    UnknownServer {
        /// The server.
        server: ServerName,
    },
    /// An explicit port is already taken.
    #[error("port {port} on server {server} is taken by {holder}")]
    Taken {
        /// The server.
        server: ServerName,
        /// The port asked for.
        port: u16,
        /// Who has it: a service name, or "a process on the host".
        holder: String,
    },
}

/// The outcome of an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// The port the service has on the server.
    pub port: u16,
    /// False when the service already had this port (allocation is idempotent).
    pub newly_allocated: bool,
}

/// One server's ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ServerPortsRepr", into = "ServerPortsRepr")]
pub struct ServerPorts {
    range: PortRange,
    by_service: BTreeMap<ServiceName, u16>,
    by_port: BTreeMap<u16, ServiceName>,
    host_bound: BTreeSet<u16>,
    free: FreeSet,
}

/// What is stored: the free set is derived, so it is rebuilt on load instead of trusted.
#[derive(Serialize, Deserialize)]
struct ServerPortsRepr {
    range: PortRange,
    by_service: BTreeMap<ServiceName, u16>,
    host_bound: BTreeSet<u16>,
}

impl From<ServerPortsRepr> for ServerPorts {
    fn from(r: ServerPortsRepr) -> Self {
        let mut s = ServerPorts::new(r.range);
        for (svc, port) in r.by_service {
            s.assign(svc, port);
        }
        s.set_host_bound(r.host_bound);
        s
    }
}

impl From<ServerPorts> for ServerPortsRepr {
    fn from(s: ServerPorts) -> Self {
        Self {
            range: s.range,
            by_service: s.by_service,
            host_bound: s.host_bound,
        }
    }
}

impl ServerPorts {
    fn new(range: PortRange) -> Self {
        Self {
            range,
            by_service: BTreeMap::new(),
            by_port: BTreeMap::new(),
            host_bound: BTreeSet::new(),
            free: FreeSet::full(range),
        }
    }

    fn assign(&mut self, service: ServiceName, port: u16) {
        self.free.take(port);
        self.by_port.insert(port, service.clone());
        self.by_service.insert(service, port);
    }

    fn unassign(&mut self, service: &ServiceName) -> Option<u16> {
        let port = self.by_service.remove(service)?;
        self.by_port.remove(&port);
        if self.range.contains(port) && !self.host_bound.contains(&port) {
            self.free.give(port);
        }
        Some(port)
    }

    fn set_host_bound(&mut self, bound: BTreeSet<u16>) {
        for &p in self.host_bound.difference(&bound) {
            if self.range.contains(p) && !self.by_port.contains_key(&p) {
                self.free.give(p);
            }
        }
        for &p in &bound {
            self.free.take(p);
        }
        self.host_bound = bound;
    }

    /// The range.
    pub fn range(&self) -> PortRange {
        self.range
    }

    /// Ports assigned to services, by service.
    pub fn assignments(&self) -> &BTreeMap<ServiceName, u16> {
        &self.by_service
    }

    /// Ports the agent last reported bound on the host.
    pub fn host_bound(&self) -> &BTreeSet<u16> {
        &self.host_bound
    }

    /// Free ports in the range.
    pub fn free_count(&self) -> u32 {
        self.free.count
    }

    /// Ports of the range not free (ledger or host).
    pub fn used_count(&self) -> u32 {
        self.range.len() - self.free.count
    }

    /// Whether `p` would be handed out: in range, not in the ledger, not bound on the host.
    pub fn is_free(&self, p: u16) -> bool {
        self.free.contains(p)
    }

    /// The service holding `p`, if any.
    pub fn holder_of(&self, p: u16) -> Option<&ServiceName> {
        self.by_port.get(&p)
    }
}

/// The ledger of every server's ports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortLedger {
    servers: BTreeMap<ServerName, ServerPorts>,
}

impl PortLedger {
    /// Registers a server with a range, or changes its range. Existing assignments are kept
    /// (even outside a narrowed range) so a running service never loses its port.
    pub fn set_range(&mut self, server: &ServerName, range: PortRange) {
        let old = self.servers.remove(server);
        let mut fresh = ServerPorts::new(range);
        if let Some(old) = old {
            for (svc, port) in old.by_service {
                fresh.assign(svc, port);
            }
            fresh.set_host_bound(old.host_bound);
        }
        self.servers.insert(server.clone(), fresh);
    }

    /// Forgets a server and every assignment on it.
    pub fn remove_server(&mut self, server: &ServerName) -> Option<ServerPorts> {
        self.servers.remove(server)
    }

    /// One server's ports.
    pub fn server(&self, server: &ServerName) -> Option<&ServerPorts> {
        self.servers.get(server)
    }

    /// All servers.
    pub fn servers(&self) -> impl Iterator<Item = (&ServerName, &ServerPorts)> {
        self.servers.iter()
    }

    fn server_mut(&mut self, server: &ServerName) -> Result<&mut ServerPorts, PortError> {
        self.servers
            .get_mut(server)
            .ok_or_else(|| PortError::UnknownServer {
                server: server.clone(),
            })
    }

    /// Gives `service` a port on `server`: the one it already has, else the lowest free one.
    pub fn allocate(
        &mut self,
        server: &ServerName,
        service: &ServiceName,
    ) -> Result<Allocation, PortError> {
        let s = self.server_mut(server)?;
        if let Some(&port) = s.by_service.get(service) {
            return Ok(Allocation {
                port,
                newly_allocated: false,
            });
        }
        let port = s.free.lowest().ok_or(PortError::Exhausted {
            server: server.clone(),
            range: s.range,
        })?;
        s.assign(service.clone(), port);
        Ok(Allocation {
            port,
            newly_allocated: true,
        })
    }

    /// Gives `service` an explicit port (which may lie outside the range). If the service
    /// had another port on this server, that one is released in the same step.
    pub fn reserve(
        &mut self,
        server: &ServerName,
        service: &ServiceName,
        port: Port,
    ) -> Result<Allocation, PortError> {
        let s = self.server_mut(server)?;
        let p = port.get();
        if s.by_service.get(service) == Some(&p) {
            return Ok(Allocation {
                port: p,
                newly_allocated: false,
            });
        }
        if let Some(other) = s.by_port.get(&p) {
            return Err(PortError::Taken {
                server: server.clone(),
                port: p,
                holder: format!("service {other}"),
            });
        }
        if s.host_bound.contains(&p) {
            return Err(PortError::Taken {
                server: server.clone(),
                port: p,
                holder: "a process on the host".into(),
            });
        }
        s.unassign(service);
        s.assign(service.clone(), p);
        Ok(Allocation {
            port: p,
            newly_allocated: true,
        })
    }

    /// Frees the port `service` has on `server`, returning it.
    pub fn release(&mut self, server: &ServerName, service: &ServiceName) -> Option<u16> {
        self.servers.get_mut(server)?.unassign(service)
    }

    /// Frees every port `service` has, on every server (the service was removed).
    pub fn release_service(&mut self, service: &ServiceName) -> Vec<(ServerName, u16)> {
        self.servers
            .iter_mut()
            .filter_map(|(name, s)| s.unassign(service).map(|p| (name.clone(), p)))
            .collect()
    }

    /// Records which ports the agent found bound on the host (replacing the last report).
    pub fn set_host_bound(
        &mut self,
        server: &ServerName,
        bound: BTreeSet<u16>,
    ) -> Result<(), PortError> {
        self.server_mut(server)?.set_host_bound(bound);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
