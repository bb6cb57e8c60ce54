//! The hook runs waiting for their turn: in event order while there is
//! room, coalesced per endpoint beyond it.
//!
//! Hooks keep another system in step with the endpoints (`initctl emit`, a
//! load balancer's pool), so what matters to it is that it ends up told each
//! endpoint's latest state, never a `socket` without the `socket-closed`
//! that followed. Dropping events when a slow hook falls behind breaks that;
//! keeping every event grows without bound. So up to `capacity` runs wait
//! as the events came, and beyond that a new event is folded into what
//! already waits for its endpoint:
//! - its appear still waits: they cancel out (the hook was never told of the
//!   endpoint, and need not be);
//! - an event of the same kind waits: the new one takes its place (newer
//!   facts; the watcher never sends two in a row, this is a safety net);
//! - otherwise it waits as well: nothing waits for the endpoint yet, or its
//!   close waits and it appeared again, and the hook hears of the restart.
//!
//! Every endpoint's runs thus still alternate and end in its latest state.
//! Beyond `capacity`, an endpoint adds at most two waiting runs, whatever
//! the number of its events: memory follows the endpoints, not the events.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use crate::endpoint::Endpoint;
use crate::event::EventKind;

/// One hook run waiting: the event's endpoint and kind, and what the run
/// needs (its environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run<T> {
    /// The event's endpoint.
    pub endpoint: Endpoint,
    /// Appeared or closed.
    pub kind: EventKind,
    /// What the run needs.
    pub payload: T,
}

/// What coalescing saved while the queue was full: one summary, not one
/// line per event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coalesced {
    /// An appear and its close that cancelled out (two events each).
    pub cancelled: u64,
    /// Events whose run was taken over by a later event of the same kind.
    pub superseded: u64,
}

impl Coalesced {
    /// How many events got no run of their own.
    pub fn events(&self) -> u64 {
        2 * self.cancelled + self.superseded
    }
}

/// The waiting runs.
#[derive(Debug)]
pub struct Pending<T> {
    /// In arrival order; `None` where a run was cancelled (removed lazily,
    /// see [`Pending::compact`]).
    slots: VecDeque<Option<Run<T>>>,
    /// The sequence number of `slots[0]`.
    first: u64,
    /// Per endpoint, the sequence numbers of its waiting runs, oldest first.
    by_endpoint: HashMap<Endpoint, VecDeque<u64>>,
    /// Runs waiting (slots that are not `None`).
    live: usize,
    capacity: usize,
    /// Since the queue was last full, until it empties.
    overflow: Option<Coalesced>,
}

impl<T> Pending<T> {
    /// An empty queue where `capacity` runs wait as they came.
    pub fn new(capacity: usize) -> Pending<T> {
        Pending {
            slots: VecDeque::new(),
            first: 0,
            by_endpoint: HashMap::new(),
            live: 0,
            capacity,
            overflow: None,
        }
    }

    /// Runs waiting.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Adds the run of a new event, coalescing it when the queue is full
    /// (see the module's doc). True when this filled the queue: coalescing
    /// starts, worth saying once.
    pub fn push(&mut self, run: Run<T>) -> bool {
        if self.live < self.capacity {
            self.append(run);
            return false;
        }
        let started = self.overflow.is_none();
        let mut coalesced = self.overflow.take().unwrap_or_default();
        let last = self
            .by_endpoint
            .get(&run.endpoint)
            .and_then(|waiting| waiting.back())
            .map(|&seq| (seq - self.first) as usize);
        match last {
            Some(index) => {
                let waiting = self.slots[index]
                    .as_mut()
                    .expect("an endpoint's waiting runs are live");
                if waiting.kind == run.kind {
                    *waiting = run;
                    coalesced.superseded += 1;
                } else if waiting.kind == EventKind::Socket {
                    self.cancel(index);
                    coalesced.cancelled += 1;
                } else {
                    // Its close waits, and it appeared again.
                    self.append(run);
                }
            }
            None => self.append(run),
        }
        self.overflow = Some(coalesced);
        started
    }

