//! The event model's nouns: a listening [`Endpoint`], the kernel
//! [`Socket`]s behind it, and the [`Listener`] they make together.
//!
//! An endpoint is what a client connects to: for inet (transport, address,
//! port), for unix-domain sockets (transport, name as bound). Several sockets may share one (SO_REUSEPORT workers, a socket
//! inherited across fork is still one socket): the endpoint appears with the
//! first and closes with the last, so events speak of endpoints, never of
//! sockets.

use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::process::{Owner, Ownership};

/// The transport protocol: Upstart's `TRANSPORT` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    /// A TCP socket in the LISTEN state.
    Tcp,
    /// A UDP socket that is bound and not connected.
    Udp,
    /// A unix `SOCK_STREAM` socket in the LISTEN state.
    Stream,
    /// A unix `SOCK_SEQPACKET` socket in the LISTEN state.
    Seqpacket,
    /// A unix `SOCK_DGRAM` socket that is bound and not connected.
    Dgram,
}

impl Transport {
    /// Every transport, in listing order.
    pub const ALL: [Transport; 5] = [
        Transport::Tcp,
        Transport::Udp,
        Transport::Stream,
        Transport::Seqpacket,
        Transport::Dgram,
    ];

    /// The field's text: `tcp`, `udp`, `stream`, `seqpacket` or `dgram`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Stream => "stream",
            Transport::Seqpacket => "seqpacket",
            Transport::Dgram => "dgram",
        }
    }

    /// Whether this is a transport of unix-domain sockets.
    pub fn is_unix(self) -> bool {
        matches!(
            self,
            Transport::Stream | Transport::Seqpacket | Transport::Dgram
        )
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The address family: Upstart's `PROTO` field (`inet`, `inet6` or `unix`,
/// as upstart-socket-bridge names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    Inet,
    /// IPv6.
    Inet6,
    /// Unix-domain sockets.
    Unix,
}

impl Family {
    /// Every family, in listing order.
    pub const ALL: [Family; 3] = [Family::Inet, Family::Inet6, Family::Unix];

    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Inet,
            IpAddr::V6(_) => Family::Inet6,
        }
    }

    /// The field's text: `inet`, `inet6` or `unix`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Inet6 => "inet6",
            Family::Unix => "unix",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of the kernel's socket tables: what a source dumps at a time, and
/// the unit in which a source can fail or be replaced by another. The unix
/// tables are one per transport, though both sources read them in one go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Table {
    /// TCP or UDP.
    pub transport: Transport,
    /// IPv4 or IPv6.
    pub family: Family,
    /// Which watched network namespace, by the id sockwatch gave it when
    /// it began watching it (0 when only ours is watched; never reused
    /// within a run, as namespaces come and go under `--all-netns`): each
    /// namespace's tables are read, and fail, apart.
    pub netns: u32,
}

impl Table {
    /// The tables, in listing order.
    pub const ALL: [Table; 7] = [
        Table::new(Transport::Tcp, Family::Inet),
        Table::new(Transport::Tcp, Family::Inet6),
        Table::new(Transport::Udp, Family::Inet),
        Table::new(Transport::Udp, Family::Inet6),
        Table::new(Transport::Stream, Family::Unix),
        Table::new(Transport::Seqpacket, Family::Unix),
        Table::new(Transport::Dgram, Family::Unix),
    ];

    /// The three unix tables.
    pub const UNIX: [Table; 3] = [
        Table::new(Transport::Stream, Family::Unix),
        Table::new(Transport::Seqpacket, Family::Unix),
        Table::new(Transport::Dgram, Family::Unix),
    ];

    /// The table of one transport and family.
    pub const fn new(transport: Transport, family: Family) -> Table {
        Table {
            transport,
            family,
            netns: 0,
        }
    }

    /// The same table in the watched namespace `netns`.
    pub const fn in_netns(self, netns: u32) -> Table {
        Table { netns, ..self }
    }
}

impl fmt::Display for Table {
    /// `tcp6`, `udp`: the names of the /proc/net files and of ss(8);
    /// `unix stream` for the unix tables.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.family {
            Family::Inet => write!(f, "{}", self.transport),
            Family::Inet6 => write!(f, "{}6", self.transport),
            Family::Unix => write!(f, "unix {}", self.transport),
        }
    }
}

