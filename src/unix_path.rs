//! Whether a unix socket's path still leads to it.
//!
//! The kernel keeps the name a socket was bound to for as long as the
//! socket lives, whatever becomes of the file: `rm /run/app.sock` (a second
//! instance starting, a tmp cleaner) or a new socket bound at the same path
//! leaves the old listener with a name no client can reach it by. So a
//! `SOCKET_PATH` condition holds only while `stat(path)` is the socket file
//! the listener created, which netlink reports (`UNIX_DIAG_VFS`: device and
//! inode). Where that cannot be checked — a relative name (bound against its
//! owner's working directory), a directory we may not search, a source that
//! does not report the file — the answer is unknown, never yes.
//!
//! The path is looked up in sockwatch's own mount namespace.
//!
//! /proc/net/unix does not print the file's identity: there, a path that is
//! a socket file counts as leading to the listener, so an unlinked path is
//! seen but a path replaced by another socket file is not.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::condition::Truth;
use crate::endpoint::{Endpoint, Listener, Vfs};

/// Whether `endpoint`'s name leads to one of `listener`'s sockets: `Yes` for
/// abstract names (no file) and inet endpoints.
pub fn leads_to(endpoint: &Endpoint, listener: &Listener) -> Truth {
    let Some(name) = endpoint.unix_name() else {
        return Truth::Yes;
    };
    let Some(bytes) = name.path_bytes() else {
        return Truth::Yes;
    };
    let path = Path::new(OsStr::from_bytes(&bytes));
    check(path, listener.sockets().iter().map(|s| s.vfs))
}

/// The answer for `path` and the files the sockets were bound to.
fn check(path: &Path, files: impl Iterator<Item = Option<Vfs>>) -> Truth {
    if !path.is_absolute() {
        return Truth::Unknown;
    }
    let files: Vec<Option<Vfs>> = files.collect();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Truth::No,
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Truth::No,
        Err(_) => return Truth::Unknown,
    };
    if !meta.file_type().is_socket() {
        return Truth::No;
    }
    if files.iter().any(Option::is_none) {
        // A source that does not say which file (/proc): a socket file is
        // all that can be checked.
        return Truth::Yes;
    }
    let here = Vfs {
        major: dev_major(meta.dev()),
        minor: dev_minor(meta.dev()),
        ino: meta.ino(),
    };
    Truth::from(files.contains(&Some(here)))
}

/// glibc's `major()`: the device number as `stat` gives it.
fn dev_major(dev: u64) -> u32 {
    (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)) as u32
}

/// glibc's `minor()`.
fn dev_minor(dev: u64) -> u32 {
    ((dev & 0xff) | ((dev >> 12) & !0xff)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_split_as_glibc_does() {
        // makedev(259, 3) and makedev(8, 300000)
        assert_eq!((dev_major(0x10303), dev_minor(0x10303)), (259, 3));
        let dev: u64 = ((300000u64 & !0xff) << 12) | (8 << 8) | (300000 & 0xff);
        assert_eq!((dev_major(dev), dev_minor(dev)), (8, 300000));
    }

    #[test]
    fn what_cannot_be_checked_is_unknown() {
        let vfs = Some(Vfs {
            major: 0,
            minor: 0,
            ino: 1,
        });
        assert_eq!(
            check(Path::new("relative.sock"), [vfs].into_iter()),
            Truth::Unknown
        );
        assert_eq!(
            check(Path::new("/nonexistent/x.sock"), [None].into_iter()),
            Truth::No,
            "gone, whatever the source"
        );
        assert_eq!(
            check(Path::new("/nonexistent/x.sock"), [vfs].into_iter()),
            Truth::No
        );
        assert_eq!(
            check(Path::new("/"), [vfs].into_iter()),
            Truth::No,
            "not a socket"
        );
    }

    #[test]
    fn a_path_leads_to_the_socket_whose_file_it_is() {
        let dir = std::env::temp_dir().join(format!("unix-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let own = Vfs {
            major: dev_major(meta.dev()),
            minor: dev_minor(meta.dev()),
            ino: meta.ino(),
        };
        let other = Vfs {
            ino: own.ino + 1,
            ..own
        };
        assert_eq!(check(&path, [Some(own)].into_iter()), Truth::Yes);
        assert_eq!(check(&path, [Some(other)].into_iter()), Truth::No);
        assert_eq!(
            check(&path, [Some(other), Some(own)].into_iter()),
            Truth::Yes,
            "one of the endpoint's sockets"
        );
        assert_eq!(check(&path, [None].into_iter()), Truth::Yes, "/proc");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
