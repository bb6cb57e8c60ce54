//! Which network namespaces a watcher reads, and how they come and go:
//! `--netns` (named, watched until they go) and `--all-netns` (every one on
//! the host, looked for again every [`SCAN_INTERVAL`]). A namespace that
//! goes has its endpoints closed and every handle of ours in it released at
//! once, since our sockets and files would keep it alive.

use std::time::{Duration, Instant, SystemTime};

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::{FIRST_SOURCE, Watcher};
use crate::event::Event;

/// How often the set of namespaces is looked at again (`--all-netns`, and
/// whether those named by `--netns` are still there): a new one is picked
/// up, and a gone one released, within this.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// The namespaces watched, when they are not only ours.
#[derive(Default)]
pub(super) struct Namespaces {
    pub(super) scope: Scope,
    /// Each namespace watched, by id.
    pub(super) watched: Vec<Watched>,
    /// The id of the next namespace to come.
    pub(super) next_id: u32,
    /// Whether events carry `NETNS=`.
    pub(super) tagged: bool,
    /// When to look for namespaces again.
    pub(super) next_scan: Option<Instant>,
    /// Namespaces found that could not be read, by inode, with what held
    /// them then: said once, tried again when that changes.
    pub(super) unreadable: std::collections::HashMap<u64, crate::netns::Found>,
    /// Whether the user was told that some processes' namespaces cannot be
    /// looked at.
    pub(super) hidden_said: bool,
    /// Namespaces found held by nothing sockwatch can see, yet with
    /// listeners: said once each under `-v`.
    pub(super) held_unseen: std::collections::HashSet<u32>,
    /// Finds the namespaces under `--all-netns`, remembering processes.
    pub(super) scanner: crate::netns::Scanner,
}

/// Which namespaces are watched.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// Ours, or the one of `--proc-root`: it lasts as long as we do.
    #[default]
    Own,
    /// Those named by `--netns`: watched until they go.
    Named,
    /// Every one on the host (`--all-netns`), as they come and go.
    All,
}

/// A namespace watched.
pub(super) struct Watched {
    pub(super) id: u32,
    pub(super) target: crate::netns::Target,
    /// Its cookie, where the kernel tells it: the namespace's identity.
    /// While we watch it through netlink our socket keeps it alive, so its
    /// inode number cannot be reused meanwhile either.
    pub(super) cookie: Option<u64>,
}

/// What [`Watcher::rescan`] found.
#[derive(Debug, Default)]
pub(super) struct Rescanned {
    /// The ids of namespaces that appeared: their tables are to be read.
    pub(super) new: Vec<u32>,
    /// Every namespace named by `--netns` is gone.
    pub(super) none_left: bool,
}

