//! SIGINT and SIGTERM as one stop request that every wait can see.
//!
//! A stop must end sockwatch within a second whatever it is doing: waiting
//! for the kernel, for room in a stdout pipe that nobody reads, or for a
//! hook. Those waits happen in different places (the watcher's loop, the
//! output queue), so the signals are caught once, here, from the moment
//! [`StopSignals::catch`] is called, and each wait adds [`StopSignals::fd`]
//! to what it waits for. One registration, not one per wait: a signal
//! caught by a second registration before the first exists would be seen
//! by nobody.
//!
//! The signal handler does two async-signal-safe things, in this order
//! (signal-hook runs actions in the order they were registered): it stores
//! the signal's number, then writes a byte to a self-pipe. A wait that wakes
//! on the pipe therefore always finds the number. The pipe is never
//! drained: a stop is final, and the descriptor stays readable for every
//! later wait.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use signal_hook::SigId;
use signal_hook::consts::{SIGINT, SIGTERM};

/// SIGINT and SIGTERM, caught until this is dropped.
pub struct StopSignals {
    /// The number of the last stop signal received; 0 before any.
    received: Arc<AtomicUsize>,
    /// The self-pipe's read end: readable once a stop signal arrived.
    wake: UnixStream,
    /// The handlers, removed on drop.
    actions: Vec<SigId>,
}

impl StopSignals {
    /// Starts catching SIGINT and SIGTERM: from now on they no longer end
    /// the process by themselves, and [`StopSignals::received`] tells.
    pub fn catch() -> io::Result<StopSignals> {
        let (wake, write) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let received = Arc::new(AtomicUsize::new(0));
        let mut stop = StopSignals {
            received,
            wake,
            actions: Vec::new(),
        };
        for signal in [SIGINT, SIGTERM] {
            let number = usize::try_from(signal).expect("signal numbers are positive");
            // The number first, then the wake-up: see the module's doc.
            stop.actions.push(signal_hook::flag::register_usize(
                signal,
                Arc::clone(&stop.received),
                number,
            )?);
            stop.actions.push(signal_hook::low_level::pipe::register(
                signal,
                write.try_clone()?,
            )?);
        }
        Ok(stop)
    }

    /// The stop signal received, if one was.
    pub fn received(&self) -> Option<i32> {
        match self.received.load(Ordering::SeqCst) {
            0 => None,
            signal => i32::try_from(signal).ok(),
        }
    }

    /// A descriptor that becomes readable when a stop signal arrives, and
    /// stays so: add it to any wait that must yield to a stop.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        for action in self.actions.drain(..) {
            signal_hook::low_level::unregister(action);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_signal_is_told_and_wakes_the_descriptor() {
        let stop = StopSignals::catch().unwrap();
        let mut byte = [0u8; 1];
        let mut wake = stop.wake.try_clone().unwrap();
        assert_eq!(
            io::Read::read(&mut wake, &mut byte).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "nothing before a signal"
        );
        // Only this test raises SIGINT in the unit tests; others never see
        // it as a stop, as the default action is replaced while `stop` lives.
        signal_hook::low_level::raise(SIGINT).unwrap();
        assert_eq!(stop.received(), Some(SIGINT));
        assert_eq!(io::Read::read(&mut wake, &mut byte).unwrap(), 1);
    }
}
