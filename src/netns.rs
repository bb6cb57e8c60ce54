//! Other network namespaces: named on the command line (`--netns`), or
//! every one on the host (`--all-netns`).
//!
//! A namespace is named by a `/run/netns` name (as `ip netns` makes them)
//! or by a namespace file (`/proc/PID/ns/net`, a bind mount). Here each is
//! resolved into what the sources need: the file netlink enters, the
//! `/proc/<pid>` whose tables /proc gives when there is a process behind
//! the path, and the name events give it (`NETNS=`).
//!
//! [`scan`] finds every namespace there is, as the kernel keeps one alive:
//! a process in it (`/proc/*/ns/net`, whose link reads `net:[INODE]`
//! without opening anything) or a bind mount of it (`/run/netns/*`, and
//! any other nsfs mount in `/proc/self/mountinfo`, such as docker's). A
//! namespace held only by an open descriptor or a socket of some process
//! is not found: nothing cheap names it. Threads are not looked at (one
//! readlink per process, not per thread): a namespace whose only members
//! are threads that entered it with setns(2) is not found either.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

/// Where `ip netns` keeps its named namespaces.
pub const RUN_NETNS: &str = "/run/netns";

/// A network namespace to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The namespace file netlink enters.
    pub file: PathBuf,
    /// `/proc/<pid>` of a process in it, where the path names one.
    pub proc_root: Option<PathBuf>,
    /// The namespace's inode, where it can be seen (another user's
    /// process's namespace file cannot be looked at without privilege).
    pub inode: Option<u64>,
    /// The name events give it: the `/run/netns` name where there is one,
    /// else `net:[INODE]`, else (inode unknown) the path as given.
    pub label: Arc<str>,
    /// The `/run/netns` name, where there is one.
    pub name: Option<String>,
    /// The `--netns` argument that named it (`None`: found by [`scan`]).
    pub given: Option<String>,
}

impl Target {
    /// What events say of it (the container id is looked up here, from the
    /// cgroup of the process whose /proc is read).
    pub fn info(&self) -> crate::endpoint::NetnsInfo {
        crate::endpoint::NetnsInfo {
            label: Arc::clone(&self.label),
            name: self.name.clone(),
            inode: self.inode,
            cookie: None,
            container: self.proc_root.as_deref().and_then(container_of_process),
        }
    }
}

/// Resolves each `--netns` argument: a word without `/` is a name under
/// [`RUN_NETNS`], anything else a path. The same namespace named twice is
/// watched once. A name or path that does not exist is an error naming it.
pub fn resolve(args: &[String]) -> anyhow::Result<Vec<Target>> {
    let mut targets: Vec<Target> = Vec::new();
    for arg in args {
        let target = resolve_one(arg)?;
        let same = |t: &Target| match (t.inode, target.inode) {
            (Some(a), Some(b)) => a == b,
            _ => t.file == target.file,
        };
        if !targets.iter().any(same) {
            targets.push(target);
        }
    }
    Ok(targets)
}

fn resolve_one(arg: &str) -> anyhow::Result<Target> {
    if arg.is_empty() {
        anyhow::bail!("--netns: expected a name under {RUN_NETNS} or a namespace file");
    }
    let by_name = !arg.contains('/');
    let file = if by_name {
        Path::new(RUN_NETNS).join(arg)
    } else {
        PathBuf::from(arg)
    };
    let inode = match std::fs::metadata(&file) {
        Ok(meta) => Some(meta.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| {
                if by_name {
                    format!("no network namespace named {arg} ({})", file.display())
                } else {
                    format!("no network namespace file {arg}")
                }
            });
        }
        // Another user's process: its namespace file is hidden, its
        // tables under /proc/<pid>/net are not.
        Err(_) => None,
    };
    let proc_root = proc_root_of(&file);
    if inode.is_none() && proc_root.is_none() {
        // Neither enterable nor readable: say why now.
        std::fs::metadata(&file).with_context(|| format!("network namespace {arg}"))?;
    }
    let name = match inode {
        _ if by_name => Some(arg.to_owned()),
        Some(inode) => name_of(inode),
        None => None,
    };
    let label: Arc<str> = match (&name, inode) {
        (Some(name), _) => name.as_str().into(),
        (None, Some(inode)) => format!("net:[{inode}]").into(),
        (None, None) => arg.into(),
    };
    // A name with a process in it: that process's /proc reads it without
    // privilege, and its cgroup says which container it is.
    let proc_root = proc_root.or_else(|| {
        let inode = inode?;
        scan().namespaces.get(&inode)?.pid.map(pid_root)
    });
    Ok(Target {
        file,
        proc_root,
        inode,
        label,
        name,
        given: Some(arg.to_owned()),
    })
}

