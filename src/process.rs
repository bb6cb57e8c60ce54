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
    /// Its command name (`/proc/<pid>/comm`, at most 15 bytes).
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

/// The command name of `pid`, if it can be read.
pub fn comm(proc_root: &Path, pid: u32) -> Option<String> {
    let text = fs::read_to_string(proc_root.join(pid.to_string()).join("comm")).ok()?;
    Some(text.trim_end_matches('\n').to_owned())
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

/// Field `n` (1-based, as proc(5) numbers them) of `/proc/<pid>/stat`, read
/// after the command name's closing parenthesis, since the name may hold
/// spaces and parentheses.
fn stat_field(proc_root: &Path, pid: u32, n: usize) -> Option<u64> {
    let stat = fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(n - 3)?.parse().ok()
}

/// The socket inodes `pid` holds open.
pub fn socket_inodes(proc_root: &Path, pid: u32) -> Vec<u64> {
    let Ok(dir) = fs::read_dir(proc_root.join(pid.to_string()).join("fd")) else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let link = fs::read_link(entry.ok()?.path()).ok()?;
        let link = link.to_str()?;
        link.strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    })
    .collect()
}

/// For each wanted inode, the lowest-numbered process among `candidates`
/// that holds it. Stops scanning once every inode is found.
pub fn owners(proc_root: &Path, candidates: &[u32], wanted: &HashSet<u64>) -> HashMap<u64, Owner> {
    let mut found = HashMap::new();
    for &pid in candidates {
        if found.len() == wanted.len() {
            break;
        }
        for inode in socket_inodes(proc_root, pid) {
            if wanted.contains(&inode) && !found.contains_key(&inode) {
                let comm = comm(proc_root, pid).unwrap_or_default();
                found.insert(inode, Owner { pid, comm });
            }
        }
    }
    found
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
        let found = owners(proc_root, &[me], &wanted);
        let owner = &found[&inode];
        assert_eq!(owner.pid, me);
        assert_eq!(Some(owner.comm.clone()), comm(proc_root, me));
        assert_eq!(
            parent(proc_root, me),
            Some(std::os::unix::process::parent_id())
        );
    }
}
