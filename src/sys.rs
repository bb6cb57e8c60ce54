//! The system calls sockwatch makes itself, each behind a small safe function.
//!
//! This is the crate's one room for `unsafe` around libc, as mio keeps its
//! syscalls under `src/sys`: every function here checks the return code and
//! gives an `io::Result`, takes descriptors as `BorrowedFd` (or hands them
//! out as `OwnedFd`), and states why its `unsafe` block is sound. The rest of
//! the crate (`run`, `notify`, the netlink source) calls these and holds no
//! `unsafe` of its own.
//!
//! What lives here:
//! - processes: [`kill`], [`kill_group`] and [`group_exists`] (a hook's
//!   process group), [`reap_any`], [`set_child_subreaper`],
//!   [`reset_signal_mask_on_exec`], and [`die_by_signal`], which hands a
//!   service's death by a signal on to sockwatch's own parent;
//! - descriptors: [`claim_fd`], which turns a number from the command line
//!   into an `OwnedFd` only when it really was handed down to us;
//! - sockets and namespaces: [`setns`], [`set_receive_timeout`].
//!
//! Linux only, as the rest of sockwatch.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};
use std::time::Duration;

/// Sends `signal` to process `pid`.
///
/// Only a positive pid is accepted: 0 and negative values mean process
/// groups (or every process) to kill(2), which no caller ever means.
pub fn kill(pid: u32, signal: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `signal` to every process of process group `pgid`: a hook leads
/// a group of its own, so that a stop reaches whatever it started.
///
/// Groups 0 and 1 are refused: 0 means the caller's own group to killpg(2),
/// and 1 is init's; no caller means either.
pub fn kill_group(pgid: u32, signal: i32) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid)
        .ok()
        .filter(|&p| p > 1)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: killpg(3) takes two integers and touches no memory of ours.
    if unsafe { libc::killpg(pgid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether process group `pgid` still has a member (a zombie not yet
/// reaped counts). One that exists but may not be signalled (EPERM) counts.
pub fn group_exists(pgid: u32) -> bool {
    match kill_group(pgid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() != Some(libc::ESRCH) && e.kind() != io::ErrorKind::InvalidInput,
    }
}

/// What [`reap_any`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    /// This child had ended; it is now reaped.
    Child {
        /// Its process id.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
    },
    /// Children are left, none of them has ended yet.
    Running,
    /// No child is left.
    NoChildren,
}

/// Reaps one ended child (or adopted descendant), without blocking.
pub fn reap_any() -> io::Result<Reaped> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid, writable c_int for the whole call.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match pid {
            0 => return Ok(Reaped::Running),
            -1 => {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::ECHILD) => return Ok(Reaped::NoChildren),
                    Some(libc::EINTR) => continue,
                    _ => return Err(error),
                }
            }
            pid => {
                return Ok(Reaped::Child {
                    pid: pid as u32,
                    status: ExitStatus::from_raw(status),
                });
            }
        }
    }
}

/// Makes this process a child subreaper: descendants orphaned by their
/// parent are reparented to us, so a daemon that double-forks stays ours.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer argument; the unused
    // arguments are zero as prctl(2) asks.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `command`'s process start with an empty signal mask.
