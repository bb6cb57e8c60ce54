//! The fields of an event, named once.
//!
//! Every place that speaks of a field by name (the text and JSON forms, the
//! hook environment, condition keys) takes it from this table, so a field
//! added here (`SOCKET_PATH`, `NETNS`) is added everywhere and its name
//! cannot drift between them.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;
use std::os::unix::ffi::OsStringExt;

use crate::quote;

/// A field of an event, and a key of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// `inet`, `inet6` or `unix`.
    Proto,
    /// The port.
    Port,
    /// The local address.
    Addr,
    /// The name a unix socket is bound to (`@name` when abstract).
    SocketPath,
    /// `tcp`, `udp`, `stream`, `seqpacket` or `dgram`.
    Transport,
    /// `IPV6_V6ONLY` of an IPv6 socket.
    V6only,
    /// The network namespace, when more than one is watched or it is not
    /// ours: its `/run/netns` name, else `net:[INODE]`.
    Netns,
    /// The process holding the socket.
    Pid,
    /// That process's command name.
    Comm,
}

impl Field {
    /// Every field, in the contract's order (the order of the text form).
    pub const ALL: [Field; 9] = [
        Field::Proto,
        Field::Port,
        Field::Addr,
        Field::SocketPath,
        Field::Transport,
        Field::V6only,
        Field::Netns,
        Field::Pid,
        Field::Comm,
    ];

    /// What positional values of a condition stand for, in order (Upstart's
    /// rule for upstart-socket-bridge events).
    pub const POSITIONAL: [Field; 4] = [Field::Proto, Field::Port, Field::Addr, Field::Transport];

    /// The upper-case name: `PROTO`, `PORT`, ...
    pub fn name(self) -> &'static str {
        match self {
            Field::Proto => "PROTO",
            Field::Port => "PORT",
            Field::Addr => "ADDR",
            Field::SocketPath => "SOCKET_PATH",
            Field::Transport => "TRANSPORT",
            Field::V6only => "V6ONLY",
            Field::Netns => "NETNS",
            Field::Pid => "PID",
            Field::Comm => "COMM",
        }
    }

    /// The lower-case name of the JSON form: `proto`, `port`, ...
    pub fn json_name(self) -> &'static str {
        match self {
            Field::Proto => "proto",
            Field::Port => "port",
            Field::Addr => "addr",
            Field::SocketPath => "path",
            Field::Transport => "transport",
            Field::V6only => "v6only",
            Field::Netns => "netns",
            Field::Pid => "pid",
            Field::Comm => "comm",
        }
    }

    /// The field of an upper-case name.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A field's value, typed until it is written in one of the three forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// A word of a closed set: `inet`, `tcp`.
    Word(&'static str),
    /// A port or a process id.
    Number(u32),
    /// An address: RFC 5952 text for IPv6, no brackets.
    Addr(IpAddr),
    /// `0` or `1` in text and in the environment, `false`/`true` in JSON.
    Flag(bool),
    /// Text from the kernel (a command name, a socket's name), carried by
    /// [`quote::text_from_bytes`]'s lossless mapping.
    Name(&'a str),
}

impl Value<'_> {
    /// The text form: what follows `KEY=`, quoted where needed so that the
    /// line stays one field per key and a condition reads it back.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Value::Word(word) => Cow::Borrowed(word),
            Value::Number(n) => Cow::Owned(n.to_string()),
            Value::Addr(addr) => Cow::Owned(addr.to_string()),
            Value::Flag(flag) => Cow::Borrowed(if *flag { "1" } else { "0" }),
            Value::Name(name) => quote::quote(name),
        }
    }

    /// The hook environment's form: the value itself, as the bytes the
    /// kernel gave, unquoted (the hook gets data, never code).
    pub fn env(&self) -> OsString {
        match self {
            Value::Name(name) => OsString::from_vec(quote::bytes_from_text(name).into_owned()),
            other => OsString::from(other.text().into_owned()),
        }
    }

    /// The form of a Prometheus label value (`sockwatch export`): the text
    /// form without its quotes, since the exposition format escapes `\`,
    /// `"` and newlines itself. A name that is not UTF-8 is given in its
    /// quoted text form, as in JSON, which keeps every byte.
    pub fn label(&self) -> Cow<'_, str> {
        match self {
            Value::Name(name) if std::str::from_utf8(&quote::bytes_from_text(name)).is_ok() => {
                Cow::Borrowed(name)
            }
            other => other.text(),
        }
    }

    /// The JSON form. A name that is not UTF-8 is written as its quoted
    /// text form, which keeps every byte.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Value::Word(word) => serde_json::Value::from(*word),
            Value::Number(n) => serde_json::Value::from(*n),
            Value::Addr(addr) => serde_json::Value::from(addr.to_string()),
            Value::Flag(flag) => serde_json::Value::from(*flag),
            Value::Name(name) => match std::str::from_utf8(&quote::bytes_from_text(name)) {
                Ok(_) => serde_json::Value::from(*name),
                Err(_) => serde_json::Value::from(quote::quote(name).into_owned()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_each_form() {
        let comm = quote::text_from_bytes(b"my \xffsrv\n");
        let name = Value::Name(&comm);
        assert_eq!(name.text(), r#""my \xffsrv\n""#);
        assert_eq!(name.env().into_vec(), b"my \xffsrv\n");
        assert_eq!(name.json(), serde_json::json!(r#""my \xffsrv\n""#));
        assert_eq!(Value::Name("nginx").json(), serde_json::json!("nginx"));
        assert_eq!(Value::Flag(true).text(), "1");
        assert_eq!(Value::Flag(false).json(), serde_json::json!(false));
        assert_eq!(Value::Addr("::1".parse().unwrap()).text(), "::1");
        assert_eq!(Value::Number(80).json(), serde_json::json!(80));
        assert_eq!(name.label(), r#""my \xffsrv\n""#, "not UTF-8: quoted");
        assert_eq!(Value::Name("a \"b\"\n").label(), "a \"b\"\n");
        assert_eq!(Value::Flag(true).label(), "1");
        assert_eq!(Value::Addr("::1".parse().unwrap()).label(), "::1");
    }

    #[test]
    fn names_round_trip() {
        for field in Field::ALL {
            assert_eq!(Field::from_name(field.name()), Some(field));
        }
        assert_eq!(Field::from_name("port"), None, "names are upper case");
        assert_eq!(Field::POSITIONAL[..3], Field::ALL[..3]);
        assert_eq!(Field::POSITIONAL[3], Field::Transport);
    }
}
