//! Events: what sockwatch says, as Upstart-style text or JSON Lines.
//!
//! The text form is the contract's: the event name, then `PROTO`, `PORT`,
//! `ADDR`, `TRANSPORT` (for unix sockets `PROTO`, `SOCKET_PATH`,
//! `TRANSPORT`), then optional fields (`V6ONLY` for IPv6 endpoints
//! when the source knows it). It is what upstart-socket-bridge emits, so
//! the lines can be fed to `initctl emit` as they are.

use std::fmt;
use std::io::{self, Write};
use std::time::SystemTime;

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::endpoint::Endpoint;
use crate::endpoint::Listener;
use crate::field::{Field, Value};

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

/// The JSON Lines object: `event`, every field of the table in its order
/// (`null` where unknown or not applicable: a key is never absent), then
/// `uid`, `inodes`, `source`, `time`.
struct JsonEvent<'a>(&'a Event);

/// The JSON `netns` object: what identifies a namespace from outside, in
/// this order.
#[derive(Serialize)]
struct JsonNetns<'a> {
    name: Option<serde_json::Value>,
    inode: Option<u64>,
    cookie: Option<u64>,
    container: Option<&'a str>,
}

impl Serialize for JsonEvent<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.0;
        let mut map = serializer.serialize_map(Some(Field::ALL.len() + 5))?;
        map.serialize_entry("event", event.kind.as_str())?;
        for field in Field::ALL {
            if field == Field::Netns {
                // More than its name: what identifies it from outside.
                let netns = event.endpoint.netns.as_ref().map(|tag| JsonNetns {
                    name: event.value(Field::Netns).map(|v| v.json()),
                    inode: tag.info.inode,
                    cookie: tag.info.cookie,
                    container: tag.info.container.as_deref(),
                });
                map.serialize_entry(field.json_name(), &netns)?;
                continue;
            }
            let value = event.value(field).map(|v| v.json());
            map.serialize_entry(field.json_name(), &value)?;
        }
        map.serialize_entry("uid", &event.listener.uid())?;
        map.serialize_entry("inodes", &event.listener.inodes().collect::<Vec<u64>>())?;
        map.serialize_entry("source", event.listener.source().as_str())?;
        map.serialize_entry(
            "time",
            &humantime::format_rfc3339_millis(event.time).to_string(),
        )?;
        map.end()
    }
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

    /// The value of `field` for this event, `None` where it does not apply
    /// or is not known: `V6ONLY` of an IPv4 endpoint or of a /proc one,
    /// `PID` and `COMM` unless processes were looked up and found.
    pub fn value(&self, field: Field) -> Option<Value<'_>> {
        let endpoint = &self.endpoint;
        let owner = self.listener.owner();
        Some(match field {
            Field::Proto => Value::Word(endpoint.family().as_str()),
            Field::Port => Value::Number(u32::from(endpoint.port()?)),
            Field::Addr => Value::Addr(endpoint.ip()?),
            Field::SocketPath => Value::Name(endpoint.unix_name()?.text()),
            Field::Transport => Value::Word(endpoint.transport.as_str()),
            Field::V6only => Value::Flag(self.listener.v6only()?),
            Field::Netns => Value::Name(endpoint.netns_label()?),
            Field::Pid => Value::Number(owner?.pid),
            Field::Comm => Value::Name(&owner?.comm),
        })
    }

    /// The fields that have a value, in the contract's order.
    pub fn fields(&self) -> impl Iterator<Item = (Field, Value<'_>)> + '_ {
        Field::ALL
            .into_iter()
            .filter_map(|field| Some((field, self.value(field)?)))
    }

    fn json(&self) -> JsonEvent<'_> {
        JsonEvent(self)
    }
}

impl fmt::Display for Event {
    /// `socket PROTO=inet PORT=80 ADDR=0.0.0.0 TRANSPORT=tcp`, then the
    /// optional fields that have a value, each quoted by the one rule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.as_str())?;
        for (field, value) in self.fields() {
            write!(f, " {field}={}", value.text())?;
        }
        Ok(())
    }
}

