//! The event model's nouns: a listening [`Endpoint`], the kernel
//! [`Socket`]s behind it, and the [`Listener`] they make together.
//!
//! An endpoint is what a client connects to: (transport, family, address,
//! port). Several sockets may share one (SO_REUSEPORT workers, a socket
//! inherited across fork is still one socket): the endpoint appears with the
//! first and closes with the last, so events speak of endpoints, never of
//! sockets.

use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;

use crate::process::{Owner, Ownership};

/// The transport protocol: Upstart's `TRANSPORT` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    /// A TCP socket in the LISTEN state.
    Tcp,
    /// A UDP socket that is bound and not connected.
    Udp,
}

impl Transport {
    /// Both transports, in listing order.
    pub const ALL: [Transport; 2] = [Transport::Tcp, Transport::Udp];

    /// The field's text: `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The address family: Upstart's `PROTO` field (`inet` or `inet6`, as
/// upstart-socket-bridge names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    Inet,
    /// IPv6.
    Inet6,
}

impl Family {
    /// Both families, in listing order.
    pub const ALL: [Family; 2] = [Family::Inet, Family::Inet6];

    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Inet,
            IpAddr::V6(_) => Family::Inet6,
        }
    }

    /// The field's text: `inet` or `inet6`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Inet6 => "inet6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of the kernel's four socket tables: what a source dumps at a time, and
/// the unit in which a source can fail or be replaced by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Table {
    /// TCP or UDP.
    pub transport: Transport,
    /// IPv4 or IPv6.
    pub family: Family,
}

impl Table {
    /// The four tables, in listing order.
    pub const ALL: [Table; 4] = [
        Table::new(Transport::Tcp, Family::Inet),
        Table::new(Transport::Tcp, Family::Inet6),
        Table::new(Transport::Udp, Family::Inet),
        Table::new(Transport::Udp, Family::Inet6),
    ];

    /// The table of one transport and family.
    pub const fn new(transport: Transport, family: Family) -> Table {
        Table { transport, family }
    }
}

impl fmt::Display for Table {
    /// `tcp6`, `udp`: the names of the /proc/net files and of ss(8).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suffix = match self.family {
            Family::Inet => "",
            Family::Inet6 => "6",
        };
        write!(f, "{}{}", self.transport, suffix)
    }
}

/// A listening endpoint: what a client connects or sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// TCP or UDP.
    pub transport: Transport,
    /// The local address; its family is the endpoint's family.
    pub addr: IpAddr,
    /// The local port.
    pub port: u16,
}

impl Endpoint {
    /// The address family (`PROTO`).
    pub fn family(&self) -> Family {
        Family::of(&self.addr)
    }

    /// The kernel table this endpoint lives in.
    pub fn table(&self) -> Table {
        Table::new(self.transport, self.family())
    }

    /// Whether it listens on every address of its family (`0.0.0.0`, `::`).
    pub fn is_wildcard(&self) -> bool {
        self.addr.is_unspecified()
    }
}

impl Ord for Endpoint {
    /// Listing order: transport, family, port, address.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.transport, self.family(), self.port, self.addr).cmp(&(
            other.transport,
            other.family(),
            other.port,
            other.addr,
        ))
    }
}

impl PartialOrd for Endpoint {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Endpoint {
    /// The event fields in contract order: `PROTO=inet PORT=80 ADDR=0.0.0.0
    /// TRANSPORT=tcp`. IPv6 addresses are RFC 5952 text without brackets,
    /// which is what `Ipv6Addr`'s `Display` writes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PROTO={} PORT={} ADDR={} TRANSPORT={}",
            self.family(),
            self.port,
            self.addr,
            self.transport
        )
    }
}

/// Which source reported a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// sock_diag netlink dumps and destroy events.
    Netlink,
    /// Polling `/proc/net/{tcp,tcp6,udp,udp6}`.
    Proc,
}

impl SourceKind {
    /// `netlink` or `proc`, as `--source` spells them.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Netlink => "netlink",
            SourceKind::Proc => "proc",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One kernel socket that listens, as a source reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    /// Where it listens.
    pub endpoint: Endpoint,
    /// The socket inode (`socket:[N]` in `/proc/<pid>/fd`).
    pub inode: u64,
    /// The owner's user id.
    pub uid: u32,
    /// The kernel's socket cookie, which destroy events carry; `None` where the
    /// source cannot tell (/proc).
    pub cookie: Option<u64>,
    /// `IPV6_V6ONLY` of an IPv6 socket; `None` for IPv4, or where the source
    /// cannot tell (/proc).
    pub v6only: Option<bool>,
    /// Who reported it.
    pub source: SourceKind,
}

/// The sockets listening on one endpoint (never empty, sorted by inode), and
/// who holds them where that was looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub(crate) sockets: Vec<Socket>,
    /// `None` while nobody asked (no `--processes`, no condition on PID or
    /// COMM).
    pub(crate) owner: Option<Ownership>,
}

impl Listener {
    /// A listener made of `sockets` (not empty), sorted by inode.
    pub fn from_sockets(mut sockets: Vec<Socket>) -> Listener {
        assert!(!sockets.is_empty(), "a listener has at least one socket");
        sockets.sort_by_key(|s| s.inode);
        Listener {
            sockets,
            owner: None,
        }
    }

    /// The sockets behind the endpoint.
    pub fn sockets(&self) -> &[Socket] {
        &self.sockets
    }

    /// Their inodes, ascending.
    pub fn inodes(&self) -> impl Iterator<Item = u64> + '_ {
        self.sockets.iter().map(|s| s.inode)
    }

    /// The owner's uid (the lowest, should workers differ).
    pub fn uid(&self) -> Option<u32> {
        self.sockets.iter().map(|s| s.uid).min()
    }

    /// `IPV6_V6ONLY` when the source knows it.
    pub fn v6only(&self) -> Option<bool> {
        self.sockets.iter().find_map(|s| s.v6only)
    }

    /// The source that reported it.
    pub fn source(&self) -> SourceKind {
        self.sockets[0].source
    }

    /// What is known of the process holding it: `None` when not looked up.
    pub fn ownership(&self) -> Option<&Ownership> {
        self.owner.as_ref()
    }

    /// The process holding it, when found.
    pub fn owner(&self) -> Option<&Owner> {
        match &self.owner {
            Some(Ownership::Found(owner)) => Some(owner),
            _ => None,
        }
    }

    /// Records who holds it.
    pub fn set_ownership(&mut self, ownership: Ownership) {
        self.owner = Some(ownership);
    }
}