/// The name a unix socket is bound to, as the kernel reports it: a path
/// (possibly relative, as bound in its owner's mount namespace and working
/// directory) or an abstract name (per network namespace, no file).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixName {
    /// Whether it is an abstract name (the kernel's leading NUL).
    pub is_abstract: bool,
    /// The name as lossless text (see [`crate::quote::text_from_bytes`]),
    /// abstract ones with a leading `@`: what `SOCKET_PATH` shows and
    /// matches.
    text: Arc<str>,
}

impl UnixName {
    /// A path name from its bytes.
    pub fn path(bytes: &[u8]) -> UnixName {
        UnixName {
            is_abstract: false,
            text: crate::quote::text_from_bytes(bytes).into(),
        }
    }

    /// An abstract name from its bytes (without the leading NUL).
    pub fn abstract_name(bytes: &[u8]) -> UnixName {
        let mut text = String::with_capacity(bytes.len() + 1);
        text.push('@');
        text.push_str(&crate::quote::text_from_bytes(bytes));
        UnixName {
            is_abstract: true,
            text: text.into(),
        }
    }

    /// The name as lossless text, `@name` for abstract ones.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The path's bytes, for a path name.
    pub fn path_bytes(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        (!self.is_abstract).then(|| crate::quote::bytes_from_text(&self.text))
    }
}

/// The network namespace an endpoint listens in, when more than one is
/// watched or the one watched is not ours: the id sockwatch gave it (as in
/// [`Table::netns`]) and what is known of it. Two tags are the same
/// namespace when their ids are: what is known of it (a container id found
/// later) never changes an endpoint's identity.
#[derive(Debug, Clone)]
pub struct NetnsTag {
    /// The id among the watched namespaces, as in [`Table::netns`].
    pub id: u32,
    /// What events say of it.
    pub info: Arc<NetnsInfo>,
}

impl PartialEq for NetnsTag {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for NetnsTag {}

impl std::hash::Hash for NetnsTag {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

/// What events say of a network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetnsInfo {
    /// `NETNS=`: the `/run/netns` name where there is one, else the
    /// kernel's `net:[INODE]`, else (inode unknown) the path as given.
    pub label: Arc<str>,
    /// The `/run/netns` name, where there is one.
    pub name: Option<String>,
    /// The namespace's inode, where it could be seen.
    pub inode: Option<u64>,
    /// Its cookie (`SO_NETNS_COOKIE`), where the kernel told it: unlike
    /// the inode, never reused for another namespace.
    pub cookie: Option<u64>,
    /// The id of the container whose process is in it, from that
    /// process's cgroup (docker, containerd/CRI, CRI-O, podman, LXC).
    pub container: Option<String>,
}

/// Where an endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Addr {
    /// An IP address and port.
    Inet {
        /// The local address; its family is the endpoint's family.
        ip: IpAddr,
        /// The local port.
        port: u16,
    },
    /// A unix socket's name.
    Unix(UnixName),
}

/// A listening endpoint: what a client connects or sends to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// TCP, UDP, or a unix transport; it agrees with `addr`'s kind.
    pub transport: Transport,
    /// Where.
    pub addr: Addr,
    /// In which of several watched network namespaces (`None`: the only one
    /// watched, and ours).
    pub netns: Option<NetnsTag>,
}

impl Endpoint {
    /// An inet endpoint.
    pub fn inet(transport: Transport, ip: IpAddr, port: u16) -> Endpoint {
        debug_assert!(!transport.is_unix());
        Endpoint {
            transport,
            addr: Addr::Inet { ip, port },
            netns: None,
        }
    }

    /// A unix endpoint.
    pub fn unix(transport: Transport, name: UnixName) -> Endpoint {
        debug_assert!(transport.is_unix());
        Endpoint {
            transport,
            addr: Addr::Unix(name),
            netns: None,
        }
    }

    /// The IP address of an inet endpoint.
    pub fn ip(&self) -> Option<IpAddr> {
        match &self.addr {
            Addr::Inet { ip, .. } => Some(*ip),
            Addr::Unix(_) => None,
        }
    }

    /// The port of an inet endpoint.
    pub fn port(&self) -> Option<u16> {
        match &self.addr {
            Addr::Inet { port, .. } => Some(*port),
            Addr::Unix(_) => None,
        }
    }