/// `/proc/<pid>`.
fn pid_root(pid: u32) -> PathBuf {
    Path::new("/proc").join(pid.to_string())
}

/// The inode of the namespace behind `file`, where it can be looked at.
pub fn inode_of(file: &Path) -> Option<u64> {
    std::fs::metadata(file).ok().map(|m| m.ino())
}

/// Whether a watched namespace can still be reached the way it was named:
/// its file still names it (a `/run/netns` name not deleted, a process not
/// exited), or, failing that, a process or a bind mount still holds it.
/// `None` when it can: the target to read it through from now on (another
/// process's /proc when the one used has exited).
pub fn reach(target: &Target, scan: impl FnOnce() -> Scan) -> Option<Target> {
    let Some(inode) = target.inode else {
        // Another user's process, named by path: its namespace is known
        // only through it, and goes (for us) when it exits.
        return target
            .proc_root
            .as_deref()
            .is_some_and(|root| root.join("net").exists())
            .then(|| target.clone());
    };
    let proc_current = target.proc_root.as_deref().is_none_or(|root| {
        root == Path::new("/proc") || ns_link_inode(&root.join("ns/net")) == Some(inode)
    });
    if inode_of(&target.file) == Some(inode) && proc_current {
        return Some(target.clone());
    }
    let scan = scan();
    let found = scan.namespaces.get(&inode)?;
    let mut moved = target.clone();
    if let Some(mount) = &found.mount {
        moved.file = mount.clone();
    } else if let Some(pid) = found.pid {
        moved.file = pid_root(pid).join("ns/net");
    }
    if !proc_current {
        moved.proc_root = found.pid.map(pid_root);
    }
    Some(moved)
}

/// The inode a `/proc/<pid>/ns/net` link names (`net:[INODE]`), read
/// without opening the namespace.
fn ns_link_inode(link: &Path) -> Option<u64> {
    let target = std::fs::read_link(link).ok()?;
    let text = target.to_str()?;
    text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Every network namespace found on the host, by inode.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// What holds each namespace.
    pub namespaces: std::collections::BTreeMap<u64, Found>,
    /// Processes whose namespace could not be looked at (another user's,
    /// without privilege).
    pub hidden: usize,
    /// Whether every place was read: a namespace missing from a scan that
    /// could not read `/proc`, `/run/netns` or the mount table may still be
    /// there, and is not taken for gone.
    pub complete: bool,
}

/// What holds a namespace found by [`scan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The lowest process id in it.
    pub pid: Option<u32>,
    /// Its `/run/netns` name.
    pub name: Option<String>,
    /// A bind mount of it (its `/run/netns` file where it has a name).
    pub mount: Option<PathBuf>,
}

/// Finds every network namespace that a process or a bind mount holds.
/// About 6 µs per process (a readlink under /proc).
pub fn scan() -> Scan {
    scan_with(None)
}

/// How many scans a [`Scanner`] takes to look at every known process's
/// namespace again.
pub const RECHECK_SCANS: u32 = 8;

/// [`scan`], again and again, cheaply: the namespace of a process seen
/// before is taken from the last scan, and looked at again once in
/// [`RECHECK_SCANS`] scans, since a process rarely changes namespace
/// (setns(2), unshare(2)) without exec-ing a new one. New processes are
/// always looked at, and a process is known by its pid and the inode of its
/// `/proc/<pid>` entry, so that a pid reused is new. So a namespace is
/// picked up at the first scan after its first process starts, dropped at
/// the first after its last exits, and one that a running process moved
/// into or out of is seen within [`RECHECK_SCANS`] scans.
#[derive(Debug, Default)]
pub struct Scanner {
    /// Per pid: the inode of its `/proc` entry, and its namespace's inode
    /// (`None`: it could not be looked at).
    known: std::collections::HashMap<u32, (u64, Option<u64>)>,
    /// Which share of the known processes is looked at again this scan.
    round: u32,
    /// The pids seen by this scan.
    seen: Vec<u32>,
}

