//! sockwatch: know from the kernel when a service is listening, without
//! poking it.
//!
//! The kernel's socket tables are read through a [`source::Source`]
//! (sock_diag netlink, or /proc where netlink is unavailable), turned into a
//! [`snapshot::Snapshot`] of listening endpoints, and diffed into [`event::Event`]s
//! that `list`, `watch` and `wait` print or test against a
//! [`condition::Condition`].

pub mod cli;
pub mod condition;
pub mod descendants;
pub mod detect;
pub mod endpoint;
pub mod event;
pub mod exit;
pub mod export;
pub mod field;
pub mod hook;
pub mod manual;
pub mod netns;
pub mod notify;
pub mod output;
pub mod process;
pub mod quote;
pub mod run;
pub mod snapshot;
pub mod source;
pub mod stop;
pub mod sys;
pub mod trigger;
pub mod unix_path;
pub mod watcher;