impl Watcher {
    /// Looks at the watched namespaces again: under `--all-netns`, opens
    /// the sources of those that appeared (their tables are for the caller
    /// to read: [`Rescanned::new`]) and drops those that went; with
    /// `--netns`, drops those that cannot be reached any more, saying so.
    /// A namespace dropped has its endpoints closed (`socket-closed`) and
    /// every handle of ours in it released at once: our sockets and open
    /// files in it keep it alive, and its veths up. New pushed descriptors
    /// are registered with `registry`, and those of dropped namespaces
    /// deregistered, where there is one.
    pub(super) fn rescan(
        &mut self,
        registry: Option<&mio::Registry>,
        events: &mut Vec<Event>,
    ) -> anyhow::Result<Rescanned> {
        let mut rescanned = Rescanned::default();
        match self.namespaces.scope {
            Scope::Own => {}
            Scope::Named => {
                let mut scan: Option<crate::netns::Scan> = None;
                let mut gone = Vec::new();
                let mut moved = Vec::new();
                for watched in &self.namespaces.watched {
                    let reached = crate::netns::reach(&watched.target, || {
                        scan.get_or_insert_with(crate::netns::scan).clone()
                    });
                    match reached {
                        None => gone.push(watched.id),
                        Some(target) if target != watched.target => {
                            moved.push((watched.id, target));
                        }
                        Some(_) => {}
                    }
                }
                for (id, target) in moved {
                    self.move_netns(id, target);
                }
                if scan.is_some_and(|scan| !scan.complete) {
                    // Not seen by a look that could not see everything.
                    gone.clear();
                }
                for id in self.still_gone(gone) {
                    let label = self.label_of(id);
                    self.drop_netns(id, registry, events);
                    eprintln!(
                        "sockwatch: the network namespace {label} is gone (no process is in it \
                         and no mount holds it); its endpoints are closed"
                    );
                }
                rescanned.none_left = self.namespaces.watched.is_empty();
            }
            Scope::All => {
                let scan = self.namespaces.scanner.scan();
                if scan.hidden > 0 && !self.namespaces.hidden_said {
                    self.namespaces.hidden_said = true;
                    eprintln!(
                        "sockwatch: cannot look at the network namespace of {} process(es) as uid \
                         {} (permission denied: processes of other users, or more privileged \
                         than sockwatch); namespaces that only they are in are not watched",
                        scan.hidden,
                        crate::sys::effective_uid()
                    );
                }
                // Not seen by a look that could not see everything: not gone.
                let gone: Vec<u32> = self
                    .namespaces
                    .watched
                    .iter()
                    .filter(|w| {
                        scan.complete
                            && w.target
                                .inode
                                .is_some_and(|inode| !scan.namespaces.contains_key(&inode))
                    })
                    .map(|w| w.id)
                    .collect();
                for id in self.still_gone(gone) {
                    if self.verbose {
                        eprintln!(
                            "sockwatch: the network namespace {} is gone; its endpoints are closed",
                            self.label_of(id)
                        );
                    }
                    self.drop_netns(id, registry, events);
                }
                let mut moved = Vec::new();
                for watched in &self.namespaces.watched {
                    // Found by this look where it is watched from: nothing
                    // to check again (a stat and a readlink per namespace
                    // every second, 100 namespaces: 0.1 % of a CPU).
                    let as_found = watched.target.inode.is_some_and(|inode| {
                        scan.namespaces
                            .get(&inode)
                            .and_then(|found| crate::netns::found_target(inode, found))
                            .is_some_and(|t| {
                                t.file == watched.target.file
                                    && t.proc_root == watched.target.proc_root
                            })
                    });
                    if as_found {
                        continue;
                    }
                    let reached = crate::netns::reach(&watched.target, || scan.clone());
                    if let Some(target) = reached.filter(|t| *t != watched.target) {
                        moved.push((watched.id, target));
                    }
                }
                for (id, target) in moved {
                    self.move_netns(id, target);
                }
                self.namespaces
                    .unreadable
                    .retain(|inode, _| scan.namespaces.contains_key(inode));
                for (&inode, found) in &scan.namespaces {
                    let known = self
                        .namespaces
                        .watched
                        .iter()
                        .any(|w| w.target.inode == Some(inode));
                    if known || self.namespaces.unreadable.get(&inode) == Some(found) {
                        continue;
                    }
                    let Some(target) = crate::netns::found_target(inode, found) else {
                        continue;
                    };
                    let id = self.namespaces.next_id;
                    match self.sources.add(id, &target, self.namespaces.tagged) {
                        Ok(opened) => {
                            self.namespaces.next_id += 1;
                            self.namespaces.unreadable.remove(&inode);
                            if let Some(registry) = registry {
                                for (i, fd) in self.sources.pushed_fds_of(id) {
                                    registry.register(
                                        &mut SourceFd(&fd),
                                        Token(FIRST_SOURCE + i),
                                        Interest::READABLE,
                                    )?;
                                }
                            }
                            let what = format!("the network namespace {}", target.label);
                            if self.verbose && registry.is_some() {
                                eprintln!(
                                    "sockwatch: watching {what} too ({})",
                                    opened.cookie.map_or_else(
                                        || "no cookie: by inode".to_owned(),
                                        |c| format!("cookie {c}")
                                    )
                                );
                            }
                            self.namespaces.watched.push(Watched {
                                id,
                                target,
                                cookie: opened.cookie,
                            });
                            self.count(id, opened, &what);
                            rescanned.new.push(id);
                        }
                        // Gone meanwhile: nothing to say.
                        Err(_) if crate::netns::inode_of(&target.file) != Some(inode) => {}
                        Err(e) => {
                            if !self.namespaces.unreadable.contains_key(&inode) {
                                eprintln!("sockwatch: {e:#}; it is not watched");
                            }
                            self.namespaces.unreadable.insert(inode, found.clone());
                        }
                    }
                }
            }
        }
        self.stagger();
        Ok(rescanned)
    }

