//! Telling a service manager that the supervised service is ready.
//!
//! Two protocols, both one-shot:
//! - systemd's sd_notify(3): one datagram of `KEY=VALUE` lines to the
//!   AF_UNIX socket named by `$NOTIFY_SOCKET` (a filesystem path, or an
//!   abstract name written with a leading `@`). `READY=1` and `STATUS=` go in
//!   the same datagram, so the manager never sees one without the other.
//! - s6's notification-fd: a newline written to a descriptor the supervisor
//!   handed down, which is then closed.

use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// How readiness is announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify {
    /// sd_notify to the socket at this address (`$NOTIFY_SOCKET`).
    Systemd(String),
    /// A newline on this descriptor, which is then closed.
    Fd(RawFd),
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
}

impl Notify {
    /// Parses `--notify`; without it, systemd when `$NOTIFY_SOCKET` is set.
    pub fn parse(arg: Option<&str>, notify_socket: Option<String>) -> Result<Notify, NotifyError> {
        match arg {
            None => Ok(notify_socket.map_or(Notify::None, Notify::Systemd)),
            Some("systemd") => notify_socket
                .map(Notify::Systemd)
                .ok_or(NotifyError::NoSocket),
            Some("none") => Ok(Notify::None),
            Some(other) => match other.strip_prefix("fd:").and_then(|n| n.parse().ok()) {
                Some(fd) if fd >= 0 => Ok(Notify::Fd(fd)),
                _ => Err(NotifyError::Unknown(other.to_owned())),
            },
        }
    }

    /// Announces readiness, with `status` as the human-readable state.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        match self {
            Notify::Systemd(address) => {
                let message = format!("READY=1\nSTATUS={}\n", status.replace('\n', " "));
                send_datagram(address, message.as_bytes())
            }
            Notify::Fd(fd) => {
                // SAFETY: the service manager handed this descriptor to us for
                // exactly this use; we take it over and close it after writing.
                let owned = unsafe { OwnedFd::from_raw_fd(*fd) };
                let mut file = std::fs::File::from(owned);
                file.write_all(b"\n")
            }
            Notify::None => Ok(()),
        }
    }
}

/// Sends one datagram to a `$NOTIFY_SOCKET` address.
fn send_datagram(address: &str, message: &[u8]) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    match address.strip_prefix('@') {
        Some(name) => {
            let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
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
        let socket = Some("/run/notify".to_string());
        assert_eq!(Notify::parse(None, None).unwrap(), Notify::None);
        assert_eq!(
            Notify::parse(None, socket.clone()).unwrap(),
            Notify::Systemd("/run/notify".into())
        );
        assert_eq!(
            Notify::parse(Some("fd:3"), socket.clone()).unwrap(),
            Notify::Fd(3)
        );
        assert_eq!(Notify::parse(Some("none"), socket).unwrap(), Notify::None);
        assert!(matches!(
            Notify::parse(Some("systemd"), None),
            Err(NotifyError::NoSocket)
        ));
        assert!(matches!(
            Notify::parse(Some("fd:x"), None),
            Err(NotifyError::Unknown(_))
        ));
        assert!(matches!(
            Notify::parse(Some("upstart"), None),
            Err(NotifyError::Unknown(_))
        ));
    }

    #[test]
    fn systemd_gets_ready_and_status_in_one_datagram() {
        let dir = std::env::temp_dir().join(format!("sockwatch-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        Notify::Systemd(path.to_str().unwrap().into())
            .ready("listening on tcp 0.0.0.0:80")
            .unwrap();
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=listening on tcp 0.0.0.0:80\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
