//! Other network namespaces named on the command line (`--netns`).
//!
//! A namespace is named by a `/run/netns` name (as `ip netns` makes them)
//! or by a namespace file (`/proc/PID/ns/net`, a bind mount). Here each is
//! resolved once, at start, into what the sources need: the file netlink
//! enters, the `/proc/<pid>` whose tables /proc gives when there is a
//! process behind the path, and the name events give it (`NETNS=`).

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
    let label: Arc<str> = match inode {
        _ if by_name => arg.into(),
        Some(inode) => match name_of(inode) {
            Some(name) => name.into(),
            None => format!("net:[{inode}]").into(),
        },
        None => arg.into(),
    };
    Ok(Target {
        file,
        proc_root,
        inode,
        label,
    })
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
    fn a_missing_name_is_named() {
        let e = resolve(&["sockwatch-no-such-netns".into()]).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "no network namespace named sockwatch-no-such-netns \
             (/run/netns/sockwatch-no-such-netns): No such file or directory (os error 2)"
        );
    }
}
