//! An unprivileged peer attacking an HTTP endpoint (the agent's and the CSI proxy's
//! metrics): many connections, each sending half a request and holding it open.

/// The attacker: a child process running as uid and gid 65534 that holds its connections
/// open until dropped (killed and reaped).
pub struct Nobody(libc::pid_t);

impl Drop for Nobody {
    fn drop(&mut self) {
        // SAFETY: kill(2) and waitpid(2) of the child this module forked.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

/// Opens `n` TCP connections to 127.0.0.1:`port` from a child running as uid and gid 65534,
/// each sending the first line of a request and never the rest; returns the child once
/// they are all open (it holds them until dropped) and how many connected.
pub fn unfinished_requests_as_nobody(port: u16, n: usize) -> (Nobody, usize) {
    let mut pipe = [0; 2];
    // SAFETY: pipe(2) into a two-int array.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    let line = b"GET /metrics HTTP/1.1\r\n";
    // SAFETY: the child makes only system calls (no allocation, no lock) and never
    // returns: it waits to be killed.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: plain system calls in the child; it ends with _exit or is killed.
        unsafe {
            let nofile = libc::rlimit {
                rlim_cur: 4096,
                rlim_max: 4096,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &nofile);
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                libc::_exit(3);
            }
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_port = port.to_be();
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let mut connected: u32 = 0;
            for _ in 0..n {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                if fd < 0 {
                    break;
                }
                let ok = libc::connect(
                    fd,
                    (&addr as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                ) == 0;
                if ok {
                    libc::write(fd, line.as_ptr().cast(), line.len());
                    connected += 1;
                }
            }
            libc::write(pipe[1], (&connected as *const u32).cast(), 4);
            loop {
                libc::pause();
            }
        }
    }
    let mut connected = [0u8; 4];
    // SAFETY: reading four bytes from the pipe into a four-byte buffer.
    let read = unsafe { libc::read(pipe[0], connected.as_mut_ptr().cast(), 4) };
    // SAFETY: closing the pipe's two ends, owned here.
    unsafe {
        libc::close(pipe[0]);
        libc::close(pipe[1]);
    }
    assert_eq!(read, 4, "the helper dropped its privileges and connected");
    (Nobody(pid), u32::from_ne_bytes(connected) as usize)
}