impl Scanner {
    /// Finds every network namespace, as [`scan`].
    pub fn scan(&mut self) -> Scan {
        self.round = self.round.wrapping_add(1);
        self.seen.clear();
        let scan = scan_with(Some(self));
        let seen: std::collections::HashSet<u32> = self.seen.drain(..).collect();
        self.known.retain(|pid, _| seen.contains(pid));
        scan
    }
}

fn scan_with(mut cache: Option<&mut Scanner>) -> Scan {
    use std::os::unix::fs::DirEntryExt;
    let mut scan = Scan::default();
    // Cleared below where a place cannot be read, or read to its end.
    let mut complete = true;
    match std::fs::read_dir("/proc") {
        Err(_) => complete = false,
        Ok(entries) => {
            let mut link = PathBuf::from("/proc");
            for entry in entries {
                let Ok(entry) = entry else {
                    complete = false;
                    break;
                };
                let name = entry.file_name();
                let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                let entry_inode = entry.ino();
                let cached = cache.as_deref().and_then(|c| {
                    let &(known_entry, netns) = c.known.get(&pid)?;
                    (known_entry == entry_inode && pid % RECHECK_SCANS != c.round % RECHECK_SCANS)
                        .then_some(netns)
                });
                let netns = match cached {
                    Some(netns) => netns,
                    None => {
                        link.push(&name);
                        link.push("ns/net");
                        let read = std::fs::read_link(&link);
                        link.pop();
                        link.pop();
                        link.pop();
                        match read {
                            Ok(target) => target.to_str().and_then(|t| {
                                t.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
                            }),
                            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => None,
                            // Exited meanwhile: neither found nor hidden.
                            Err(_) => continue,
                        }
                    }
                };
                if let Some(cache) = cache.as_deref_mut() {
                    cache.known.insert(pid, (entry_inode, netns));
                    cache.seen.push(pid);
                }
                match netns {
                    Some(inode) => {
                        let found: &mut Found = scan.namespaces.entry(inode).or_default();
                        found.pid = Some(found.pid.map_or(pid, |p| p.min(pid)));
                    }
                    None => scan.hidden += 1,
                }
            }
        }
    }
    let nsfs = std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.dev());
    let run_netns = match std::fs::read_dir(RUN_NETNS) {
        Ok(entries) => Some(entries),
        // No namespace was ever named: nothing is missed.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => {
            complete = false;
            None
        }
    };
    if let Some(entries) = run_netns {
        for entry in entries {
            let Ok(entry) = entry else {
                complete = false;
                break;
            };
            let path = entry.path();
            // A name whose mount is gone is an empty file of /run's own.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if Some(meta.dev()) != nsfs {
                continue;
            }
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let found = scan.namespaces.entry(meta.ino()).or_default();
            if found.name.as_ref().is_none_or(|n| *n > name) {
                found.name = Some(name);
                found.mount = Some(path);
            }
        }
    }
    match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(mountinfo) => {
            for (inode, mount) in nsfs_mounts(&mountinfo) {
                let found = scan.namespaces.entry(inode).or_default();
                if found.mount.is_none() {
                    found.mount = Some(mount);
                }
            }
        }
        Err(_) => complete = false,
    }
    scan.complete = complete;
    scan
}

/// The network namespaces bind-mounted somewhere, from the text of
/// `/proc/self/mountinfo`: lines whose filesystem is `nsfs` and whose root
/// is `net:[INODE]`, with their mount points (octal escapes undone).
fn nsfs_mounts(mountinfo: &str) -> Vec<(u64, PathBuf)> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let Some((fields, rest)) = line.split_once(" - ") else {
            continue;
        };
        if !rest.starts_with("nsfs ") {
            continue;
        }
        let fields: Vec<&str> = fields.split(' ').collect();
        let (Some(root), Some(point)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        let Some(inode) = root
            .strip_prefix("net:[")
            .and_then(|r| r.strip_suffix(']')?.parse().ok())
        else {
            continue;
        };
        mounts.push((inode, PathBuf::from(unescape_mount(point))));
    }
    mounts
}

