//! A `--proc-root` tree is input: whatever sits under its `net/` and `sys/`
//! (a FIFO, a device that never ends, a huge sparse file, bytes that are no
//! table), every command ends or speaks within a bounded time, says which
//! file it could not read without `-v`, and never reports "nothing listens"
//! for a table it could not read.
//!
//! Each test builds a tree in a temporary directory: regular copies of this
//! test's own `/proc/thread-self/net` tables (with one listener in them),
//! then one hostile entry.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

/// How long a command may take on a hostile tree before the test fails:
/// long enough for a slow shared machine, far too short to read a device
/// that never ends or a gigabyte.
const BOUNDED: Duration = Duration::from_secs(2);

/// The one listener the copied tables hold.
const LISTENER: &str = "socket PROTO=inet PORT=8080 ADDR=127.0.0.1 TRANSPORT=tcp";

/// A fake /proc: copies of the real tables, removed on drop.
struct Tree {
    root: PathBuf,
}

impl Tree {
    /// Copies this thread's network namespace's tables (enter one and
    /// listen first) and `bindv6only`.
    fn copy_of_this_namespace() -> Tree {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "sockwatch-proc-root-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("net")).unwrap();
        fs::create_dir_all(root.join("sys/net/ipv6")).unwrap();
        for table in ["tcp", "tcp6", "udp", "udp6"] {
            let text = fs::read(format!("/proc/thread-self/net/{table}")).unwrap();
            fs::write(root.join("net").join(table), text).unwrap();
        }
        fs::write(root.join("sys/net/ipv6/bindv6only"), "0\n").unwrap();
        Tree { root }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    fn arg(&self) -> String {
        self.root.display().to_string()
    }

    /// Replaces `relative` with a symbolic link to `target`.
    fn link(&self, relative: &str, target: &str) -> String {
        let path = self.path(relative);
        let _ = fs::remove_file(&path);
        std::os::unix::fs::symlink(target, &path).unwrap();
        path.display().to_string()
    }

    /// Replaces `relative` with a FIFO that nobody writes.
    fn fifo(&self, relative: &str) -> String {
        let path = self.path(relative);
        let _ = fs::remove_file(&path);
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path, only read by mkfifo.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
        path.display().to_string()
    }

    /// Replaces `relative` with `text`, then makes it `len` bytes long
    /// (sparse: holes read as zeros).
    fn sparse(&self, relative: &str, text: &str, len: u64) -> String {
        let path = self.path(relative);
        let _ = fs::remove_file(&path);
        fs::write(&path, text).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len)
            .unwrap();
        path.display().to_string()
    }

    /// Replaces `relative` with `text`.
    fn write(&self, relative: &str, text: &str) -> String {
        let path = self.path(relative);
        let _ = fs::remove_file(&path);
        fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// `sockwatch --source proc --proc-root TREE ARGS...`.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = command("proc", &["--proc-root", &self.arg()]);
        command.args(args);
        command
    }

