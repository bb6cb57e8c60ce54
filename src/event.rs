//! Events: what sockwatch says, as Upstart-style text or JSON Lines.
//!
//! The text form is the contract's: the event name, then `PROTO`, `PORT`,
//! `ADDR`, `TRANSPORT`, then optional fields (`V6ONLY` for IPv6 endpoints
//! when the source knows it). It is what upstart-socket-bridge emits, so
//! the lines can be fed to `initctl emit` as they are.

use std::fmt;
use std::io::{self, Write};
use std::time::SystemTime;

use serde::Serialize;

use crate::endpoint::Endpoint;
use crate::snapshot::Listener;

/// Whether an endpoint appeared or went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `socket`: the first socket on the endpoint started listening.
    Socket,
    /// `socket-closed`: the last socket on the endpoint is gone.
    SocketClosed,
}

impl EventKind {
    /// The event's name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Socket => "socket",
            EventKind::SocketClosed => "socket-closed",
        }
    }
}

/// One change of the set of listening endpoints (or, for `list`, one member).
#[derive(Debug, Clone)]
pub struct Event {
    /// Appeared or closed.
    pub kind: EventKind,
    /// Where.
    pub endpoint: Endpoint,
    /// The sockets behind it and who holds them: the current ones, or for
    /// `socket-closed` the last ones known.
    pub listener: Listener,
    /// When sockwatch noticed.
    pub time: SystemTime,
}

/// How events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `socket PROTO=inet PORT=80 ADDR=0.0.0.0 TRANSPORT=tcp`
    Text,
    /// One JSON object per line.
    Json,
}

/// The JSON Lines object: contract field names, in a fixed order.
#[derive(Serialize)]
struct JsonEvent {
    event: &'static str,
    proto: &'static str,
    port: u16,
    addr: String,
    transport: &'static str,
    v6only: Option<bool>,
    uid: Option<u32>,
    inodes: Vec<u64>,
    source: &'static str,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comm: Option<String>,
}

impl Event {
    /// An event about `endpoint`, with its listener as it is now.
    pub fn new(kind: EventKind, endpoint: Endpoint, listener: Listener, time: SystemTime) -> Event {
        Event {
            kind,
            endpoint,
            listener,
            time,
        }
    }

    /// Writes the event as one line and flushes, so that a reader on a pipe
    /// sees it at once.
    pub fn write(&self, format: Format, out: &mut impl Write) -> io::Result<()> {
        match format {
            Format::Text => writeln!(out, "{self}")?,
            Format::Json => {
                serde_json::to_writer(&mut *out, &self.json())?;
                out.write_all(b"\n")?;
            }
        }
        out.flush()
    }

    fn json(&self) -> JsonEvent {
        JsonEvent {
            event: self.kind.as_str(),
            proto: self.endpoint.family().as_str(),
            port: self.endpoint.port,
            addr: self.endpoint.addr.to_string(),
            transport: self.endpoint.transport.as_str(),
            v6only: self.listener.v6only(),
            uid: self.listener.uid(),
            inodes: self.listener.inodes().collect(),
            source: self.listener.source().as_str(),
            time: humantime::format_rfc3339_millis(self.time).to_string(),
            pid: self.listener.owner().map(|o| o.pid),
            comm: self.listener.owner().map(|o| o.comm.clone()),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.endpoint)?;
        if let Some(v6only) = self.listener.v6only() {
            write!(f, " V6ONLY={}", u8::from(v6only))?;
        }
        if let Some(owner) = self.listener.owner() {
            write!(f, " PID={} COMM={}", owner.pid, quoted(&owner.comm))?;
        }
        Ok(())
    }
}

/// A value as the condition grammar reads it back: bare when it is one
/// plain word, else in double quotes with `"` and `\\` escaped. Command
/// names may hold spaces and quotes; event lines must stay one field each.
fn quoted(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '(' | ')'));
    if plain {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::quoted;

    #[test]
    fn values_stay_one_field() {
        assert_eq!(quoted("nginx"), "nginx");
        assert_eq!(quoted("my server"), "\"my server\"");
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quoted(""), "\"\"");
    }
}