/// A mountinfo path with its `\NNN` octal escapes (space, tab, newline,
/// backslash) undone.
fn unescape_mount(text: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// The target through which a namespace found by [`scan`] is read: its
/// bind mount where it has one (entering needs no process), else a process
/// in it; that process's /proc where there is one.
pub fn found_target(inode: u64, found: &Found) -> Option<Target> {
    let file = match (&found.mount, found.pid) {
        (Some(mount), _) => mount.clone(),
        (None, Some(pid)) => pid_root(pid).join("ns/net"),
        (None, None) => return None,
    };
    let label: Arc<str> = match &found.name {
        Some(name) => name.as_str().into(),
        None => format!("net:[{inode}]").into(),
    };
    Some(Target {
        file,
        proc_root: found.pid.map(pid_root),
        inode: Some(inode),
        label,
        name: found.name.clone(),
        given: None,
    })
}

/// The container whose process `proc_root` (`/proc/<pid>`) is, from its
/// cgroup.
fn container_of_process(proc_root: &Path) -> Option<String> {
    let cgroup = std::fs::read_to_string(proc_root.join("cgroup")).ok()?;
    container_of(&cgroup)
}

/// The container id in the text of a `/proc/<pid>/cgroup`, as the common
/// runtimes name their cgroups: docker (`docker-<id>.scope`,
/// `/docker/<id>`), containerd under Kubernetes (`cri-containerd-<id>`),
/// CRI-O (`crio-<id>`), podman (`libpod-<id>`), LXC (`lxc.payload.NAME`,
/// `/lxc/NAME`). The innermost match wins (a container in a container).
pub fn container_of(cgroup: &str) -> Option<String> {
    let hex = |s: &str| s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut found = None;
    for line in cgroup.lines() {
        // `hierarchy:controllers:path`; the path may itself hold colons.
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        let parts: Vec<&str> = path.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let scope = part.strip_suffix(".scope").unwrap_or(part);
            let id = ["docker-", "cri-containerd-", "crio-", "libpod-"]
                .iter()
                .find_map(|p| scope.strip_prefix(p))
                .filter(|id| hex(id))
                .or_else(|| {
                    let next = parts.get(i + 1).filter(|n| !n.is_empty());
                    match *part {
                        "docker" | "libpod_parent" => next.copied().filter(|n| hex(n)),
                        "lxc" => next.copied(),
                        _ => None,
                    }
                })
                .or_else(|| part.strip_prefix("lxc.payload.").filter(|n| !n.is_empty()));
            if let Some(id) = id {
                found = Some(id.to_owned());
            }
        }
    }
    found
}

/// `/proc/<pid>` (or `/proc/<pid>/task/<tid>`) of a path
/// `/proc/<pid>[/task/<tid>]/ns/net`: where that process's tables are.
fn proc_root_of(file: &Path) -> Option<PathBuf> {
    let root = file.strip_prefix("/proc").ok()?;
    let parts: Vec<&str> = root.iter().map(|p| p.to_str()).collect::<Option<_>>()?;
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [pid, "ns", "net"] if numeric(pid) => Some(Path::new("/proc").join(pid)),
        [pid, "task", tid, "ns", "net"] if numeric(pid) && numeric(tid) => {
            Some(Path::new("/proc").join(pid).join("task").join(tid))
        }
        _ => None,
    }
}

/// The `/run/netns` name of the namespace with `inode`, where there is one.
fn name_of(inode: u64) -> Option<String> {
    std::fs::read_dir(RUN_NETNS)
        .ok()?
        .filter_map(Result::ok)
        .find(|entry| std::fs::metadata(entry.path()).is_ok_and(|m| m.ino() == inode))
        .and_then(|entry| entry.file_name().into_string().ok())
}

