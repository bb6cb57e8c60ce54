//! A network namespace of the calling thread's own, with `lo` up: every
//! integration test starts in one, and so does every benchmark group.
//! Shared by tests/ and benches/ (which include this file by path), so it
//! depends on nothing but libc and std.

/// The calling thread's own network namespace, with `lo` up.
pub struct Netns;

impl Netns {
    /// Moves the calling thread into a new network namespace (and, when not
    /// root, a new user namespace that maps us to root in it).
    pub fn enter() -> Netns {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let flags = if root {
            libc::CLONE_NEWNET
        } else {
            libc::CLONE_NEWUSER | libc::CLONE_NEWNET
        };
        // SAFETY: unshare takes flags only.
        if unsafe { libc::unshare(flags) } != 0 {
            let error = std::io::Error::last_os_error();
            let hint = if root {
                "root without CAP_SYS_ADMIN? run with it"
            } else if error.raw_os_error() == Some(libc::EINVAL) {
                // unshare(2) refuses CLONE_NEWUSER to a process with threads.
                "a process with threads cannot enter a user namespace: enter one before \
                 starting any (tests/support.rs does, at load time, and says on stderr why \
                 it could not), or run as root"
            } else {
                "run as root or allow unprivileged user namespaces \
                 (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone)"
            };
            panic!("cannot make a network namespace for this test: unshare: {error}; {hint}");
        }
        if !root {
            let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
            let _ = std::fs::write("/proc/thread-self/setgroups", "deny");
            std::fs::write("/proc/thread-self/uid_map", format!("0 {uid} 1")).expect("uid_map");
            std::fs::write("/proc/thread-self/gid_map", format!("0 {gid} 1")).expect("gid_map");
        }
        bring_loopback_up();
        Netns
    }
}

/// `ip link set lo up`, without needing the ip command.
fn bring_loopback_up() {
    // SAFETY: a datagram socket only to carry the ioctls; ifreq is plain
    // data and the ioctls stay within it; the socket is closed after.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0, "socket for SIOCSIFFLAGS");
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        assert_eq!(
            libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr),
            0,
            "SIOCGIFFLAGS lo"
        );
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &mut ifr),
            0,
            "SIOCSIFFLAGS lo"
        );
        libc::close(fd);
    }
}
