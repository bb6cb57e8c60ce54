//! The fields of an event, named once.
//!
//! Every place that speaks of a field by name (the text and JSON forms, the
//! hook environment, condition keys) takes it from this table, so a field
//! added here (`SOCKET_PATH`, `NETNS`) is added everywhere and its name
//! cannot drift between them.

use std::fmt;

/// A field of an event, and a key of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// `inet` or `inet6`.
    Proto,
    /// The port.
    Port,
    /// The local address.
    Addr,
    /// `tcp` or `udp`.
    Transport,
    /// `IPV6_V6ONLY` of an IPv6 socket.
    V6only,
    /// The process holding the socket.
    Pid,
    /// That process's command name.
    Comm,
}

impl Field {
    /// Every field, in the contract's order (the order of the text form).
    pub const ALL: [Field; 7] = [
        Field::Proto,
        Field::Port,
        Field::Addr,
        Field::Transport,
        Field::V6only,
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
            Field::Transport => "TRANSPORT",
            Field::V6only => "V6ONLY",
            Field::Pid => "PID",
            Field::Comm => "COMM",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for field in Field::ALL {
            assert_eq!(Field::from_name(field.name()), Some(field));
        }
        assert_eq!(Field::from_name("port"), None, "names are upper case");
        assert_eq!(Field::POSITIONAL, Field::ALL[..4]);
    }
}
