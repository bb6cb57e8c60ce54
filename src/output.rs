//! The event stream's way out: lines written to stdout by a thread of their
//! own, so that a reader that stops reading never holds up a stop.
//!
//! A write to a pipe whose reader does not read (`sockwatch watch | sleep
//! 600`) blocks once the pipe is full, and a thread blocked in write(2)
//! sees no signal. Making stdout non-blocking is not ours to do: its file
//! description is shared with the parent and every sibling, and O_NONBLOCK
//! would change it for them too. So the watcher hands each line to a
//! bounded queue, and a writer thread does the blocking writes. When the
//! queue is full (the reader is that far behind), the watcher waits for
//! room, and that wait also wakes on a stop: the reader sets the pace, but
//! never keeps sockwatch from stopping. At exit, a writer still blocked in
//! write(2) ends with the process.
//!
//! The writer writes through its own descriptor for stdout (a duplicate),
//! never through Rust's `Stdout`, whose exit-time flush could block again.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

/// How many bytes of lines may wait for the writer: about 1,000 JSON
/// events, beyond a pipe's 64 KiB, and little memory.
pub const QUEUE_BYTES: usize = 256 * 1024;

const STOP: Token = Token(0);
const ROOM: Token = Token(1);

/// What became of a line given to [`Output::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Queued; the writer writes it as soon as the reader takes it.
    Queued,
    /// Not queued: the reader went away (broken pipe).
    ReaderGone,
    /// Not queued: the queue was full and a stop arrived while waiting for
    /// room.
    Stopped,
}

/// The queue and its writer thread.
pub struct Output {
    shared: Arc<Shared>,
    /// Waits for room or a stop; the writer wakes it.
    poll: Poll,
    events: Events,
    writer: Option<JoinHandle<()>>,
    limit: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Lines were queued, or the queue is closed: for the writer. The queue
    /// emptied: for [`Output::finish`].
    changed: Condvar,
    /// Room was made, or the writer failed: for a sender waiting in
    /// [`Output::send`].
    room: Waker,
}

