//! The snapshot: the one home of what is known about each listening
//! endpoint.
//!
//! A [`Snapshot`] maps every listening [`Endpoint`] to its [`Listener`]: the
//! kernel sockets behind it and, where it was looked up, the process that
//! holds them. It is changed in two ways only, and each change is reported
//! as [`Event`]s:
//! - [`Snapshot::apply_table`]: a complete read of one kernel table replaces
//!   what was known of that table: new endpoints appear, and endpoints
//!   missing from it close once a confirmation says they are gone — a dump
//!   can skip rows when sockets in the same hash slot come and go, so an
//!   absence is a hint, not a fact;
//! - [`Snapshot::close_cookies`]: the kernel pushed that these sockets were
//!   freed; an endpoint closes with its last socket (SO_REUSEPORT workers
//!   share one endpoint), once a confirmation agrees that nothing listens
//!   there any more (a worker a dump skipped would otherwise be forgotten).
//!
//! An event carries the listener as it was at that moment, owner included,
//! so that a `socket-closed` can still be filtered on the `COMM` it had
//! after the endpoint left the snapshot. The owner is stored in the listener
//! and nowhere else.
//!
//! Nothing here knows where sockets come from: it is tested with plain
//! values, without a source.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use crate::condition::{Facts, OwnerFact};
pub use crate::endpoint::Listener;
use crate::endpoint::{Endpoint, Family, Socket, Table};
use crate::event::{Event, EventKind};
use crate::process::Ownership;

/// The current set of listening endpoints.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    endpoints: BTreeMap<Endpoint, Listener>,
    /// `net.ipv6.bindv6only`: the v6only of IPv6 sockets whose source does
    /// not report it.
    bindv6only: bool,
    /// Socket cookie to endpoint, to match pushed closes.
    cookies: HashMap<u64, Endpoint>,
}

impl Snapshot {
    /// An empty snapshot; `bindv6only` stands in for sources that cannot
    /// tell a socket's `IPV6_V6ONLY`.
    pub fn new(bindv6only: bool) -> Snapshot {
        Snapshot {
            bindv6only,
            ..Snapshot::default()
        }
    }

    /// Endpoints in listing order (transport, family, port, address).
    pub fn iter(&self) -> impl Iterator<Item = (&Endpoint, &Listener)> {
        self.endpoints.iter()
    }

    /// The listener on `endpoint`, if it listens.
    pub fn get(&self, endpoint: &Endpoint) -> Option<&Listener> {
        self.endpoints.get(endpoint)
    }

    /// How many endpoints listen.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether nothing listens.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// What conditions are evaluated on: v6only resolved, falling back to the
    /// system default where the source cannot tell. Works for listeners that
    /// are no longer in the snapshot (those of `socket-closed` events).
    pub fn facts<'a>(&self, endpoint: &'a Endpoint, listener: &'a Listener) -> Facts<'a> {
        let v6only = match endpoint.family() {
            Family::Inet | Family::Unix => None,
            Family::Inet6 => Some(listener.v6only().unwrap_or(self.bindv6only)),
        };
        let owner = match &listener.owner {
            None | Some(Ownership::Nobody) => OwnerFact::Absent,
            Some(Ownership::Hidden) => OwnerFact::Unknown,
            Some(Ownership::Found(owner)) => OwnerFact::Known {
                pid: owner.pid,
                comm: &owner.comm,
            },
        };
        Facts {
            endpoint,
            v6only,
            owner,
            path_current: crate::unix_path::leads_to(endpoint, listener),
            trusted: listener.trusted(),
        }
    }