    /// The next run, oldest first.
    pub fn pop(&mut self) -> Option<Run<T>> {
        while let Some(slot) = self.slots.pop_front() {
            self.first += 1;
            let Some(run) = slot else { continue };
            if let Entry::Occupied(mut waiting) = self.by_endpoint.entry(run.endpoint.clone()) {
                waiting.get_mut().pop_front();
                if waiting.get().is_empty() {
                    waiting.remove();
                }
            }
            self.live -= 1;
            return Some(run);
        }
        None
    }

    /// Once the queue has emptied after being full: what coalescing saved
    /// meanwhile (given once per episode).
    pub fn drained(&mut self) -> Option<Coalesced> {
        if self.live == 0 {
            self.overflow.take()
        } else {
            None
        }
    }

    /// Drops every waiting run; returns how many there were.
    pub fn clear(&mut self) -> usize {
        let dropped = self.live;
        self.first += self.slots.len() as u64;
        self.slots.clear();
        self.by_endpoint.clear();
        self.live = 0;
        self.overflow = None;
        dropped
    }

    fn append(&mut self, run: Run<T>) {
        let seq = self.first + self.slots.len() as u64;
        self.by_endpoint
            .entry(run.endpoint.clone())
            .or_default()
            .push_back(seq);
        self.slots.push_back(Some(run));
        self.live += 1;
    }

    /// Cancels the run at `index`, the last waiting one of its endpoint.
    fn cancel(&mut self, index: usize) {
        let run = self.slots[index].take().expect("a live run");
        if let Entry::Occupied(mut waiting) = self.by_endpoint.entry(run.endpoint.clone()) {
            waiting.get_mut().pop_back();
            if waiting.get().is_empty() {
                waiting.remove();
            }
        }
        self.live -= 1;
        if self.slots.len() > 2 * self.live + 64 {
            self.compact();
        }
    }