    /// The name of a unix endpoint.
    pub fn unix_name(&self) -> Option<&UnixName> {
        match &self.addr {
            Addr::Unix(name) => Some(name),
            Addr::Inet { .. } => None,
        }
    }

    /// The address family (`PROTO`).
    pub fn family(&self) -> Family {
        match &self.addr {
            Addr::Inet { ip, .. } => Family::of(ip),
            Addr::Unix(_) => Family::Unix,
        }
    }

    /// The kernel table this endpoint lives in.
    pub fn table(&self) -> Table {
        Table::new(self.transport, self.family()).in_netns(self.netns.as_ref().map_or(0, |n| n.id))
    }

    /// The namespace's name as events give it, where it is shown.
    pub fn netns_label(&self) -> Option<&str> {
        self.netns.as_ref().map(|n| &*n.info.label)
    }

    /// Whether it listens on every address of its family (`0.0.0.0`, `::`).
    pub fn is_wildcard(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

impl Ord for Endpoint {
    /// Listing order: namespace, transport, family, then port and address,
    /// or name.
    fn cmp(&self, other: &Self) -> Ordering {
        let key = |e: &Endpoint| (e.netns.as_ref().map(|n| n.id), e.transport, e.family());
        key(self)
            .cmp(&key(other))
            .then_with(|| match (&self.addr, &other.addr) {
                (Addr::Inet { ip, port }, Addr::Inet { ip: i, port: p }) => (port, ip).cmp(&(p, i)),
                (Addr::Unix(a), Addr::Unix(b)) => a.cmp(b),
                (Addr::Inet { .. }, Addr::Unix(_)) => Ordering::Less,
                (Addr::Unix(_), Addr::Inet { .. }) => Ordering::Greater,
            })
    }
}

impl PartialOrd for Endpoint {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Endpoint {
    /// The event fields in contract order: `PROTO=inet PORT=80 ADDR=0.0.0.0
    /// TRANSPORT=tcp`, `PROTO=unix SOCKET_PATH=/run/app.sock
    /// TRANSPORT=stream`. IPv6 addresses are RFC 5952 text without
    /// brackets, which is what `Ipv6Addr`'s `Display` writes; names are
    /// quoted by the one rule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.addr {
            Addr::Inet { ip, port } => write!(
                f,
                "PROTO={} PORT={port} ADDR={ip} TRANSPORT={}",
                self.family(),
                self.transport
            ),
            Addr::Unix(name) => write!(
                f,
                "PROTO=unix SOCKET_PATH={} TRANSPORT={}",
                crate::quote::quote(name.text()),
                self.transport
            ),
        }
    }
}

/// Which source reported a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// sock_diag netlink dumps and destroy events.
    Netlink,
    /// Polling `/proc/net/{tcp,tcp6,udp,udp6,unix}`.
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
    /// The owner's user id; `None` where the source cannot tell (a kernel
    /// too old to report it for unix sockets).
    pub uid: Option<u32>,
    /// The kernel's socket cookie, which destroy events carry; `None` where the
    /// source cannot tell (/proc).
    pub cookie: Option<u64>,
    /// `IPV6_V6ONLY` of an IPv6 socket; `None` for IPv4, or where the source
    /// cannot tell (/proc).
    pub v6only: Option<bool>,
    /// Who reported it.
    pub source: SourceKind,
    /// For a unix socket bound to a path: the device and inode of the
    /// socket file it created, where the source reports them (netlink's
    /// `UNIX_DIAG_VFS`), to tell whether the path still leads to it.
    pub vfs: Option<Vfs>,
    /// Whether the row is known to be the kernel's. /proc prints unix names
    /// raw, so a name holding a newline can forge a row: those rows are
    /// listed, but satisfy no condition until verified.
    pub trusted: bool,
}

/// The identity of the file a unix socket was bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vfs {
    /// The device's major number.
    pub major: u32,
    /// The device's minor number.
    pub minor: u32,
    /// The file's inode.
    pub ino: u64,
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
        self.sockets.iter().filter_map(|s| s.uid).min()
    }

    /// Whether every socket's row is known to be the kernel's (see
    /// [`Socket::trusted`]).
    pub fn trusted(&self) -> bool {
        self.sockets.iter().all(|s| s.trusted)
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
