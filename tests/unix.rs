//! Unix-domain listeners: `socket PROTO=unix SOCKET_PATH=... TRANSPORT=...`.
//!
//! Path sockets live in a directory of the test's own; abstract names are
//! per network namespace, so the test's namespace keeps them private too.

use std::ffi::OsStr;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::each_source;
use crate::support::*;

each_source!(
    lists_listeners_of_every_unix_kind_and_nothing_else,
    watch_sees_a_unix_listener_appear_and_close,
    wait_on_a_path_and_on_a_glob,
    a_forged_proc_row_never_satisfies_a_condition,
);

/// A fresh directory for one test's sockets.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sockwatch-unix-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A unix socket of `kind` bound to `name` (a path, or a leading NUL for an
/// abstract name), listening when asked (stream and seqpacket only).
fn unix(kind: Type, name: &[u8], listen: bool) -> Socket {
    let socket = Socket::new(Domain::UNIX, kind, None).unwrap();
    let address = SockAddr::unix(OsStr::from_bytes(name)).unwrap();
    socket.bind(&address).unwrap();
    if listen {
        socket.listen(16).unwrap();
    }
    socket
}

fn bytes(path: &Path) -> Vec<u8> {
    path.as_os_str().as_bytes().to_vec()
}

fn joined(dir: &Path, name: &[u8]) -> Vec<u8> {
    let mut path = bytes(dir);
    path.push(b'/');
    path.extend_from_slice(name);
    path
}

/// The socket inode of a descriptor (`socket:[N]`).
fn inode(fd: &impl AsRawFd) -> u64 {
    fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap()
        .ino()
}