///
/// Handlers sockwatch installed are reset by exec, but the mask is inherited:
/// a service must not start with signals blocked because sockwatch had them
/// so.
pub fn reset_signal_mask_on_exec(command: &mut Command) {
    // SAFETY: the closure runs between fork and exec, where only
    // async-signal-safe functions may be called: sigemptyset and
    // sigprocmask are, and the closure allocates nothing.
    unsafe {
        command.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Ends sockwatch by `signal`, as the service it supervised ended, so that
/// a parent (a shell, systemd) sees the same death: systemd counts a death
/// by SIGTERM as a clean stop, but not exit status 143.
///
/// Flushes stdout first (a signal skips Rust's exit-time flush), turns core
/// dumps off (the service may have dumped core; sockwatch has nothing worth
/// dumping, and a pipe in `core_pattern` ignores RLIMIT_CORE, hence the
/// dumpable flag too), restores the default action, unblocks the signal and
/// raises it. A signal whose default action is not to terminate (SIGCHLD,
/// SIGWINCH, SIGURG) leaves raise returning: then exit with 128 + the
/// signal, as a shell reports it.
pub fn die_by_signal(signal: i32) -> ! {
    use std::io::Write;
    let _ = io::stdout().flush();
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `no_core` is a valid rlimit for the duration of the call; the
    // prctl takes integers. Failures only mean a core may be written.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    // SAFETY: SIG_DFL is a valid disposition for every signal that has one
    // (SIGKILL and SIGSTOP refuse any change: harmless, they kill or stop
    // anyway); `set` is initialised by sigemptyset before use and lives
    // across the calls that read it.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
    std::process::exit(128 + (signal & 0x7f))
}

/// Why a descriptor number could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// 0, 1 or 2: standard input, output or error.
    #[error("descriptor {0} is standard input, output or error, not a notification descriptor")]
    Stdio(RawFd),
    /// Nothing is open under that number: a later open would take it.
    #[error("descriptor {0} is not open")]
    NotOpen(RawFd),
    /// It was opened by sockwatch itself (close-on-exec is set), so it was
    /// not handed down by whoever started us.
    #[error("descriptor {0} was not inherited: it is one of sockwatch's own")]
    NotInherited(RawFd),
    /// Not something a newline can be written to and read back from.
    #[error("descriptor {fd} is {kind}, not a pipe, socket or FIFO")]
    WrongType {
        /// The descriptor.
        fd: RawFd,
        /// What it is instead ("a regular file").
        kind: &'static str,
    },
    /// fcntl or fstat failed otherwise.
    #[error("descriptor {fd}: {cause}")]
    Io {
        /// The descriptor.
        fd: RawFd,
        /// The failure.
        cause: io::Error,
    },
}

/// Takes ownership of descriptor `fd`, handed down by whoever started
/// sockwatch (s6's notification-fd): it must be open, not stdio, inherited
/// (close-on-exec clear: every descriptor sockwatch opens itself has it
/// set), and a pipe, FIFO or socket. It is then marked close-on-exec, so the
/// service does not inherit it and a second claim fails.
///
/// Call it before anything else could open a descriptor: a number that is
/// not open yet would otherwise be taken by sockwatch's own sockets.
pub fn claim_fd(fd: RawFd) -> Result<OwnedFd, ClaimError> {
    if (0..=2).contains(&fd) {
        return Err(ClaimError::Stdio(fd));
    }
    let io_error = |cause| ClaimError::Io { fd, cause };
    // SAFETY: fcntl(F_GETFD) on any number touches no memory; a number that
    // is not open gives EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        let error = io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::EBADF) => ClaimError::NotOpen(fd),
            _ => io_error(error),
        });
    }
    if flags & libc::FD_CLOEXEC != 0 {
        return Err(ClaimError::NotInherited(fd));
    }
    // SAFETY: `stat` is plain data that fstat fills in; zeroed is a valid
    // value for it, and it outlives the call.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `fd` is open (F_GETFD succeeded).
    if unsafe { libc::fstat(fd, &mut stat) } != 0 {
        return Err(io_error(io::Error::last_os_error()));
    }
    let kind = match stat.st_mode & libc::S_IFMT {
        libc::S_IFIFO | libc::S_IFSOCK => None,
        libc::S_IFREG => Some("a regular file"),
        libc::S_IFDIR => Some("a directory"),
        libc::S_IFCHR => Some("a character device"),
        libc::S_IFBLK => Some("a block device"),
        _ => Some("of another type"),
    };
    if let Some(kind) = kind {
        return Err(ClaimError::WrongType { fd, kind });
    }
    // SAFETY: fcntl(F_SETFD) on an open descriptor touches no memory.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } != 0 {
        return Err(io_error(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is open, and nothing in this process owns it: it was
    // inherited across exec (close-on-exec was clear, and everything Rust's
    // std and our crates open sets it), and it has not been claimed before
    // (claiming sets close-on-exec, so a second claim stops above).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Moves the calling thread into the namespace of type `nstype`
/// (`libc::CLONE_NEWNET`) that `namespace` (a `/proc/<pid>/ns/*` file)
/// refers to.
pub fn setns(namespace: BorrowedFd<'_>, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: setns takes a descriptor, borrowed and so open for the call,
    // and flags; it changes only this thread's namespace.
    if unsafe { libc::setns(namespace.as_raw_fd(), nstype) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SO_NETNS_COOKIE`: not in every libc crate yet.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the network namespace `socket` was made in: unique for
/// the life of the system, unlike the namespace's inode number, which is
/// reused once it is freed (Linux 5.14; ENOPROTOOPT before).
pub fn netns_cookie(socket: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` and `len` are valid for writes and outlive the call,
    // and `len` holds the size of `cookie`; the descriptor is borrowed, so
    // open.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// Bounds every blocking receive on `socket` (SO_RCVTIMEO) by `timeout`
/// (whole microseconds; zero would mean "no bound" to the kernel, so it is
/// refused).
pub fn set_receive_timeout(socket: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    if timeout.is_zero() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    };
    // SAFETY: `tv` is a valid timeval that outlives the call, and its size
    // is passed as the option length; the descriptor is borrowed, so open.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The name of `signal` (`SIGTERM`), for messages; real-time signals as
/// `SIGRTMIN+N`.
pub fn signal_name(signal: i32) -> String {
    let known = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGSTKFLT, "SIGSTKFLT"),
        (libc::SIGCHLD, "SIGCHLD"),
        (libc::SIGCONT, "SIGCONT"),
        (libc::SIGSTOP, "SIGSTOP"),
        (libc::SIGTSTP, "SIGTSTP"),
        (libc::SIGTTIN, "SIGTTIN"),
        (libc::SIGTTOU, "SIGTTOU"),
        (libc::SIGURG, "SIGURG"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGWINCH, "SIGWINCH"),
        (libc::SIGIO, "SIGIO"),
        (libc::SIGPWR, "SIGPWR"),
        (libc::SIGSYS, "SIGSYS"),
    ];
    if let Some((_, name)) = known.iter().find(|(n, _)| *n == signal) {
        return (*name).to_owned();
    }
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    if (min..=max).contains(&signal) {
        return format!("SIGRTMIN+{}", signal - min);
    }
    format!("signal {signal}")
}

/// The effective user id.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether this process may execute `path` as exec(2) would check it: with
/// the effective ids (`AT_EACCESS`).
pub fn can_execute(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call;
    // faccessat only reads it.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    rc == 0
}

/// The CPU time the calling thread has used, user and system: what a read
/// of the kernel's tables costs, whatever else the machine is doing.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass, which
    // outlives the call; CLOCK_THREAD_CPUTIME_ID always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// A pipe whose ends do not have close-on-exec: as a supervisor hands
    /// one down across exec.
    fn inherited_pipe() -> (RawFd, RawFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), 0) }, 0);
        (fds[0], fds[1])
    }

    #[test]
    fn claims_an_inherited_pipe_once_and_marks_it_close_on_exec() {
        let (read, write) = inherited_pipe();
        // SAFETY: the read end was just made and is owned here.
        let _read = unsafe { OwnedFd::from_raw_fd(read) };
        let owned = claim_fd(write).unwrap();
        assert_eq!(owned.as_raw_fd(), write);
        // SAFETY: F_GETFD on an open descriptor.
        let flags = unsafe { libc::fcntl(write, libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        assert!(matches!(claim_fd(write), Err(ClaimError::NotInherited(_))));
    }

    #[test]
    fn refuses_stdio_descriptors_of_our_own_and_other_files() {
        for fd in 0..=2 {
            assert!(matches!(claim_fd(fd), Err(ClaimError::Stdio(_))));
        }
        // Opened by sockwatch itself (std sets close-on-exec): never taken.
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let error = claim_fd(file.as_raw_fd()).unwrap_err();
        assert!(matches!(error, ClaimError::NotInherited(_)), "{error}");
        // A regular file handed down: not something to notify on.
        let path = std::env::temp_dir().join(format!("sockwatch-claim-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        // SAFETY: dup of an open descriptor; the copy lacks close-on-exec and
        // is owned by the claim (or closed below).
        let copy = unsafe { libc::dup(file.as_raw_fd()) };
        assert!(copy > 2);
        let error = claim_fd(copy).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("descriptor {copy} is a regular file, not a pipe, socket or FIFO")
        );
        // SAFETY: `copy` is ours and not owned by anything else.
        drop(unsafe { OwnedFd::from_raw_fd(copy) });
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            claim_fd(1 << 20).unwrap_err().to_string(),
            format!("descriptor {} is not open", 1 << 20)
        );
    }

    #[test]
    fn kill_refuses_pids_that_mean_groups() {
        assert_eq!(kill(0, 0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            kill(u32::MAX, 0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        kill(std::process::id(), 0).unwrap();
    }

    #[test]
    fn kill_group_refuses_the_callers_and_inits_groups() {
        for pgid in [0, 1, u32::MAX] {
            assert_eq!(
                kill_group(pgid, 0).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{pgid}"
            );
            assert!(!group_exists(pgid));
        }
    }

    #[test]
    fn a_group_exists_until_its_last_member_is_reaped() {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap();
        assert!(group_exists(child.id()));
        kill_group(child.id(), libc::SIGKILL).unwrap();
        child.wait().unwrap();
        assert!(!group_exists(child.id()));
    }

    #[test]
    fn receive_timeout_is_set_on_a_socket() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        set_receive_timeout(socket.as_fd(), Duration::from_millis(1500)).unwrap();
        assert_eq!(
            socket.read_timeout().unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert!(set_receive_timeout(socket.as_fd(), Duration::ZERO).is_err());
    }

    #[test]
    fn names_signals() {
        assert_eq!(signal_name(libc::SIGKILL), "SIGKILL");
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(libc::SIGRTMIN() + 2), "SIGRTMIN+2");
        assert_eq!(signal_name(200), "signal 200");
    }
}
