//! Roots that are input, not the kernel's: what a `--proc-root` tree may
//! hold under `net/` and `sys/`. Each read ends promptly with an error
//! naming the path, whatever sits there: a FIFO (opening one for reading
//! blocks until a writer comes), a device that never ends, a huge sparse
//! file, bytes that are no table.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proc_fallback::{Error, MAX_TABLE_BYTES, Reader, Table, bindv6only};

/// A scratch root under the temporary directory, removed on drop.
struct Root(PathBuf);

impl Root {
    fn new(name: &str) -> Root {
        let path = std::env::temp_dir().join(format!(
            "proc-fallback-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(path.join("net")).unwrap();
        fs::create_dir_all(path.join("sys/net/ipv6")).unwrap();
        Root(path)
    }

    fn file(&self, relative: &str) -> PathBuf {
        self.0.join(relative)
    }

    fn fifo(&self, relative: &str) {
        let path = std::ffi::CString::new(self.file(relative).as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo reads it only.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    }

    fn symlink(&self, relative: &str, target: &str) {
        std::os::unix::fs::symlink(target, self.file(relative)).unwrap();
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Reads `table` under `root`, failing the test if it takes more than
/// `within`.
fn read_within(root: &Path, table: Table, within: Duration) -> Result<usize, Error> {
    let start = Instant::now();
    let mut out = Vec::new();
    let result = Reader::new(root).read(table, &mut out);
    assert!(
        start.elapsed() < within,
        "reading {} took {:?}",
        table.file_name(),
        start.elapsed()
    );
    result.map(|_| out.len())
}

const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

#[test]
fn fifos_and_devices_are_refused_without_blocking() {
    let root = Root::new("special");
    root.fifo("net/tcp");
    root.symlink("net/tcp6", "/dev/zero");
    root.symlink("net/udp", "/dev/urandom");
    fs::create_dir(root.file("net/udp6")).unwrap();
    for (table, kind) in [
        (Table::Tcp, "a FIFO"),
        (Table::Tcp6, "a character device"),
        (Table::Udp, "a character device"),
        (Table::Udp6, "a directory"),
    ] {
        let error = read_within(&root.0, table, Duration::from_secs(1)).unwrap_err();
        assert!(
            matches!(&error, Error::NotAFile { kind: k, .. } if *k == kind),
            "{error}"
        );
        let message = error.to_string();
        assert!(
            message.contains(
                &root
                    .file("net")
                    .join(table.file_name())
                    .display()
                    .to_string()
            ),
            "{message}"
        );
    }
}

#[test]
fn a_huge_sparse_file_is_not_read_whole() {
    let root = Root::new("sparse");
    // No header: refused at its first line.
    fs::File::create(root.file("net/tcp"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let error = read_within(&root.0, Table::Tcp, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(error, Error::Malformed { .. }), "{error}");
    assert!(error.to_string().contains("header"), "{error}");
    // A header, then a gigabyte of zeros: read up to the bound, then an
    // error.
    fs::write(root.file("net/udp"), HEADER).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(root.file("net/udp"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let error = read_within(&root.0, Table::Udp, Duration::from_secs(5)).unwrap_err();
    assert!(
        matches!(error, Error::TooLarge { limit, .. } if limit == MAX_TABLE_BYTES),
        "{error}"
    );
}

#[test]
fn unparseable_tables_are_errors_not_empty_tables() {
    let root = Root::new("unparseable");
    fs::write(root.file("net/tcp"), "hello\nworld\n").unwrap();
    fs::write(
        root.file("net/udp"),
        format!("{HEADER}   0: garbage\n   1: more garbage\n"),
    )
    .unwrap();
    fs::write(root.file("net/udp6"), HEADER).unwrap();
    let error = read_within(&root.0, Table::Tcp, Duration::from_secs(1)).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("does not start with the kernel's header"),
        "{error}"
    );
    let error = read_within(&root.0, Table::Udp, Duration::from_secs(1)).unwrap_err();
    assert!(
        error.to_string().contains("none of its 2 line(s)"),
        "{error}"
    );
    assert_eq!(
        read_within(&root.0, Table::Udp6, Duration::from_secs(1)).unwrap(),
        0,
        "a header alone is a table with nothing in it"
    );
}

#[test]
fn bindv6only_reads_a_few_bytes_of_a_regular_file() {
    let root = Root::new("bindv6only");
    let path = "sys/net/ipv6/bindv6only";
    fs::write(root.file(path), "1\n").unwrap();
    assert!(bindv6only(&root.0).unwrap());
    fs::write(root.file(path), "0\n").unwrap();
    assert!(!bindv6only(&root.0).unwrap());
    fs::File::create(root.file(path))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let error = bindv6only(&root.0).unwrap_err();
    assert!(matches!(error, Error::Malformed { .. }), "{error}");
    fs::remove_file(root.file(path)).unwrap();
    root.symlink(path, "/dev/zero");
    let error = bindv6only(&root.0).unwrap_err();
    assert!(matches!(error, Error::NotAFile { .. }), "{error}");
    fs::remove_file(root.file(path)).unwrap();
    root.fifo(path);
    let start = Instant::now();
    let error = bindv6only(&root.0).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(
        matches!(error, Error::NotAFile { kind: "a FIFO", .. }),
        "{error}"
    );
    assert!(error.to_string().contains(path), "{error}");
}