fn lists_listeners_of_every_unix_kind_and_nothing_else(source: &str) {
    let _ns = Netns::enter();
    let dir = scratch(&format!("list-{source}"));
    let d = dir.display();
    let app = joined(&dir, b"app one.sock");
    let _sockets = [
        unix(Type::STREAM, &app, true),
        unix(Type::SEQPACKET, &joined(&dir, b"seq.sock"), true),
        unix(Type::STREAM, b"\0sockwatch-abstract", true),
        unix(Type::DGRAM, &joined(&dir, b"dgram.sock"), false),
        unix(Type::DGRAM, &joined(&dir, b"\xff.sock"), false),
        // Not listeners: bound but not listening, unbound, clients.
        unix(Type::STREAM, &joined(&dir, b"bound-only.sock"), false),
        Socket::new(Domain::UNIX, Type::DGRAM, None).unwrap(),
    ];
    let _client = UnixStream::connect(OsStr::from_bytes(&app)).unwrap();
    let _pair = UnixDatagram::pair().unwrap();
    let expected = [
        format!(r#"socket PROTO=unix SOCKET_PATH="{d}/app one.sock" TRANSPORT=stream"#),
        "socket PROTO=unix SOCKET_PATH=@sockwatch-abstract TRANSPORT=stream".to_owned(),
        format!("socket PROTO=unix SOCKET_PATH={d}/seq.sock TRANSPORT=seqpacket"),
        format!("socket PROTO=unix SOCKET_PATH={d}/dgram.sock TRANSPORT=dgram"),
        format!(r#"socket PROTO=unix SOCKET_PATH="{d}/\xff.sock" TRANSPORT=dgram"#),
    ];
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    let out = run(source, &["list"]);
    assert_eq!(out.code(), 0, "{out}");
    assert_lines(&out.lines(), &expected);
    let out = run(source, &["list", "socket PROTO=unix"]);
    assert_lines(&out.lines(), &expected);
    let out = run(
        source,
        &[
            "list",
            "socket TRANSPORT=seqpacket or socket unix TRANSPORT=dgram",
        ],
    );
    assert_lines(&out.lines(), &expected[2..]);
    let out = run(source, &["list", "socket PROTO=inet*"]);
    assert_lines(&out.lines(), &[]);
    let _ = fs::remove_dir_all(&dir);
}

fn watch_sees_a_unix_listener_appear_and_close(source: &str) {
    let _ns = Netns::enter();
    let dir = scratch(&format!("watch-{source}"));
    let path = joined(&dir, b"app.sock");
    let mut watch = Running::start_watching(
        source,
        &["watch", "--interval", "20ms", "socket PROTO=unix"],
    );
    let listener = unix(Type::STREAM, &path, true);
    let line = format!(
        "PROTO=unix SOCKET_PATH={}/app.sock TRANSPORT=stream",
        dir.display()
    );
    assert_eq!(watch.line(), format!("socket {line}"));
    let abstract_dgram = unix(Type::DGRAM, b"\0sockwatch-watch", false);
    assert_eq!(
        watch.line(),
        "socket PROTO=unix SOCKET_PATH=@sockwatch-watch TRANSPORT=dgram"
    );
    drop(listener);
    assert_eq!(watch.line(), format!("socket-closed {line}"));
    drop(abstract_dgram);
    assert_eq!(
        watch.line(),
        "socket-closed PROTO=unix SOCKET_PATH=@sockwatch-watch TRANSPORT=dgram"
    );
    let _ = fs::remove_dir_all(&dir);
}

fn wait_on_a_path_and_on_a_glob(source: &str) {
    let _ns = Netns::enter();
    let dir = scratch(&format!("wait-{source}"));
    let d = dir.display();
    let condition = format!("socket SOCKET_PATH={d}/later.sock");
    // Returns once the wait has its first answer (not yet): what follows
    // happens while it waits.
    let wait = Running::start_watching(source, &["wait", "--timeout", "10s", &condition]);
    let _later = unix(Type::STREAM, &joined(&dir, b"later.sock"), true);
    let (status, stderr) = wait.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let _seq = unix(Type::SEQPACKET, &joined(&dir, b"db.sock"), true);
    let glob = format!("socket SOCKET_PATH={d}/*.sock TRANSPORT=seqpacket");
    let out = run(source, &["wait", "--timeout", "5s", &glob]);
    assert_eq!(out.code(), 0, "{out}");
    let none = format!("socket SOCKET_PATH={d}/*.socket");
    let out = run(source, &["wait", "--timeout", "300ms", &none]);
    assert_eq!(out.code(), 124, "{out}");
    let _ = fs::remove_dir_all(&dir);
}

/// An abstract name holding a newline and a whole fake line: /proc/net/unix
/// prints it raw, so the fake line reads as a listener on `forged.sock`.
/// Netlink sees one socket with an odd name; /proc's row is never taken as
/// true, whether it copies a real socket's inode or names one nobody holds.
fn a_forged_proc_row_never_satisfies_a_condition(source: &str) {
    let _ns = Netns::enter();
    // Short: the whole forged line must fit in a socket name (108 bytes).
    let dir = std::env::temp_dir().join(format!("swf-{source}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    // A socket file is there, but nothing listens on it.
    let _file = unix(Type::STREAM, &joined(&dir, b"forged.sock"), false);
    let other = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    let mut forgers = Vec::new();
    for fake_inode in [inode(&other), 4_000_000_000] {
        let name =
            format!("\0x{fake_inode}\n0: 00000002 0 00010000 0001 01 {fake_inode} {d}/forged.sock");
        forgers.push(unix(Type::STREAM, name.as_bytes(), true));
    }
    let condition = format!("socket SOCKET_PATH={d}/forged.sock");
    let out = run(source, &["wait", "--timeout", "500ms", &condition]);
    assert_eq!(out.code(), 124, "{out}");
    let out = run(source, &["-v", "list", &condition]);
    assert_lines(&out.lines(), &[]);
    if source == "proc" {
        assert!(
            out.stderr
                .contains("read from /proc/net/unix could not be verified"),
            "{out}"
        );
    }
    // Paths only: the forgers' abstract names do end in forged.sock.
    let any = "socket SOCKET_PATH=/*/forged.sock";
    let out = run(source, &["wait", "--timeout", "300ms", any]);
    assert_eq!(out.code(), 124, "{out}");
    if source == "netlink" {
        let out = run(source, &["list"]);
        assert_eq!(out.lines().len(), 2, "the two forgers, as bound: {out}");
        assert!(
            out.lines()
                .iter()
                .all(|l| l.starts_with(r#"socket PROTO=unix SOCKET_PATH="@x"#)
                    && l.contains(r"\n0: ")),
            "{out}"
        );
    }
    let _ = fs::remove_dir_all(&dir);
}

/// Names are reported as bound, byte for byte, in every form: a space and a
/// newline quoted in the text, bytes that are not UTF-8 as `\xNN`, and the
/// hook environment verbatim. (/proc cannot print such names faithfully.)
#[test]
fn names_keep_every_byte_in_text_json_and_hooks() {
    let _ns = Netns::enter();
    let dir = scratch("names");
    let d = dir.display();
    let log = dir.join("hook.log");
    let mut watch = Running::start_watching(
        "netlink",
        &[
            "watch",
            "--no-initial",
            "--interval",
            "20ms",
            "socket PROTO=unix",
            "--exec",
            "sh",
            "-c",
            r#"printf '%s|%s|%s|%s\n' "$PROTO" "$SOCKET_PATH" "$TRANSPORT" "${PORT-unset}" >> "$0""#,
            log.to_str().unwrap(),
        ],
    );
    let odd = joined(&dir, b"a b\nc\xff.sock");
    let _odd = unix(Type::STREAM, &odd, true);
    let text = format!(r#"socket PROTO=unix SOCKET_PATH="{d}/a b\nc\xff.sock" TRANSPORT=stream"#);
    assert_eq!(watch.line(), text);
    let out = run("netlink", &["list", "--json"]);
    let event: serde_json::Value = serde_json::from_str(out.lines()[0]).unwrap();
    assert_eq!(event["proto"], "unix");
    assert_eq!(event["transport"], "stream");
    assert_eq!(
        event["path"],
        format!(r#""{d}/a b\nc\xff.sock""#),
        "not UTF-8"
    );
    assert!(
        event["port"].is_null() && event["addr"].is_null(),
        "{event}"
    );
    let until = Instant::now() + PROMPTLY;
    let logged = loop {
        let logged = fs::read(&log).unwrap_or_default();
        if !logged.is_empty() || Instant::now() > until {
            break logged;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut expected = b"unix|".to_vec();
    expected.extend_from_slice(&odd);
    expected.extend_from_slice(b"|stream|unset\n");
    assert_eq!(
        String::from_utf8_lossy(&logged),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(logged, expected);
    let _ = fs::remove_dir_all(&dir);
}

/// A listener whose socket file was unlinked or replaced still listens, but
/// no client reaches it by that path: `SOCKET_PATH=` no longer holds. Two
/// listeners on one name are one endpoint.
#[test]
fn a_stale_path_does_not_satisfy_socket_path() {
    let _ns = Netns::enter();
    let dir = scratch("stale");
    let path = dir.join("app.sock");
    let condition = format!("socket SOCKET_PATH={}", path.display());
    let line = format!(
        "socket PROTO=unix SOCKET_PATH={} TRANSPORT=stream",
        path.display()
    );
    let _old = unix(Type::STREAM, &bytes(&path), true);
    let out = run("netlink", &["wait", "--timeout", "5s", &condition]);
    assert_eq!(out.code(), 0, "{out}");
    fs::remove_file(&path).unwrap();
    let out = run("netlink", &["list"]);
    assert_lines(&out.lines(), &[&line]);
    let out = run("netlink", &["wait", "--timeout", "300ms", &condition]);
    assert_eq!(out.code(), 124, "unlinked: {out}");
    let out = run("netlink", &["wait", "--timeout", "5s", "socket PROTO=unix"]);
    assert_eq!(out.code(), 0, "it still listens: {out}");
    // Replaced by a socket that does not listen.
    let replaced = unix(Type::STREAM, &bytes(&path), false);
    let out = run("netlink", &["wait", "--timeout", "300ms", &condition]);
    assert_eq!(out.code(), 124, "replaced: {out}");
    drop(replaced);
    fs::remove_file(&path).unwrap();
    let _new = unix(Type::STREAM, &bytes(&path), true);
    let out = run("netlink", &["wait", "--timeout", "5s", &condition]);
    assert_eq!(out.code(), 0, "{out}");
    let out = run("netlink", &["list"]);
    assert_lines(&out.lines(), &[&line]);
    let _ = fs::remove_dir_all(&dir);
}

/// `--processes` names the holder of a unix listener.
#[test]
fn processes_name_the_holder_of_a_unix_listener() {
    let _ns = Netns::enter();
    let _listener = unix(Type::STREAM, b"\0sockwatch-processes", true);
    let out = run("netlink", &["list", "--processes"]);
    assert_eq!(out.code(), 0, "{out}");
    let expected = format!(
        "socket PROTO=unix SOCKET_PATH=@sockwatch-processes TRANSPORT=stream PID={}",
        std::process::id()
    );
    assert!(out.stdout.starts_with(&expected), "{out}");
}

/// `run` is ready when a unix-only service listens.
#[test]
fn run_is_ready_when_a_unix_only_service_listens() {
    let _ns = Netns::enter();
    let dir = scratch("run");
    let notify = dir.join("notify");
    let socket = UnixDatagram::bind(&notify).unwrap();
    let path = dir.join("service.sock");
    let marker = dir.join("listening");
    let code = format!(
        r#"
import socket, time
time.sleep(0.3)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("{}"); s.listen()
open("{}", "w").close()
time.sleep(30)
"#,
        path.display(),
        marker.display()
    );
    let mut command = Command::new(BIN);
    command
        .args(["run", "--interval", "20ms", "--", "python3", "-c", &code])
        .env("NOTIFY_SOCKET", &notify);
    let mut run = Running::spawn(command);
    socket.set_read_timeout(Some(PROMPTLY)).unwrap();
    let mut buf = [0u8; 1024];
    let n = socket.recv(&mut buf).expect("no notification");
    assert!(marker.exists(), "READY came before the service listened");
    assert_eq!(
        String::from_utf8_lossy(&buf[..n]),
        format!(
            "READY=1\nSTATUS=listening on unix stream {}\n",
            path.display()
        )
    );
    run.signal(libc::SIGTERM);
    let _ = fs::remove_dir_all(&dir);
}

/// Both sources give the same answer on honest names.
#[test]
fn both_sources_agree_on_honest_names() {
    let _ns = Netns::enter();
    let dir = scratch("agree");
    let _sockets = [
        unix(Type::STREAM, &joined(&dir, b"web.sock"), true),
        unix(Type::STREAM, &joined(&dir, b"with space.sock"), true),
        unix(Type::SEQPACKET, b"\0sockwatch-agree", true),
        unix(Type::DGRAM, &joined(&dir, b"log"), false),
    ];
    let netlink = run("netlink", &["list"]);
    let proc = run("proc", &["list"]);
    assert_eq!(netlink.code(), 0, "{netlink}");
    assert_eq!(netlink.lines().len(), 4, "{netlink}");
    assert_lines(&proc.lines(), &netlink.lines());
    let condition = format!("socket SOCKET_PATH={}/* TRANSPORT=stream", dir.display());
    let netlink = run("netlink", &["list", &condition]);
    let proc = run("proc", &["list", &condition]);
    assert_eq!(netlink.lines().len(), 2, "{netlink}");
    assert_lines(&proc.lines(), &netlink.lines());
    let _ = fs::remove_dir_all(&dir);
}

/// A name bound relative to its owner's working directory cannot be
/// checked: a `SOCKET_PATH` condition on it neither holds nor fails, and
/// `-v` says why.
#[test]
fn a_relative_name_is_unknown_and_said_under_verbose() {
    let _ns = Netns::enter();
    let dir = scratch("relative");
    let marker = dir.join("listening");
    let code = format!(
        r#"
import socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("rel.sock"); s.listen()
open("{}", "w").close()
time.sleep(30)
"#,
        marker.display()
    );
    let mut service = Command::new("python3")
        .args(["-c", &code])
        .current_dir(&dir)
        .spawn()
        .unwrap();
    let until = Instant::now() + PROMPTLY;
    while !marker.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = run("netlink", &["list"]);
    assert_lines(
        &out.lines(),
        &["socket PROTO=unix SOCKET_PATH=rel.sock TRANSPORT=stream"],
    );
    let out = run(
        "netlink",
        &[
            "-v",
            "wait",
            "--timeout",
            "300ms",
            "socket SOCKET_PATH=rel.sock",
        ],
    );
    assert_eq!(out.code(), 124, "{out}");
    assert!(
        out.stderr
            .contains("cannot check that rel.sock still leads to its listener"),
        "{out}"
    );
    let out = run(
        "netlink",
        &[
            "wait",
            "--gone",
            "--timeout",
            "300ms",
            "socket SOCKET_PATH=rel.sock",
        ],
    );
    assert_eq!(out.code(), 124, "unknown is not gone either: {out}");
    let _ = service.kill();
    let _ = service.wait();
    let _ = fs::remove_dir_all(&dir);
}

/// The exporter labels a unix listener with its `path`.
#[test]
fn export_labels_a_unix_listener_with_its_path() {
    let _ns = Netns::enter();
    let dir = scratch("export");
    let file = dir.join("sockwatch.prom");
    let mut exporter = Running::start(
        "netlink",
        &[
            "export",
            "--textfile",
            file.to_str().unwrap(),
            "--interval",
            "20ms",
        ],
    );
    let _listener = unix(Type::STREAM, b"\0sockwatch-export", true);
    let series =
        r#"sockwatch_listening{proto="unix",path="@sockwatch-export",transport="stream"} 1"#;
    let until = Instant::now() + PROMPTLY;
    let mut text = String::new();
    while Instant::now() < until {
        text = fs::read_to_string(&file).unwrap_or_default();
        if text.lines().any(|l| l == series) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(text.lines().any(|l| l == series), "{text}");
    exporter.signal(libc::SIGTERM);
    let _ = fs::remove_dir_all(&dir);
}