    /// Reads namespace `id` through `target` from now on (the process whose
    /// /proc it was read from exited; the namespace did not).
    pub(super) fn move_netns(&mut self, id: u32, target: crate::netns::Target) {
        if let Some(root) = &target.proc_root {
            self.sources.move_proc_root(id, root);
        }
        if let Some(watched) = self.namespaces.watched.iter_mut().find(|w| w.id == id) {
            watched.target = target;
        }
    }

    /// The name events give namespace `id`.
    pub(super) fn label_of(&self, id: u32) -> String {
        self.namespaces
            .watched
            .iter()
            .find(|w| w.id == id)
            .map_or_else(String::new, |w| w.target.label.to_string())
    }

    /// Of namespaces that no process or mount seen holds any more, those
    /// that are gone: a read of their tables finds no listener. One that
    /// still has listeners is held by something sockwatch cannot see (a
    /// process it may not look at, a socket kept from another namespace):
    /// it is watched on, said once under `-v`, rather than its endpoints
    /// closed on a guess.
    fn still_gone(&mut self, candidates: Vec<u32>) -> Vec<u32> {
        let mut gone = Vec::with_capacity(candidates.len());
        for id in candidates {
            let mut sockets = Vec::new();
            let listening = self
                .sources
                .read_netns(&mut sockets, Some(&[id]))
                .is_ok_and(|tables| !tables.is_empty() && !sockets.is_empty());
            if !listening {
                gone.push(id);
            } else if self.verbose && self.namespaces.held_unseen.insert(id) {
                eprintln!(
                    "sockwatch: the network namespace {} still has listeners though no process \
                     or mount seen holds it; watching it on",
                    self.label_of(id)
                );
            }
        }
        gone
    }

    /// Drops namespace `id`: its endpoints close, and every handle of ours
    /// in it (netlink sockets, counter files) is closed now.
    pub(super) fn drop_netns(
        &mut self,
        id: u32,
        registry: Option<&mio::Registry>,
        events: &mut Vec<Event>,
    ) {
        if let Some(registry) = registry {
            for (_, fd) in self.sources.pushed_fds_of(id) {
                // Before the descriptor closes, while it is still ours.
                let _ = registry.deregister(&mut SourceFd(&fd));
            }
        }
        self.sources.remove(id);
        if let Some(gates) = self.gates() {
            gates.list.retain(|c| c.id != id);
        }
        self.snapshot.close_netns(id, SystemTime::now(), events);
        self.namespaces.watched.retain(|w| w.id != id);
    }

    /// The cookies of the watched namespaces, where the kernel told them,
    /// by `NETNS=` name (for `-v`).
    pub fn describe_namespaces(&self) -> String {
        let parts: Vec<String> = self
            .namespaces
            .watched
            .iter()
            .map(|w| match w.cookie {
                Some(cookie) => format!("{} (cookie {cookie})", w.target.label),
                None => format!("{} (no cookie: by inode)", w.target.label),
            })
            .collect();
        parts.join(", ")
    }
}
