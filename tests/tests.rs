//! The integration tests: the real `sockwatch` binary against real sockets,
//! each test in a network namespace of its own (see `support`).

mod netns;
mod support;

mod all_netns;
mod churn;
mod cli;
mod conditions;
mod detect;
mod export;
mod fallback;
mod hooks;
mod kernel;
mod list;
mod netns_option;
mod other_netns;
mod owners;
mod proc_root;
mod reach;
mod run;
mod ship;
mod stop;
mod unix;
mod wait;
mod watch;
