//! Streaming reader of the listening sockets in `/proc/net/{tcp,tcp6,udp,udp6}`.
//!
//! Placeholder until the /proc fallback lands: the workspace member exists so
//! the layout is the final one.
#![deny(missing_docs)]
