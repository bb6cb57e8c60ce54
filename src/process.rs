//! Which processes hold which sockets.
//!
//! The kernel reports a socket's inode; a process holds it when one of its
//! `/proc/<pid>/fd/*` links reads `socket:[<inode>]`. That is the only
//! general way from a socket to its owners, and it costs a `readlink` per
//! open file of every process scanned, so callers ask only when needed: for
//! endpoints not seen before (`--processes`), or for the few processes of a
//! supervised service tree (`run`).
//!
//! An ordinary user can read the fd tables of its own processes only; the
//! others stay unknown, without error.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

/// A process that holds a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its process id.
    pub pid: u32,
    /// Its command name (`/proc/<pid>/comm`, at most 15 bytes), as
    /// [`crate::quote::text_from_bytes`] carries it.
    pub comm: String,
}

/// The process ids under `proc_root`, ascending.
pub fn pids(proc_root: &Path) -> Vec<u32> {
    let Ok(dir) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// The command name of `pid`, if it can be read: its bytes as the kernel
/// keeps them, carried losslessly (a name need not be UTF-8).
pub fn comm(proc_root: &Path, pid: u32) -> Option<String> {
    let bytes = fs::read(proc_root.join(pid.to_string()).join("comm")).ok()?;
    let name = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    Some(crate::quote::text_from_bytes(name))
}

/// When `pid` started, in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`): orders processes by age, which pids don't after
/// wrap-around.
pub fn start_time(proc_root: &Path, pid: u32) -> Option<u64> {
    stat_field(proc_root, pid, 22)
}

/// The parent of `pid` (field 4 of `/proc/<pid>/stat`).
pub fn parent(proc_root: &Path, pid: u32) -> Option<u32> {
    stat_field(proc_root, pid, 4).and_then(|p| u32::try_from(p).ok())
}

/// The parent of `pid` and when it started (fields 4 and 22 of
/// `/proc/<pid>/stat`), from one read: the pair tells a process from a
/// later one that reuses its pid.
pub fn parent_and_start_time(proc_root: &Path, pid: u32) -> Option<(u32, u64)> {
    let stat = fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    let parent = nth_stat_field(&stat, 4).and_then(|p| u32::try_from(p).ok())?;
    Some((parent, nth_stat_field(&stat, 22)?))
}

/// Field `n` (1-based, as proc(5) numbers them) of `/proc/<pid>/stat`.
fn stat_field(proc_root: &Path, pid: u32, n: usize) -> Option<u64> {
    let stat = fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    nth_stat_field(&stat, n)
}

/// Field `n` of a stat line, read after the command name's closing
/// parenthesis, since the name may hold spaces and parentheses.
fn nth_stat_field(stat: &str, n: usize) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(n - 3)?.parse().ok()
}

/// What is known of the process behind an endpoint, once looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// The lowest-numbered process holding one of its sockets.
    Found(Owner),
    /// Not among the processes this user may look at, and some could not be
    /// read (another user's): the owner is unknown, not absent.
    Hidden,
    /// Every process could be read and none holds it (a socket held only
    /// by the kernel, or by a process of another pid namespace).
    Nobody,
}

/// The socket inodes `pid` holds open; `Err` when its fd table cannot be
/// read (another user's process: EACCES; gone meanwhile: ENOENT).
pub fn socket_inodes(proc_root: &Path, pid: u32) -> Vec<u64> {
    try_socket_inodes(proc_root, pid).unwrap_or_default()
}

fn try_socket_inodes(proc_root: &Path, pid: u32) -> std::io::Result<Vec<u64>> {
    let dir = fs::read_dir(proc_root.join(pid.to_string()).join("fd"))?;
    Ok(dir
        .filter_map(|entry| {
            let link = fs::read_link(entry.ok()?.path()).ok()?;
            let link = link.to_str()?;
            link.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect())
}

/// The result of looking for the holders of some socket inodes.
#[derive(Debug, Default)]
pub struct Scan {
    /// For each inode found, the lowest-numbered process holding it.
    pub found: HashMap<u64, Owner>,
    /// Processes whose fd table could not be read for lack of permission:
    /// an inode not found may be held by one of them.
    pub unreadable: usize,
}

impl Scan {
    /// What is known of the holder of any of `inodes` (an endpoint's
    /// sockets).
    pub fn ownership(&self, mut inodes: impl Iterator<Item = u64>) -> Ownership {
        match inodes.find_map(|inode| self.found.get(&inode)) {
            Some(owner) => Ownership::Found(owner.clone()),
            None if self.unreadable > 0 => Ownership::Hidden,
            None => Ownership::Nobody,
        }
    }
}

/// For each wanted inode, the lowest-numbered process among `candidates`
/// that holds it, and how many processes could not be looked at. Stops
/// scanning once every inode is found.
pub fn owners(proc_root: &Path, candidates: &[u32], wanted: &HashSet<u64>) -> Scan {
    let mut scan = Scan::default();
    for &pid in candidates {
        if scan.found.len() == wanted.len() {
            break;
        }
        let inodes = match try_socket_inodes(proc_root, pid) {
            Ok(inodes) => inodes,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                scan.unreadable += 1;
                continue;
            }
            // Exited meanwhile: it holds nothing any more.
            Err(_) => continue,
        };
        for inode in inodes {
            if wanted.contains(&inode) && !scan.found.contains_key(&inode) {
                let comm = comm(proc_root, pid).unwrap_or_default();
                scan.found.insert(inode, Owner { pid, comm });
            }
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn finds_this_process_as_the_owner_of_its_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd_link = format!("/proc/self/fd/{}", listener.as_raw_fd());
        let inode: u64 = fs::read_link(fd_link)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_start_matches("socket:[")
            .trim_end_matches(']')
            .parse()
            .unwrap();
        let proc_root = Path::new("/proc");
        let me = std::process::id();
        assert!(pids(proc_root).contains(&me));
        assert!(socket_inodes(proc_root, me).contains(&inode));
        let wanted = HashSet::from([inode]);
        let scan = owners(proc_root, &[me], &wanted);
        assert_eq!(scan.unreadable, 0);
        let owner = &scan.found[&inode];
        assert_eq!(owner.pid, me);
        assert_eq!(Some(owner.comm.clone()), comm(proc_root, me));
        assert_eq!(
            parent(proc_root, me),
            Some(std::os::unix::process::parent_id())
        );
        assert_eq!(
            parent_and_start_time(proc_root, me),
            Some((
                std::os::unix::process::parent_id(),
                start_time(proc_root, me).unwrap()
            ))
        );
    }
}