/// A `socket` event for TCP `addr`:`port`, made by hand for unit tests,
/// held by pid 42 named `comm` when given.
#[cfg(test)]
pub(crate) fn sample(addr: &str, port: u16, v6only: Option<bool>, comm: Option<&[u8]>) -> Event {
    use crate::endpoint::{Socket, SourceKind, Transport};
    use crate::process::{Owner, Ownership};
    let endpoint = Endpoint::inet(Transport::Tcp, addr.parse().unwrap(), port);
    let mut listener = Listener::from_sockets(vec![Socket {
        endpoint: endpoint.clone(),
        inode: 7,
        uid: Some(0),
        cookie: None,
        v6only,
        source: SourceKind::Netlink,
        vfs: None,
        trusted: true,
    }]);
    if let Some(comm) = comm {
        listener.set_ownership(Ownership::Found(Owner {
            pid: 42,
            comm: crate::quote::text_from_bytes(comm),
        }));
    }
    Event::new(
        EventKind::Socket,
        endpoint,
        listener,
        SystemTime::UNIX_EPOCH,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{Socket, SourceKind, Transport, UnixName};
    use std::os::unix::ffi::OsStringExt;

    fn event(addr: &str, v6only: Option<bool>, comm: Option<&str>) -> Event {
        sample(addr, 80, v6only, comm.map(str::as_bytes))
    }

    #[test]
    fn text_has_the_fields_that_have_a_value() {
        assert_eq!(
            event("0.0.0.0", None, None).to_string(),
            "socket PROTO=inet PORT=80 ADDR=0.0.0.0 TRANSPORT=tcp"
        );
        assert_eq!(
            event("::", Some(false), Some("my server")).to_string(),
            r#"socket PROTO=inet6 PORT=80 ADDR=:: TRANSPORT=tcp V6ONLY=0 PID=42 COMM="my server""#
        );
    }

    fn unix_event(name: UnixName) -> Event {
        let endpoint = Endpoint::unix(Transport::Stream, name);
        let listener = Listener::from_sockets(vec![Socket {
            endpoint: endpoint.clone(),
            inode: 9,
            uid: Some(1000),
            cookie: None,
            v6only: None,
            source: SourceKind::Netlink,
            vfs: None,
            trusted: true,
        }]);
        Event::new(
            EventKind::Socket,
            endpoint,
            listener,
            SystemTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn unix_endpoints_have_a_path_and_no_port() {
        let event = unix_event(UnixName::path(b"/run/cups/cups.sock"));
        assert_eq!(
            event.to_string(),
            "socket PROTO=unix SOCKET_PATH=/run/cups/cups.sock TRANSPORT=stream"
        );
        let odd = unix_event(UnixName::path(b"/tmp/a b\n\xff"));
        assert_eq!(
            odd.to_string(),
            r#"socket PROTO=unix SOCKET_PATH="/tmp/a b\n\xff" TRANSPORT=stream"#
        );
        let bytes = unix_event(UnixName::path(b"/tmp/x\n\xff"));
        assert_eq!(
            bytes.value(Field::SocketPath).unwrap().env().into_vec(),
            b"/tmp/x\n\xff"
        );
        assert_eq!(
            unix_event(UnixName::abstract_name(b"app")).to_string(),
            "socket PROTO=unix SOCKET_PATH=@app TRANSPORT=stream"
        );
        let mut line = Vec::new();
        event.write(Format::Json, &mut line).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(json["proto"], "unix");
        assert_eq!(json["path"], "/run/cups/cups.sock");
        assert_eq!(json["transport"], "stream");
        assert!(json["port"].is_null() && json["addr"].is_null());
    }

    #[test]
    fn json_has_every_field_null_when_unknown() {
        let mut line = Vec::new();
        event("127.0.0.1", None, None)
            .write(Format::Json, &mut line)
            .unwrap();
        let line = String::from_utf8(line).unwrap();
        assert_eq!(
            line,
            concat!(
                r#"{"event":"socket","proto":"inet","port":80,"addr":"127.0.0.1","#,
                r#""path":null,"transport":"tcp","v6only":null,"netns":null,"pid":null,"comm":null,"uid":0,"#,
                r#""inodes":[7],"source":"netlink","time":"1970-01-01T00:00:00.000Z"}"#,
                "\n"
            )
        );
    }

    #[test]
    fn a_namespace_is_named_in_text_and_identified_in_json() {
        let mut event = event("127.0.0.1", None, None);
        event.endpoint.netns = Some(crate::endpoint::NetnsTag {
            id: 3,
            info: std::sync::Arc::new(crate::endpoint::NetnsInfo {
                label: "net:[4026532290]".into(),
                name: None,
                inode: Some(4026532290),
                cookie: Some(4097),
                container: Some("4f1c2b3a".into()),
            }),
        });
        assert_eq!(
            event.to_string(),
            "socket PROTO=inet PORT=80 ADDR=127.0.0.1 TRANSPORT=tcp NETNS=net:[4026532290]"
        );
        let mut line = Vec::new();
        event.write(Format::Json, &mut line).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            json["netns"],
            serde_json::json!({
                "name": "net:[4026532290]",
                "inode": 4026532290u64,
                "cookie": 4097,
                "container": "4f1c2b3a",
            })
        );
    }
}
