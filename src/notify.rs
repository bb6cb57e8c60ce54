//! Telling a service manager that the supervised service is ready.
//!
//! Two protocols, both one-shot:
//! - systemd's sd_notify(3): one datagram of `KEY=VALUE` lines to the
//!   AF_UNIX socket named by `$NOTIFY_SOCKET` (a filesystem path, or an
//!   abstract name written with a leading `@`). `READY=1` and `STATUS=` go in
//!   the same datagram, so the manager never sees one without the other. An
//!   empty `$NOTIFY_SOCKET` is no socket, as sd_notify reads it.
//! - s6's notification-fd: a newline written to a descriptor the supervisor
//!   handed down, which is then closed. The number comes from the command
//!   line, so it is checked and owned (see [`crate::sys::claim_fd`]) while
//!   parsing, before sockwatch opens anything that could take that number.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use crate::sys::{self, ClaimError};

/// How readiness is announced.
#[derive(Debug)]
pub enum Notify {
    /// sd_notify to the socket at this address (`$NOTIFY_SOCKET`).
    Systemd(OsString),
    /// A newline on this descriptor, which is then closed.
    Fd(OwnedFd),
    /// Nothing.
    None,
}

/// Why `--notify` could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Not `systemd`, `fd:N` or `none`.
    #[error("unknown notification '{0}' (expected systemd, fd:N or none)")]
    Unknown(String),
    /// `--notify systemd` without `$NOTIFY_SOCKET`.
    #[error("--notify systemd needs NOTIFY_SOCKET in the environment")]
    NoSocket,
    /// `--notify fd:N` where N is not a descriptor handed down to us.
    #[error("--notify fd:{fd}: {reason}")]
    Descriptor {
        /// The number given.
        fd: RawFd,
        /// What is wrong with it.
        reason: ClaimError,
    },
}

/// Readiness could not be announced.
#[derive(Debug, thiserror::Error)]
#[error("failed to notify readiness to {target}: {cause}")]
pub struct NotifyFailed {
    /// Where it was to go: the socket's address, or `descriptor N`.
    target: String,
    /// What went wrong.
    cause: io::Error,
}

impl Notify {
    /// Parses `--notify`; without it, systemd when `$NOTIFY_SOCKET` is set
    /// (and not empty). `fd:N` takes descriptor N over, so call this before
    /// opening any file.
    pub fn parse(
        arg: Option<&str>,
        notify_socket: Option<OsString>,
    ) -> Result<Notify, NotifyError> {
        let notify_socket = notify_socket.filter(|s| !s.is_empty());
        match arg {
            None => Ok(notify_socket.map_or(Notify::None, Notify::Systemd)),
            Some("systemd") => notify_socket
                .map(Notify::Systemd)
                .ok_or(NotifyError::NoSocket),
            Some("none") => Ok(Notify::None),
            Some(other) => match other.strip_prefix("fd:").and_then(|n| n.parse().ok()) {
                Some(fd) if fd >= 0 => sys::claim_fd(fd)
                    .map(Notify::Fd)
                    .map_err(|reason| NotifyError::Descriptor { fd, reason }),
                _ => Err(NotifyError::Unknown(other.to_owned())),
            },
        }
    }

    /// Announces readiness, with `status` as the human-readable state. Once:
    /// it consumes the notification (and closes the descriptor).
    pub fn ready(self, status: &str) -> Result<(), NotifyFailed> {
        match self {
            Notify::Systemd(address) => {
                let message = format!("READY=1\nSTATUS={}\n", status.replace('\n', " "));
                send_datagram(&address, message.as_bytes()).map_err(|cause| NotifyFailed {
                    target: address.to_string_lossy().into_owned(),
                    cause,
                })
            }
            Notify::Fd(fd) => {
                let target = format!("descriptor {}", fd.as_raw_fd());
                std::fs::File::from(fd)
                    .write_all(b"\n")
                    .map_err(|cause| NotifyFailed { target, cause })
            }
            Notify::None => Ok(()),
        }
    }
}

/// Sends one datagram to a `$NOTIFY_SOCKET` address.
fn send_datagram(address: &OsStr, message: &[u8]) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    match address.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            let addr = SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(message, &addr)?;
        }
        None => {
            socket.send_to(message, address)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_choices() {
        let socket = Some(OsString::from("/run/notify"));
        assert!(matches!(Notify::parse(None, None), Ok(Notify::None)));
        assert!(matches!(
            Notify::parse(None, socket.clone()),
            Ok(Notify::Systemd(path)) if path == "/run/notify"
        ));
        assert!(matches!(
            Notify::parse(Some("none"), socket),
            Ok(Notify::None)
        ));
        assert!(matches!(
            Notify::parse(Some("systemd"), None),
            Err(NotifyError::NoSocket)
        ));
        for bad in ["fd:x", "fd:-1", "fd:", "upstart"] {
            assert!(
                matches!(Notify::parse(Some(bad), None), Err(NotifyError::Unknown(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_empty_notify_socket_is_no_socket() {
        let empty = Some(OsString::new());
        assert!(matches!(
            Notify::parse(None, empty.clone()),
            Ok(Notify::None)
        ));
        assert!(matches!(
            Notify::parse(Some("systemd"), empty),
            Err(NotifyError::NoSocket)
        ));
    }

    #[test]
    fn a_descriptor_that_is_not_ours_to_take_is_named() {
        let error = Notify::parse(Some("fd:1"), None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--notify fd:1: descriptor 1 is standard input, output or error, \
             not a notification descriptor"
        );
    }

    #[test]
    fn systemd_gets_ready_and_status_in_one_datagram() {
        let dir = std::env::temp_dir().join(format!("sockwatch-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        Notify::Systemd(path.clone().into())
            .ready("listening on tcp 0.0.0.0:80")
            .unwrap();
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=listening on tcp 0.0.0.0:80\n");
        drop(receiver);
        // Nothing listens there any more: the error names the path.
        let error = Notify::Systemd(path.clone().into())
            .ready("listening")
            .unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "failed to notify readiness to {}: ",
                path.display()
            )),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