    /// Removes cancelled slots once they outnumber the live ones, so that
    /// appear/close pairs that keep cancelling out cannot grow the queue:
    /// O(n), at most once per n cancellations.
    fn compact(&mut self) {
        self.slots.retain(Option::is_some);
        self.by_endpoint.clear();
        for (i, run) in self.slots.iter().enumerate() {
            let run = run.as_ref().expect("only live runs are left");
            self.by_endpoint
                .entry(run.endpoint.clone())
                .or_default()
                .push_back(self.first + i as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Transport;
    use EventKind::{Socket, SocketClosed};

    fn endpoint(port: u16) -> Endpoint {
        Endpoint::inet(Transport::Tcp, "127.0.0.1".parse().unwrap(), port)
    }

    fn run(port: u16, kind: EventKind, tag: u32) -> Run<u32> {
        Run {
            endpoint: endpoint(port),
            kind,
            payload: tag,
        }
    }

    /// `socket 80 #1`-style summaries of what runs, in order.
    fn drain(pending: &mut Pending<u32>) -> Vec<String> {
        std::iter::from_fn(|| pending.pop())
            .map(|r| {
                format!(
                    "{} {} #{}",
                    r.kind.as_str(),
                    r.endpoint.port().unwrap(),
                    r.payload
                )
            })
            .collect()
    }

    #[test]
    fn below_capacity_every_event_waits_in_order() {
        let mut pending = Pending::new(8);
        assert!(!pending.push(run(80, Socket, 1)));
        pending.push(run(80, SocketClosed, 2));
        pending.push(run(81, Socket, 3));
        pending.push(run(80, Socket, 4));
        assert_eq!(pending.len(), 4);
        assert_eq!(
            drain(&mut pending),
            [
                "socket 80 #1",
                "socket-closed 80 #2",
                "socket 81 #3",
                "socket 80 #4"
            ]
        );
        assert_eq!(pending.drained(), None, "never full");
    }

    #[test]
    fn when_full_an_appear_and_its_close_cancel_out() {
        let mut pending = Pending::new(2);
        pending.push(run(1, Socket, 1));
        pending.push(run(2, Socket, 2));
        assert!(pending.push(run(2, SocketClosed, 3)), "coalescing starts");
        assert_eq!(pending.len(), 1);
        assert!(!pending.push(run(3, Socket, 4)), "said once");
        assert_eq!(drain(&mut pending), ["socket 1 #1", "socket 3 #4"]);
        assert_eq!(
            pending.drained(),
            Some(Coalesced {
                cancelled: 1,
                superseded: 0
            })
        );
        assert_eq!(pending.drained(), None, "once per episode");
    }

    #[test]
    fn when_full_a_close_is_never_dropped() {
        let mut pending = Pending::new(2);
        pending.push(run(1, Socket, 1));
        pending.push(run(2, Socket, 2));
        // Port 1's appear runs; its close comes while the queue is full.
        assert_eq!(pending.pop().unwrap().payload, 1);
        pending.push(run(3, Socket, 3));
        pending.push(run(1, SocketClosed, 4));
        assert_eq!(pending.len(), 3, "beyond capacity: the latest state waits");
        // A restart of port 1: the hook hears of both.
        pending.push(run(1, Socket, 5));
        assert_eq!(
            drain(&mut pending),
            [
                "socket 2 #2",
                "socket 3 #3",
                "socket-closed 1 #4",
                "socket 1 #5"
            ]
        );
    }

    #[test]
    fn when_full_a_second_event_of_a_kind_replaces_the_first() {
        let mut pending = Pending::new(1);
        pending.push(run(1, Socket, 1));
        pending.push(run(1, Socket, 2));
        assert_eq!(drain(&mut pending), ["socket 1 #2"]);
        assert_eq!(pending.drained().unwrap().superseded, 1);
    }

    #[test]
    fn churn_beyond_capacity_is_bounded_by_endpoints_and_ends_in_each_latest_state() {
        let capacity = 16;
        let mut pending = Pending::new(capacity);
        let endpoints = 50u16;
        let mut listening = vec![false; usize::from(endpoints)];
        // What the hook was told last, per endpoint.
        let mut told: Vec<Option<EventKind>> = vec![None; usize::from(endpoints)];
        let mut most = 0;
        let mut tag = 0;
        // A hook that runs once for every seven events: far behind.
        for step in 0..20_000u32 {
            let port = ((step * 7919) % u32::from(endpoints)) as u16;
            let state = &mut listening[usize::from(port)];
            *state = !*state;
            let kind = if *state { Socket } else { SocketClosed };
            tag += 1;
            pending.push(run(port, kind, tag));
            most = most.max(pending.len());
            assert!(
                pending.slots.len() <= 2 * most + 64,
                "cancelled slots are reclaimed"
            );
            if step % 7 == 0
                && let Some(r) = pending.pop()
            {
                told[usize::from(r.endpoint.port().unwrap())] = Some(r.kind);
            }
        }
        assert!(
            most <= capacity + 2 * usize::from(endpoints),
            "{most} runs waited at most"
        );
        while let Some(r) = pending.pop() {
            let port = usize::from(r.endpoint.port().unwrap());
            assert_ne!(told[port], Some(r.kind), "runs alternate per endpoint");
            told[port] = Some(r.kind);
        }
        for (port, &state) in listening.iter().enumerate() {
            let last = told[port].unwrap_or(SocketClosed);
            assert_eq!(
                last == Socket,
                state,
                "port {port} ends in its latest state"
            );
        }
        let saved = pending.drained().expect("it was full");
        assert!(saved.events() > 10_000, "{saved:?}");
    }

    #[test]
    fn clearing_drops_everything_and_says_how_much() {
        let mut pending = Pending::new(1);
        pending.push(run(1, Socket, 1));
        pending.push(run(2, Socket, 2));
        assert_eq!(pending.clear(), 2);
        assert!(pending.is_empty());
        assert_eq!(pending.pop(), None);
        pending.push(run(3, Socket, 3));
        assert_eq!(drain(&mut pending), ["socket 3 #3"]);
    }
}
