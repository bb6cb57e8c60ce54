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
//! - sockets and namespaces: [`setns`], [`set_receive_timeout`];
//! - kernel triggers: [`perf_tracepoint_open`], its ioctls
//!   ([`perf_set_filter`], [`perf_set_output`], [`perf_enable`],
//!   [`perf_pause_output`]) and its ring ([`PerfRing`]); and
//!   [`mount_tracefs_privately`], which mounts tracefs where only the calling
//!   thread sees it.
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

/// `struct perf_event_attr` as of `PERF_ATTR_SIZE_VER5` (Linux 4.1): the
/// fields sockwatch sets, in the kernel's layout. libc does not carry it.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// The bit field: `disabled` is bit 0, `exclude_kernel` bit 5.
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved: u16,
}

const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_SAMPLE_RAW: u64 = 1 << 10;
const PERF_ATTR_DISABLED: u64 = 1;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_SET_OUTPUT: libc::c_ulong = 0x2405;
const PERF_EVENT_IOC_SET_FILTER: libc::c_ulong = 0x4008_2406;
const PERF_EVENT_IOC_PAUSE_OUTPUT: libc::c_ulong = 0x4004_2409;

/// Opens tracepoint `id` (from tracefs) on `cpu` for every process
/// (pid -1, which needs CAP_PERFMON or root), disabled, sampling every hit
/// with its raw fields. `wake` says whether a hit wakes a reader of the
/// ring (`wakeup_events` 1) or only waits in it for the next one that does
/// (0: the kernel then wakes only when half the ring is full).
///
/// Kernel hits are not excluded: tracepoints fire in the kernel, and a
/// tracepoint opened with `exclude_kernel` opens fine and never fires.
pub fn perf_tracepoint_open(id: u64, cpu: u32, wake: bool) -> io::Result<OwnedFd> {
    let attr = PerfEventAttr {
        kind: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: id,
        sample_period: 1,
        sample_type: PERF_SAMPLE_RAW,
        flags: PERF_ATTR_DISABLED,
        wakeup_events: u32::from(wake),
        ..PerfEventAttr::default()
    };
    let cpu = libc::c_int::try_from(cpu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: perf_event_open(2) reads `attr`, a fully initialised
    // perf_event_attr whose size field is its real size, for the duration of
    // the call; the other arguments are integers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            -1 as libc::pid_t,
            cpu,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us, and nothing
    // else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sets an ftrace filter (`newstate == 10`) on a tracepoint event. EINVAL
/// when the kernel refuses the expression, EEXIST when one is set already.
pub fn perf_set_filter(event: BorrowedFd<'_>, filter: &str) -> io::Result<()> {
    let filter =
        std::ffi::CString::new(filter).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: SET_FILTER reads a NUL-terminated string, which `filter` is
    // and which outlives the call; the descriptor is borrowed, so open.
    let rc = unsafe {
        libc::ioctl(
            event.as_raw_fd(),
            PERF_EVENT_IOC_SET_FILTER as _,
            filter.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `event`'s samples into the ring of `ring` (same CPU), so that one
/// ring, and one descriptor to wait on, serves several tracepoints.
pub fn perf_set_output(event: BorrowedFd<'_>, ring: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: SET_OUTPUT takes a descriptor number as its argument; both
    // descriptors are borrowed, so open.
    let rc = unsafe {
        libc::ioctl(
            event.as_raw_fd(),
            PERF_EVENT_IOC_SET_OUTPUT as _,
            ring.as_raw_fd() as libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts counting (and sampling) an event opened disabled.
pub fn perf_enable(event: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: ENABLE takes no argument; the descriptor is borrowed, so open.
    if unsafe { libc::ioctl(event.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pauses (or resumes) writing into the ring of `ring`: while paused, the
/// kernel drops samples and counts them, and writes one lost record when
/// it resumes.
pub fn perf_pause_output(ring: BorrowedFd<'_>, paused: bool) -> io::Result<()> {
    // SAFETY: PAUSE_OUTPUT takes an integer argument; the descriptor is
    // borrowed, so open.
    let rc = unsafe {
        libc::ioctl(
            ring.as_raw_fd(),
            PERF_EVENT_IOC_PAUSE_OUTPUT as _,
            libc::c_ulong::from(paused),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The ring buffer of a perf event, mapped: a metadata page, then
/// `data_pages` pages of records that the kernel writes at `data_head` and
/// we consume up to `data_tail`.
#[derive(Debug)]
pub struct PerfRing {
    event: OwnedFd,
    base: std::ptr::NonNull<u8>,
    len: usize,
    data_offset: usize,
    data_size: usize,
}

/// Offsets in `struct perf_event_mmap_page` (the uapi header's layout,
/// stable since Linux 4.1).
const MMAP_DATA_HEAD: usize = 1024;
const MMAP_DATA_TAIL: usize = 1032;
const MMAP_DATA_OFFSET: usize = 1040;
const MMAP_DATA_SIZE: usize = 1048;

impl PerfRing {
    /// Maps a ring of `data_pages` pages (a power of two) for `event`,
    /// which the ring then owns.
    pub fn map(event: OwnedFd, data_pages: usize) -> io::Result<PerfRing> {
        if !data_pages.is_power_of_two() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: sysconf takes an integer and touches no memory of ours.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| io::Error::last_os_error())?;
        let len = page * (1 + data_pages);
        // SAFETY: a fresh shared mapping of the event's ring, at an address
        // the kernel chooses; nothing of ours is overwritten. The result is
        // checked against MAP_FAILED before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                event.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = std::ptr::NonNull::new(base.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        let mut ring = PerfRing {
            event,
            base,
            len,
            data_offset: page,
            data_size: page * data_pages,
        };
        // Kernels since 4.1 say where the data is; older ones leave zero
        // there and use the page after the metadata page.
        let (offset, size) = (
            ring.meta_u64(MMAP_DATA_OFFSET),
            ring.meta_u64(MMAP_DATA_SIZE),
        );
        if size != 0 {
            let (offset, size) = (offset as usize, size as usize);
            if offset.checked_add(size).is_none_or(|end| end > len) {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            ring.data_offset = offset;
            ring.data_size = size;
        }
        Ok(ring)
    }

    /// The event that owns the ring.
    pub fn event(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.event)
    }

    fn meta_u64(&self, offset: usize) -> u64 {
        // SAFETY: `offset` is one of the metadata page's u64 fields, inside
        // the mapping and 8-byte aligned (the mapping is page aligned); the
        // kernel writes it concurrently, hence a volatile read.
        unsafe { std::ptr::read_volatile(self.base.as_ptr().add(offset).cast::<u64>()) }
    }

    fn meta_atomic(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: as in `meta_u64`: an aligned u64 inside the mapping, which
        // lives as long as `self`; AtomicU64 has u64's layout, and the kernel
        // reads and writes these fields atomically too.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(offset)
                .cast::<std::sync::atomic::AtomicU64>()
        }
    }

    /// Appends the bytes written since the last call to `out` (in order,
    /// across the ring's wrap) and hands their space back to the kernel.
    /// Returns how many were appended. Records are whole: the kernel moves
    /// the head past a record only once it is written.
    pub fn take(&mut self, out: &mut Vec<u8>) -> usize {
        use std::sync::atomic::Ordering;
        let head = self.meta_atomic(MMAP_DATA_HEAD).load(Ordering::Acquire);
        let tail = self.meta_atomic(MMAP_DATA_TAIL).load(Ordering::Relaxed);
        let size = self.data_size as u64;
        // More than the ring holds would be a kernel bug; take what is there.
        let available = head.wrapping_sub(tail).min(size) as usize;
        let start = (tail % size) as usize;
        let first = available.min(self.data_size - start);
        // SAFETY: both ranges lie inside the data area of the mapping
        // (`start + first <= data_size`, `available - first <= start`), which
        // lives as long as `self`; the kernel does not write there until we
        // move the tail past it, which happens after the copy.
        unsafe {
            let data = self.base.as_ptr().add(self.data_offset);
            out.extend_from_slice(std::slice::from_raw_parts(data.add(start), first));
            out.extend_from_slice(std::slice::from_raw_parts(data, available - first));
        }
        self.meta_atomic(MMAP_DATA_TAIL)
            .store(tail.wrapping_add(available as u64), Ordering::Release);
        available
    }
}

impl Drop for PerfRing {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this address and
        // length, and no reference into it outlives `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

// SAFETY: the mapping is owned by the ring alone (no aliasing pointer leaves
// it), so moving it to another thread is sound.
unsafe impl Send for PerfRing {}

/// Gives the calling thread a mount namespace of its own (unshare
/// CLONE_NEWNS, then every mount private, so nothing propagates back) and
/// mounts tracefs on `at` there. Only this thread sees the mount, and it
/// goes when the thread ends. Needs CAP_SYS_ADMIN over the initial user
/// namespace (tracefs cannot be mounted in another).
pub fn mount_tracefs_privately(at: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let target = std::ffi::CString::new(at.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: unshare takes flags; CLONE_NEWNS (with the CLONE_FS it
    // implies) is allowed in a thread of a multithreaded process and
    // changes only the calling thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: mount(2) reads NUL-terminated strings (all literals or
    // `target`, alive for the call); a null source and data are allowed for
    // a propagation change.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's id (as tracepoints record `common_pid`).
pub fn thread_id() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
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