#[derive(Default)]
struct State {
    lines: VecDeque<Vec<u8>>,
    /// Bytes in `lines`.
    bytes: usize,
    /// The writer is in the middle of a write.
    writing: bool,
    /// A sender waits for room.
    waiting: bool,
    /// Why the writer stopped: a broken pipe, or another error.
    failed: Option<io::Error>,
    /// No more lines: the writer ends.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the queue inconsistent: every
        // change is a single push or pop.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Output {
    /// Starts the writer on `out` (a duplicate of stdout), with at most
    /// `limit` bytes waiting, and a wait for room that ends when `stop`
    /// becomes readable (see [`crate::stop::StopSignals::fd`]).
    pub fn start(out: OwnedFd, stop: BorrowedFd<'_>, limit: usize) -> io::Result<Output> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut SourceFd(&stop.as_raw_fd()), STOP, Interest::READABLE)?;
        let room = Waker::new(poll.registry(), ROOM)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            room,
        });
        let writer = {
            let shared = Arc::clone(&shared);
            let out = File::from(out);
            thread::Builder::new()
                .name("output".into())
                .spawn(move || write_lines(&shared, out))?
        };
        Ok(Output {
            shared,
            poll,
            events: Events::with_capacity(4),
            writer: Some(writer),
            limit,
        })
    }

    /// Queues `line` (one whole line, newline included). Waits while the
    /// queue is full, until there is room or a stop arrives. An error is a
    /// failed write (other than a broken pipe) of an earlier line.
    pub fn send(&mut self, line: Vec<u8>) -> io::Result<Sent> {
        loop {
            {
                let mut state = self.shared.lock();
                match &state.failed {
                    Some(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                        return Ok(Sent::ReaderGone);
                    }
                    Some(e) => return Err(io::Error::new(e.kind(), e.to_string())),
                    None => {}
                }
                // A line longer than the whole queue still goes, alone.
                if state.bytes == 0 || state.bytes + line.len() <= self.limit {
                    state.bytes += line.len();
                    state.lines.push_back(line);
                    self.shared.changed.notify_all();
                    return Ok(Sent::Queued);
                }
                // Set under the lock that the writer takes to make room, so
                // that its wake-up cannot come before we wait for it.
                state.waiting = true;
            }
            match self.poll.poll(&mut self.events, None) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if self.events.iter().any(|e| e.token() == STOP) {
                self.shared.lock().waiting = false;
                return Ok(Sent::Stopped);
            }
        }
    }

    /// Ends the stream: lines still queued get up to `grace` to be written
    /// (a reader that keeps up has them all), the rest are dropped. Returns
    /// how many were dropped.
    pub fn finish(mut self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let mut state = self.shared.lock();
        loop {
            let idle = state.lines.is_empty() && !state.writing;
            let now = Instant::now();
            if idle || state.failed.is_some() || now >= deadline {
                break;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let dropped = state.lines.len();
        state.lines.clear();
        state.bytes = 0;
        state.closed = true;
        let idle = !state.writing;
        self.shared.changed.notify_all();
        drop(state);
        if let Some(writer) = self.writer.take() {
            // A writer blocked in write(2) is left to end with the process.
            if idle {
                let _ = writer.join();
            }
        }
        dropped
    }
}

/// The writer thread: writes queued lines in order until the queue is
/// closed or a write fails.
fn write_lines(shared: &Shared, mut out: File) {
    let mut state = shared.lock();
    loop {
        if state.closed {
            return;
        }
        let Some(line) = state.lines.pop_front() else {
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
            continue;
        };
        state.writing = true;
        drop(state);
        let written = out.write_all(&line);
        state = shared.lock();
        state.writing = false;
        state.bytes -= line.len();
        if let Err(e) = written {
            state.failed = Some(e);
            state.lines.clear();
            state.bytes = 0;
        }
        if std::mem::take(&mut state.waiting) || state.failed.is_some() {
            // Nothing to do if the sender's poll is gone already.
            let _ = shared.room.wake();
        }
        shared.changed.notify_all();
        if state.failed.is_some() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    /// A connected stream: (the reader's end, the writer's end). Writes block
    /// when its buffer is full and fail with a broken pipe once the reader's
    /// end is closed, as a pipe's do.
    fn pipe() -> (UnixStream, OwnedFd) {
        let (read, write) = UnixStream::pair().unwrap();
        (read, OwnedFd::from(write))
    }

    #[test]
    fn lines_arrive_in_order() {
        let (mut read, write) = pipe();
        let (stop, _stopper) = UnixStream::pair().unwrap();
        let mut output = Output::start(write, stop.as_fd(), 64).unwrap();
        for i in 0..100 {
            let line = format!("line {i}\n").into_bytes();
            assert_eq!(output.send(line).unwrap(), Sent::Queued);
        }
        assert_eq!(output.finish(Duration::from_secs(10)), 0);
        let mut text = String::new();
        read.read_to_string(&mut text).unwrap();
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);
    }

    #[test]
    fn a_full_pipe_yields_to_a_stop() {
        let (_read, write) = pipe();
        let (stop, mut stopper) = UnixStream::pair().unwrap();
        let mut output = Output::start(write, stop.as_fd(), 4096).unwrap();
        let line = vec![b'x'; 1023];
        let stopping = thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            stopper.write_all(b"!").unwrap();
            stopper
        });
        // Nobody reads: the stream's buffer and the queue fill up, and then
        // only the stop ends the wait.
        let started = Instant::now();
        let outcome = loop {
            match output.send(line.clone()).unwrap() {
                Sent::Queued => continue,
                other => break other,
            }
        };
        assert_eq!(outcome, Sent::Stopped);
        assert!(started.elapsed() < Duration::from_secs(5));
        let _stopper = stopping.join().unwrap();
        let started = Instant::now();
        let dropped = output.finish(Duration::from_millis(50));
        assert!(dropped > 0);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "never joins a blocked writer"
        );
    }

    #[test]
    fn a_reader_that_goes_away_is_told() {
        let (read, write) = pipe();
        let (stop, _stopper) = UnixStream::pair().unwrap();
        let mut output = Output::start(write, stop.as_fd(), 4096).unwrap();
        drop(read);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match output.send(b"line\n".to_vec()).unwrap() {
                Sent::ReaderGone => break,
                Sent::Queued => assert!(Instant::now() < deadline, "never told"),
                Sent::Stopped => panic!("no stop was sent"),
            }
            thread::sleep(Duration::from_millis(1));
        }
        output.finish(Duration::ZERO);
    }
}
