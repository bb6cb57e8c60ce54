//! `sockwatch export`: the listening endpoints as Prometheus metrics, for
//! fleets that already run Prometheus rather than a home-made aggregator.
//!
//! The watcher's loop stays as it is, on the main thread: after every
//! change it publishes the endpoints to export ([`metrics::Published`]) into
//! a shared slot, and, with `--textfile`, hands a rendered version to the
//! textfile's writer thread. The HTTP server (`--listen`) runs on threads of
//! its own and only reads: each scrape renders the published endpoints and
//! the live counts of reads ([`crate::source::reads`]) at that moment. So a
//! scrape never waits for the loop, and the loop never waits for a client
//! or a disk.
//!
//! Until every socket table has been read once, nothing is claimed: a
//! scrape is answered 503 and no textfile is written, so that an empty set
//! is never taken for "nothing listens".

pub mod http;
pub mod metrics;
pub mod textfile;

use std::net::{SocketAddr, TcpListener};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::condition::Condition;
use crate::event::{Event, EventKind};
use crate::watcher::{Stop, Watcher};
use metrics::Published;
use textfile::{Textfile, Writer};

/// How long a stop waits for a textfile write under way.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// What `sockwatch export` was asked for, checked.
pub struct Exporter {
    /// The bound `--listen` socket.
    pub listener: Option<TcpListener>,
    /// `--textfile`.
    pub textfile: Option<Textfile>,
    /// Only endpoints that satisfy it are exported, and only their events
    /// counted.
    pub condition: Option<Condition>,
    /// `--processes`: `pid` and `comm` labels.
    pub processes: bool,
    /// How often the watcher reads the tables.
    pub interval: Duration,
    /// `-v`.
    pub verbose: bool,
}

/// Where the loop publishes and scrapes read: `None` until every table has
/// been read once.
type Slot = Arc<Mutex<Option<Arc<Published>>>>;

fn latest(slot: &Slot) -> Option<Arc<Published>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

impl Exporter {
    /// Serves and writes until SIGINT or SIGTERM; then removes the textfile.
    pub fn run(self, watcher: &mut Watcher) -> anyhow::Result<Stop> {
        let slot: Slot = Arc::default();
        let reads = watcher.reads();
        if let Some(listener) = self.listener {
            let addr: Option<SocketAddr> = listener.local_addr().ok();
            let (slot, reads) = (Arc::clone(&slot), Arc::clone(&reads));
            http::serve(listener, http::Limits::DEFAULT, move || {
                match latest(&slot) {
                    Some(published) => http::Page::Ready {
                        content_type: metrics::CONTENT_TYPE,
                        body: metrics::render(&published, reads.tally()),
                    },
                    None => http::Page::NotYet("the socket tables have not all been read yet"),
                }
            })
            .context("failed to start the HTTP server")?;
            if let (Some(addr), true) = (addr, self.verbose) {
                eprintln!("sockwatch: serving http://{addr}/metrics");
            }
        }
        let writer = match &self.textfile {
            Some(textfile) => {
                textfile.check()?;
                Some(
                    Writer::start(textfile.clone())
                        .context("failed to start the textfile writer")?,
                )
            }
            None => None,
        };
        let mut published = Published {
            detect: watcher.detect_name(),
            ..Published::default()
        };
        let stop = watcher.run(self.interval, None, None, |events, snapshot| {
            for event in events {
                let facts = snapshot.facts(&event.endpoint, &event.listener);
                if self.condition.as_ref().is_some_and(|c| !c.selects(&facts)) {
                    continue;
                }
                match event.kind {
                    EventKind::Socket => published.appeared += 1,
                    EventKind::SocketClosed => published.closed += 1,
                }
            }
            let now = SystemTime::now();
            published.endpoints = snapshot
                .iter()
                .filter(|(endpoint, listener)| {
                    let facts = snapshot.facts(endpoint, listener);
                    self.condition.as_ref().is_none_or(|c| c.selects(&facts))
                })
                .map(|(endpoint, listener)| {
                    let event =
                        Event::new(EventKind::Socket, endpoint.clone(), listener.clone(), now);
                    metrics::labels(&event, self.processes)
                })
                .collect();
            let version = Arc::new(published.clone());
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&version));
            if let Some(writer) = &writer {
                writer.submit(metrics::render(&version, reads.tally()));
            }
            Ok(ControlFlow::Continue(()))
        });
        if let Some(writer) = writer {
            writer.stop(STOP_GRACE);
        }
        stop
    }
}