    /// Runs a command on the tree; it must end within `deadline`.
    fn run_within(&self, deadline: Duration, args: &[&str]) -> (Output, Duration) {
        let start = Instant::now();
        let out = finish(self.command(args), deadline);
        (out, start.elapsed())
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A namespace with one listener, and a tree copied from it.
fn namespace_and_tree() -> (Netns, socket2::Socket, Tree) {
    let ns = Netns::enter();
    let web = tcp("127.0.0.1:8080");
    let tree = Tree::copy_of_this_namespace();
    (ns, web, tree)
}

#[test]
fn a_copied_tree_is_read_like_proc() {
    let (_ns, _web, tree) = namespace_and_tree();
    let (out, _) = tree.run_within(PROMPTLY, &["list"]);
    assert_eq!(out.code(), 0, "{out}");
    assert_lines(&out.lines(), &[LISTENER]);
    assert!(out.stderr.is_empty(), "{out}");
}

#[test]
fn a_table_that_is_a_device_is_refused_at_once() {
    let (_ns, _web, tree) = namespace_and_tree();
    let zero = tree.link("net/tcp", "/dev/zero");
    let random = tree.link("net/udp", "/dev/urandom");
    for (args, culprit) in [
        (&["list", "socket TRANSPORT=tcp"][..], &zero),
        (&["list", "socket TRANSPORT=udp"][..], &random),
        (&["list"][..], &zero),
        (&["watch"][..], &zero),
        (&["wait", "--timeout", "30s", "socket PORT=8080"][..], &zero),
    ] {
        let (out, took) = tree.run_within(BOUNDED, args);
        assert_eq!(out.code(), 1, "{args:?} took {took:?}: {out}");
        assert!(
            out.stderr
                .contains(&format!("refusing {culprit}: it is a character device")),
            "{args:?}: {out}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: {out}");
    }
}

#[test]
fn a_table_that_is_a_fifo_never_blocks() {
    let (_ns, _web, tree) = namespace_and_tree();
    let fifo = tree.fifo("net/tcp");
    for args in [
        &["list"][..],
        &["watch", "--interval", "20ms"][..],
        &["wait", "--timeout", "1s", "socket PORT=8080"][..],
    ] {
        let (out, took) = tree.run_within(BOUNDED, args);
        assert_eq!(out.code(), 1, "{args:?} took {took:?}: {out}");
        assert!(
            out.stderr.contains(&format!(
                "refusing {fifo}: it is a FIFO, not a regular file"
            )),
            "{args:?}: {out}"
        );
    }
}

#[test]
fn a_huge_sparse_table_is_read_within_bounds() {
    let (_ns, _web, tree) = namespace_and_tree();
    // No header: refused at its first line.
    let tcp = tree.sparse("net/tcp", "", 1 << 30);
    let (out, took) = tree.run_within(BOUNDED, &["list"]);
    assert_eq!(out.code(), 1, "took {took:?}: {out}");
    assert!(
        out.stderr.contains(&format!(
            "{tcp} is not a socket table: it does not start with the kernel's header line"
        )),
        "{out}"
    );
    // A real table, then a gigabyte of zeros: read up to 64 MiB (each of
    // list's few tries), then an error. A debug build scans 64 MiB in about
    // 0.15 s; the bound leaves room for a loaded machine.
    let real = fs::read_to_string(tree.path("net/udp")).unwrap();
    let udp = tree.sparse("net/udp", &real, 1 << 30);
    let (out, took) = tree.run_within(BOUNDED * 3, &["list"]);
    assert_eq!(out.code(), 1, "took {took:?}: {out}");
    assert!(
        out.stderr
            .contains(&format!("stopped reading {udp} after 67108864 bytes")),
        "{out}"
    );
}

#[test]
fn an_unparseable_table_is_said_by_every_command() {
    let (_ns, _web, tree) = namespace_and_tree();
    let tcp = tree.write("net/tcp", "hello\nworld\n");
    let why =
        format!("{tcp} is not a socket table: it does not start with the kernel's header line");

    let (out, _) = tree.run_within(BOUNDED, &["list"]);
    assert_eq!(out.code(), 1, "not 'nothing listens': {out}");
    assert!(
        out.stderr
            .contains(&format!("could not read every socket table: {why}")),
        "{out}"
    );

    // watch says so once, without -v, and keeps trying.
    let mut watch = Running::spawn(tree.command(&["watch", "--interval", "20ms"]));
    let said = watch.stderr_until(&why);
    assert!(
        said.contains("nothing is reported until tcp can be read"),
        "{said}"
    );
    watch.still_running_after(Duration::from_millis(300));
    watch.signal(libc::SIGTERM);
    let (_, rest) = watch.finish();
    assert!(!rest.contains(&why), "said more than once: {rest}");

    // wait --timeout names the table, not the condition.
    let (out, took) = tree.run_within(
        BOUNDED * 2,
        &["wait", "--timeout", "1s", "socket PORT=8080"],
    );
    assert_eq!(out.code(), 124, "took {took:?}: {out}");
    assert!(
        out.stderr.contains(&format!(
            "could not read every socket table ({why}), so whether 'socket PORT=8080' holds is unknown"
        )),
        "{out}"
    );
    assert!(!out.stderr.contains("waiting for"), "{out}");

    // A header and rows that are all garbage is no table either.
    let udp = tree.write(
        "net/udp",
        "   sl  local_address rem_address   st\n   0: garbage\n   1: more garbage\n",
    );
    let (out, _) = tree.run_within(BOUNDED, &["list", "socket TRANSPORT=udp"]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr.contains(&format!(
            "{udp} is not a socket table: none of its 2 line(s) after the header can be read"
        )),
        "{out}"
    );
}

#[test]
fn a_long_line_is_skipped_and_the_rest_read() {
    let (_ns, _web, tree) = namespace_and_tree();
    let real = fs::read_to_string(tree.path("net/tcp")).unwrap();
    let (header, rows) = real.split_once('\n').unwrap();
    tree.write(
        "net/tcp",
        &format!("{header}\n   9: {}\n{rows}", "0".repeat(1 << 20)),
    );
    let (out, _) = tree.run_within(BOUNDED, &["list", "socket TRANSPORT=tcp"]);
    assert_eq!(out.code(), 0, "{out}");
    assert_lines(&out.lines(), &[LISTENER]);
}

#[test]
fn a_bindv6only_that_blocks_or_never_ends_is_refused() {
    let (_ns, _web, tree) = namespace_and_tree();
    let path = "sys/net/ipv6/bindv6only";
    for kind in ["a FIFO", "a character device"] {
        let made = match kind {
            "a FIFO" => tree.fifo(path),
            _ => tree.link(path, "/dev/zero"),
        };
        let (out, took) = tree.run_within(BOUNDED, &["list"]);
        assert_eq!(out.code(), 0, "took {took:?}: {out}");
        assert_lines(&out.lines(), &[LISTENER]);
        assert!(
            out.stderr.contains(&format!(
                "refusing {made}: it is {kind}, not a regular file; taking net.ipv6.bindv6only as 0"
            )),
            "{out}"
        );
    }
    let made = tree.sparse(path, "1\n", 1 << 30);
    let (out, took) = tree.run_within(BOUNDED, &["list"]);
    assert_eq!(out.code(), 0, "took {took:?}: {out}");
    assert!(
        out.stderr
            .contains(&format!("{made} is not what the kernel writes there")),
        "{out}"
    );
}