    /// Facts for every endpoint.
    pub fn all_facts(&self) -> Vec<Facts<'_>> {
        self.endpoints
            .iter()
            .map(|(endpoint, listener)| self.facts(endpoint, listener))
            .collect()
    }

    /// Replaces what is known of `table` by `sockets`, a complete read of
    /// it, appending a `socket` for every new endpoint and a `socket-closed`
    /// for every endpoint of the table that is missing from it and that
    /// `confirm` does not return as still listening (it is given the missing
    /// ones and returns those that still listen; those keep what was known).
    /// Endpoints whose sockets did not change keep their owner. Returns
    /// whether anything changed.
    pub fn apply_table(
        &mut self,
        table: Table,
        sockets: impl IntoIterator<Item = Socket>,
        confirm: impl FnOnce(&[Endpoint]) -> Vec<Endpoint>,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> bool {
        let mut fresh: BTreeMap<Endpoint, Vec<Socket>> = BTreeMap::new();
        for socket in sockets {
            debug_assert_eq!(socket.endpoint.table(), table);
            fresh
                .entry(socket.endpoint.clone())
                .or_default()
                .push(socket);
        }
        let mut changed = false;
        let mut gone: Vec<Endpoint> = self
            .endpoints
            .keys()
            .filter(|e| e.table() == table && !fresh.contains_key(e))
            .cloned()
            .collect();
        if !gone.is_empty() {
            let still = confirm(&gone);
            gone.retain(|e| !still.contains(e));
        }
        for endpoint in gone {
            let listener = self.endpoints.remove(&endpoint).expect("listed above");
            changed = true;
            events.push(Event::new(EventKind::SocketClosed, endpoint, listener, now));
        }
        for (endpoint, mut sockets) in fresh {
            sockets.sort_by_key(|s| s.inode);
            match self.endpoints.get_mut(&endpoint) {
                Some(known) if known.sockets == sockets => {}
                Some(known) => {
                    // New workers or a restart between two polls: the same
                    // endpoint, so no event; who holds it is looked up
                    // again only if it was never found.
                    known.sockets = sockets;
                    changed = true;
                }
                None => {
                    changed = true;
                    let listener = Listener {
                        sockets,
                        owner: None,
                    };
                    events.push(Event::new(
                        EventKind::Socket,
                        endpoint.clone(),
                        listener.clone(),
                        now,
                    ));
                    self.endpoints.insert(endpoint, listener);
                }
            }
        }
        if changed {
            self.index_cookies();
        }
        changed
    }

    /// Removes the sockets whose cookies the kernel says were freed. An
    /// endpoint whose last known socket went closes, with a `socket-closed`
    /// event, unless `confirm` (given those endpoints) returns it as still
    /// listening: then it keeps its last socket until the next read tells
    /// which ones serve it. Cookies of sockets that never listened are
    /// ignored. Returns whether some endpoint outlived its known sockets, so
    /// that the caller reads its table again.
    pub fn close_cookies(
        &mut self,
        cookies: impl IntoIterator<Item = u64>,
        confirm: impl FnOnce(&[Endpoint]) -> Vec<Endpoint>,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> bool {
        let mut emptied = Vec::new();
        for cookie in cookies {
            let Some(endpoint) = self.cookies.remove(&cookie) else {
                continue;
            };
            let Some(listener) = self.endpoints.get_mut(&endpoint) else {
                continue;
            };
            if listener.sockets.len() > 1 {
                listener.sockets.retain(|s| s.cookie != Some(cookie));
            } else if !emptied.contains(&endpoint) {
                emptied.push(endpoint);
            }
        }
        if emptied.is_empty() {
            return false;
        }
        let still = confirm(&emptied);
        for endpoint in &emptied {
            if still.contains(endpoint) {
                continue;
            }
            let last = self.endpoints.remove(endpoint).expect("found above");
            events.push(Event::new(
                EventKind::SocketClosed,
                endpoint.clone(),
                last,
                now,
            ));
        }
        !still.is_empty()
    }

    /// Closes every endpoint of the watched namespace `netns`, which is
    /// gone (and its sockets with it), appending a `socket-closed` for
    /// each.
    pub fn close_netns(&mut self, netns: u32, now: SystemTime, events: &mut Vec<Event>) {
        let gone: Vec<Endpoint> = self
            .endpoints
            .keys()
            .filter(|e| e.table().netns == netns)
            .cloned()
            .collect();
        if gone.is_empty() {
            return;
        }
        for endpoint in gone {
            let listener = self.endpoints.remove(&endpoint).expect("listed above");
            events.push(Event::new(EventKind::SocketClosed, endpoint, listener, now));
        }
        self.index_cookies();
    }

    /// Records who holds `endpoint`'s sockets.
    pub fn set_ownership(&mut self, endpoint: &Endpoint, ownership: Ownership) {
        if let Some(listener) = self.endpoints.get_mut(endpoint) {
            listener.set_ownership(ownership);
        }
    }

    fn index_cookies(&mut self) {
        self.cookies.clear();
        for (endpoint, listener) in &self.endpoints {
            for cookie in listener.sockets.iter().filter_map(|s| s.cookie) {
                self.cookies.insert(cookie, endpoint.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{SourceKind, Transport};
    use crate::process::Owner;

    const TCP4: Table = Table::new(Transport::Tcp, Family::Inet);

    fn socket(port: u16, inode: u64) -> Socket {
        Socket {
            endpoint: Endpoint::inet(Transport::Tcp, "127.0.0.1".parse().unwrap(), port),
            inode,
            uid: Some(0),
            cookie: Some(inode + 1000),
            v6only: None,
            source: SourceKind::Netlink,
            vfs: None,
            trusted: true,
        }
    }

    fn summary(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| format!("{} {}", e.kind.as_str(), e.endpoint.port().unwrap()))
            .collect()
    }

    fn apply(snapshot: &mut Snapshot, sockets: Vec<Socket>) -> Vec<String> {
        let mut events = Vec::new();
        snapshot.apply_table(
            TCP4,
            sockets,
            |_| Vec::new(),
            SystemTime::now(),
            &mut events,
        );
        summary(&events)
    }

    #[test]
    fn a_table_replaces_what_was_known_of_it() {
        let mut snapshot = Snapshot::new(false);
        assert_eq!(
            apply(&mut snapshot, vec![socket(80, 1), socket(22, 2)]),
            ["socket 22", "socket 80"]
        );
        assert_eq!(
            apply(&mut snapshot, vec![socket(80, 1), socket(22, 2)]),
            [""; 0]
        );
        assert_eq!(
            apply(&mut snapshot, vec![socket(80, 3)]),
            ["socket-closed 22"],
            "a new socket on a known endpoint is no event"
        );
        assert_eq!(snapshot.len(), 1);
    }

    #[test]
    fn an_absence_closes_nothing_until_confirmed() {
        let mut snapshot = Snapshot::new(false);
        apply(&mut snapshot, vec![socket(80, 1), socket(22, 2)]);
        let mut events = Vec::new();
        let mut asked = Vec::new();
        snapshot.apply_table(
            TCP4,
            vec![socket(80, 1)],
            |absent| {
                asked = absent.to_vec();
                absent.to_vec()
            },
            SystemTime::now(),
            &mut events,
        );
        assert!(events.is_empty(), "skipped by the dump, but still there");
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].port(), Some(22));
        assert_eq!(snapshot.len(), 2);
        assert_eq!(
            apply(&mut snapshot, vec![socket(80, 1)]),
            ["socket-closed 22"]
        );
    }

    #[test]
    fn a_pushed_close_of_the_last_known_socket_is_confirmed() {
        let mut snapshot = Snapshot::new(false);
        apply(&mut snapshot, vec![socket(80, 1)]);
        let mut events = Vec::new();
        let reread = snapshot.close_cookies(
            [1001],
            |emptied| emptied.to_vec(),
            SystemTime::now(),
            &mut events,
        );
        assert!(events.is_empty(), "another worker still serves it");
        assert!(reread, "its table must be read again");
        assert_eq!(snapshot.len(), 1);
    }

    #[test]
    fn an_endpoint_closes_with_its_last_socket() {
        let mut snapshot = Snapshot::new(false);
        apply(&mut snapshot, vec![socket(80, 1), socket(80, 2)]);
        let mut events = Vec::new();
        snapshot.close_cookies([1001, 5555], |_| Vec::new(), SystemTime::now(), &mut events);
        assert!(events.is_empty(), "one of two sockets closed");
        snapshot.close_cookies([1002], |_| Vec::new(), SystemTime::now(), &mut events);
        assert_eq!(summary(&events), ["socket-closed 80"]);
        let inodes: Vec<u64> = events[0].listener.inodes().collect();
        assert_eq!(inodes, [2], "the last socket known");
        assert!(snapshot.is_empty());
    }

    #[test]
    fn a_closed_endpoint_keeps_its_owner_in_the_event() {
        let mut snapshot = Snapshot::new(false);
        apply(&mut snapshot, vec![socket(80, 1)]);
        let endpoint = snapshot.iter().next().unwrap().0.clone();
        let owner = Owner {
            pid: 42,
            comm: "python3".into(),
        };
        snapshot.set_ownership(&endpoint, Ownership::Found(owner.clone()));
        assert_eq!(apply(&mut snapshot, vec![socket(80, 1)]), [""; 0]);
        let mut events = Vec::new();
        snapshot.close_cookies([1001], |_| Vec::new(), SystemTime::now(), &mut events);
        let facts = snapshot.facts(&events[0].endpoint, &events[0].listener);
        assert_eq!(
            facts.owner,
            OwnerFact::Known {
                pid: 42,
                comm: "python3"
            },
            "filtered watches need the owner of what closed"
        );
        assert_eq!(events[0].listener.owner(), Some(&owner));
    }

    #[test]
    fn hidden_owners_are_unknown_not_absent() {
        let mut snapshot = Snapshot::new(false);
        apply(&mut snapshot, vec![socket(80, 1), socket(81, 2)]);
        let endpoints: Vec<Endpoint> = snapshot.iter().map(|(e, _)| e.clone()).collect();
        snapshot.set_ownership(&endpoints[0], Ownership::Hidden);
        snapshot.set_ownership(&endpoints[1], Ownership::Nobody);
        let facts = snapshot.all_facts();
        assert_eq!(facts[0].owner, OwnerFact::Unknown);
        assert_eq!(facts[1].owner, OwnerFact::Absent);
    }
}
