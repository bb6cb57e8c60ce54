//! The processes below one process — `run`'s service tree — found without
//! looking at every process on the host.
//!
//! `run` looks for the tree's sockets on every tick while the service
//! starts. Finding the tree through the parent link of every process (a
//! `/proc/<pid>/stat` read each) made that cost grow with the host: 0.75 s
//! of CPU in 3 s beside 1,000 unrelated processes. The tree is found from
//! the top down instead, in one of two ways:
//!
//! - **children files** (`/proc/<pid>/task/<tid>/children`, kernels built
//!   with `CONFIG_PROC_CHILDREN`): each member's children, read for each of
//!   its threads (a child belongs to the thread that forked it), from the
//!   root down. Only the tree's own files are read.
//! - **a census** where the kernel has no such files: the list of pids
//!   (one directory read) each time, the parent of each pid read once, when
//!   it is first seen, and only the members' read again (to follow a member
//!   that is reparented to the root, and to notice a pid reused). A process
//!   seen outside the tree stays outside: reparenting only ever moves a
//!   process to one of its own ancestors or to init, so a process that does
//!   not descend from the root never will. The one thing this cannot see is
//!   a pid that an outside process freed and a new member took between two
//!   looks (the pid space wrapping within one tick).
//!
//! sockwatch is a child subreaper, so a daemon that double-forks stays below
//! it: its tree is every descendant, and each is found from the root.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::process;

/// The descendants of one process, kept current cheaply.
#[derive(Debug)]
pub struct Descendants {
    proc_root: PathBuf,
    root: u32,
    census: Option<Census>,
}

/// What the census remembers between looks.
#[derive(Debug, Default)]
struct Census {
    /// Every pid seen at the last look: a member, with its parent and start
    /// time, or `None` outside the tree for good.
    seen: HashMap<u32, Option<(u32, u64)>>,
    /// `stat` files read since the start, to show what a look costs.
    stat_reads: u64,
}

impl Descendants {
    /// The descendants of `root` under `proc_root` (`/proc`). Children files
    /// are used where the kernel has them.
    pub fn new(proc_root: &Path, root: u32) -> Descendants {
        let leader = proc_root
            .join(root.to_string())
            .join("task")
            .join(root.to_string())
            .join("children");
        Descendants {
            proc_root: proc_root.to_owned(),
            root,
            census: (!leader.exists()).then(Census::default),
        }
    }

    /// Every descendant now, with its parent, parents before their children
    /// where children files are read.
    pub fn members(&mut self) -> Vec<(u32, u32)> {
        match &mut self.census {
            None => self.walk_children_files(),
            Some(census) => census.look(&self.proc_root, self.root),
        }
    }

    /// How many `/proc/<pid>/stat` files the census has read (0 where
    /// children files are used).
    pub fn stat_reads(&self) -> u64 {
        self.census.as_ref().map_or(0, |c| c.stat_reads)
    }

    /// Whether children files are read, rather than a census kept.
    pub fn reads_children_files(&self) -> bool {
        self.census.is_none()
    }

    fn walk_children_files(&self) -> Vec<(u32, u32)> {
        let mut members = Vec::new();
        let mut pending = vec![self.root];
        let mut visited = HashSet::from([self.root]);
        while let Some(parent) = pending.pop() {
            for child in children(&self.proc_root, parent) {
                // A pid reused while this walk ran could loop back.
                if visited.insert(child) {
                    members.push((child, parent));
                    pending.push(child);
                }
            }
        }
        members
    }
}