/// Our own network namespace, as `--all-netns` watches it: read through
/// `/proc` and our own sockets, never entered.
pub fn own_target() -> anyhow::Result<Target> {
    let file = PathBuf::from("/proc/thread-self/ns/net");
    let inode = std::fs::metadata(&file)
        .with_context(|| {
            format!(
                "cannot look at our own network namespace ({})",
                file.display()
            )
        })?
        .ino();
    let name = name_of(inode);
    let label: Arc<str> = match &name {
        Some(name) => name.as_str().into(),
        None => format!("net:[{inode}]").into(),
    };
    Ok(Target {
        file,
        proc_root: Some(PathBuf::from("/proc")),
        inode: Some(inode),
        label,
        name,
        given: None,
    })
}

/// The inode of our own network namespace (of this thread: the tests run
/// threads in namespaces of their own).
pub fn own_inode() -> Option<u64> {
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.ino())
}

/// Whether events must say which namespace: more than one is watched, or
/// the one watched is not ours.
pub fn tagged(targets: &[Target]) -> bool {
    match targets {
        [] => false,
        [one] => one.inode.is_none() || one.inode != own_inode(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_paths_give_the_process_tables() {
        let root = |p: &str| proc_root_of(Path::new(p));
        assert_eq!(root("/proc/12/ns/net"), Some(PathBuf::from("/proc/12")));
        assert_eq!(
            root("/proc/12/task/13/ns/net"),
            Some(PathBuf::from("/proc/12/task/13"))
        );
        assert_eq!(root("/proc/self/ns/net"), None);
        assert_eq!(root("/run/netns/a"), None);
        assert_eq!(root("/proc/12/ns/mnt"), None);
    }

    #[test]
    fn containers_by_their_runtimes_cgroups() {
        let id = "4f1c2b3a".repeat(8);
        let cases = [
            (
                format!("0::/system.slice/docker-{id}.scope"),
                Some(id.clone()),
            ),
            (
                format!("12:pids:/docker/{id}\n0::/docker/{id}"),
                Some(id.clone()),
            ),
            (
                format!("0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{id}.scope"),
                Some(id.clone()),
            ),
            (format!("0::/kubepods/crio-{id}.scope"), Some(id.clone())),
            (
                format!("0::/machine.slice/libpod-{id}.scope/container"),
                Some(id.clone()),
            ),
            ("0::/lxc.payload.web1".to_owned(), Some("web1".to_owned())),
            ("4:cpu:/lxc/web2".to_owned(), Some("web2".to_owned())),
            (
                "0::/user.slice/user-1000.slice/session-2.scope".to_owned(),
                None,
            ),
            ("0::/system.slice/docker.service".to_owned(), None),
            ("0::/docker-notahexid.scope".to_owned(), None),
            (String::new(), None),
        ];
        for (cgroup, expected) in cases {
            assert_eq!(container_of(&cgroup), expected, "{cgroup}");
        }
    }

    #[test]
    fn bind_mounts_of_namespaces_are_found_in_mountinfo() {
        let text = "\
24 30 0:22 / /proc rw,nosuid shared:13 - proc proc rw
612 29 0:4 net:[4026532290] /run/netns/blue rw shared:298 - nsfs nsfs rw
700 29 0:4 net:[4026532999] /var/run/docker/netns/a\\040b rw - nsfs nsfs rw
701 29 0:4 mnt:[4026532111] /tmp/mnt rw - nsfs nsfs rw
";
        assert_eq!(
            nsfs_mounts(text),
            [
                (4026532290, PathBuf::from("/run/netns/blue")),
                (4026532999, PathBuf::from("/var/run/docker/netns/a b")),
            ]
        );
    }

    #[test]
    fn the_scan_finds_our_own_namespace_by_our_process() {
        let scan = scan();
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        let inode: u64 = own.to_str().unwrap()[5..]
            .trim_end_matches(']')
            .parse()
            .unwrap();
        let found = &scan.namespaces[&inode];
        assert!(found.pid.unwrap() <= std::process::id(), "{found:?}");
    }

    #[test]
    fn a_missing_name_is_named() {
        let e = resolve(&["sockwatch-no-such-netns".into()]).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "no network namespace named sockwatch-no-such-netns \
             (/run/netns/sockwatch-no-such-netns): No such file or directory (os error 2)"
        );
    }
}