/// The children of `pid`, from the children file of each of its threads.
/// Nothing when it is gone or unreadable.
fn children(proc_root: &Path, pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(proc_root.join(pid.to_string()).join("task")) else {
        return Vec::new();
    };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = fs::read_to_string(task.path().join("children")) {
            children.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    children
}

impl Census {
    /// Looks again: reads the pids, the parent of each new one and of each
    /// member, and returns the members with their parents.
    fn look(&mut self, proc_root: &Path, root: u32) -> Vec<(u32, u32)> {
        let now: HashSet<u32> = process::pids(proc_root).into_iter().collect();
        self.seen.retain(|pid, _| now.contains(pid));
        // New pids and members, each with what its stat says now.
        let mut undecided: Vec<(u32, u32, u64)> = Vec::new();
        for &pid in &now {
            let known = self.seen.get(&pid).copied();
            if known == Some(None) {
                continue; // outside, for good
            }
            self.stat_reads += 1;
            let Some((parent, start)) = process::parent_and_start_time(proc_root, pid) else {
                // Gone meanwhile.
                self.seen.remove(&pid);
                continue;
            };
            match known {
                // The same member, perhaps with a new parent (reparented to
                // the root when its own parent exited).
                Some(Some((_, was_start))) if was_start == start => {
                    self.seen.insert(pid, Some((parent, start)));
                }
                // New, or a member's pid taken by another process.
                _ => {
                    self.seen.remove(&pid);
                    undecided.push((pid, parent, start));
                }
            }
        }
        // A parent may be new too: decide until nothing more can be.
        loop {
            let before = undecided.len();
            undecided.retain(|&(pid, parent, start)| {
                let verdict = match self.seen.get(&parent) {
                    _ if parent == root => Some(Some((parent, start))),
                    Some(Some(_)) => Some(Some((parent, start))),
                    Some(None) => Some(None),
                    // No parent in this pid namespace (init, kthreadd, or a
                    // parent outside it): not below the root.
                    None if parent == 0 => Some(None),
                    // The parent is undecided yet, or gone while this look
                    // ran: the next look decides.
                    None => None,
                };
                if let Some(member) = verdict {
                    self.seen.insert(pid, member);
                }
                verdict.is_none()
            });
            if undecided.len() == before {
                break;
            }
        }
        let mut members: Vec<(u32, u32)> = self
            .seen
            .iter()
            .filter_map(|(&pid, known)| known.map(|(parent, _)| (pid, parent)))
            .collect();
        members.sort_unstable();
        members
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// A fake /proc in a temporary directory, removed on drop.
    struct FakeProc(PathBuf);

    impl FakeProc {
        fn new() -> FakeProc {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "sockwatch-fake-proc-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            FakeProc(path)
        }

        /// A process with a stat line as the kernel prints it (a command
        /// name with a space and a parenthesis, to be read past).
        fn process(&self, pid: u32, parent: u32, start: u64) {
            let dir = self.0.join(pid.to_string());
            fs::create_dir_all(dir.join("task").join(pid.to_string())).unwrap();
            let fields_5_to_21 = vec!["0"; 17].join(" ");
            fs::write(
                dir.join("stat"),
                format!("{pid} (a b) c) S {parent} {fields_5_to_21} {start} 0 0\n"),
            )
            .unwrap();
        }

        fn children(&self, pid: u32, tid: u32, children: &[u32]) {
            let dir = self
                .0
                .join(pid.to_string())
                .join("task")
                .join(tid.to_string());
            fs::create_dir_all(&dir).unwrap();
            let text: String = children.iter().map(|c| format!("{c} ")).collect();
            fs::write(dir.join("children"), text).unwrap();
        }

        fn exit(&self, pid: u32) {
            fs::remove_dir_all(self.0.join(pid.to_string())).unwrap();
        }
    }

    impl Drop for FakeProc {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn pids(members: &[(u32, u32)]) -> Vec<u32> {
        let mut pids: Vec<u32> = members.iter().map(|&(p, _)| p).collect();
        pids.sort_unstable();
        pids
    }

    #[test]
    fn children_files_are_followed_down_every_thread() {
        let proc = FakeProc::new();
        // 100 is the root; its second thread 105 forked 103.
        for (pid, parent) in [
            (100, 1),
            (101, 100),
            (102, 100),
            (103, 100),
            (104, 101),
            (200, 1),
        ] {
            proc.process(pid, parent, 1);
        }
        proc.children(100, 100, &[101, 102]);
        proc.children(100, 105, &[103]);
        proc.children(101, 101, &[104]);
        proc.children(102, 102, &[]);
        proc.children(1, 1, &[100, 200]);
        let mut tree = Descendants::new(&proc.0, 100);
        assert!(tree.reads_children_files());
        let mut members = tree.members();
        members.sort_unstable();
        assert_eq!(members, [(101, 100), (102, 100), (103, 100), (104, 101)]);
        assert_eq!(tree.stat_reads(), 0);
    }

    #[test]
    fn a_census_reads_outsiders_once() {
        let proc = FakeProc::new();
        proc.process(1, 0, 1);
        proc.process(100, 1, 10);
        // Root without a children file: a census.
        fs::remove_dir_all(proc.0.join("100/task")).unwrap();
        proc.process(101, 100, 11);
        proc.process(102, 101, 12);
        let unrelated = 1000..1200;
        for pid in unrelated.clone() {
            proc.process(pid, 1, 5);
        }
        let mut tree = Descendants::new(&proc.0, 100);
        assert!(!tree.reads_children_files());
        assert_eq!(tree.members(), [(101, 100), (102, 101)]);
        let first = tree.stat_reads();
        assert!(first >= 200, "every pid once: {first}");

        // Later looks read only the members' stat, however many others.
        for _ in 0..10 {
            assert_eq!(pids(&tree.members()), [101, 102]);
        }
        assert_eq!(tree.stat_reads() - first, 10 * 2);

        // 101 exits; its child is reparented to the root (a subreaper); a
        // new grandchild appears below it; an outsider forks.
        proc.exit(101);
        proc.process(102, 100, 12);
        proc.process(103, 102, 13);
        proc.process(1200, 1000, 20);
        assert_eq!(tree.members(), [(102, 100), (103, 102)]);

        // A member's pid taken by an outsider is no longer a member.
        proc.exit(103);
        proc.process(103, 1, 99);
        assert_eq!(tree.members(), [(102, 100)]);
    }

    #[test]
    fn the_members_of_a_real_tree() {
        // sh → (a subshell → sleep) and sh → sleep: each prints its pid.
        let mut sh = Command::new("sh")
            .args([
                "-c",
                "(sleep 30 & echo $!; wait) & echo $!; sleep 30 & echo $!; wait",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let root = sh.id();
        let mut lines = BufReader::new(sh.stdout.take().unwrap()).lines();
        let mut expected: Vec<u32> = (0..3)
            .map(|_| lines.next().unwrap().unwrap().trim().parse().unwrap())
            .collect();
        expected.sort_unstable();
        let mut tree = Descendants::new(Path::new("/proc"), root);
        // The echoes may come before the forks behind them are complete.
        let until = Instant::now() + Duration::from_secs(10);
        let mut members = pids(&tree.members());
        while members != expected && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
            members = pids(&tree.members());
        }
        for &pid in &expected {
            let _ = crate::sys::kill(pid, libc::SIGKILL);
        }
        let _ = sh.kill();
        let _ = sh.wait();
        assert_eq!(members, expected);
    }
}
