//! sd_notify(3) without a library: readiness, reload, stop, status and watchdog
//! datagrams to the supervisor's `NOTIFY_SOCKET`.
//!
//! The protocol is one `AF_UNIX` datagram per message, `KEY=value` lines separated by
//! newlines, sent to the socket named in `NOTIFY_SOCKET`: a filesystem path, or an
//! abstract socket when it starts with `@`. Under runit or from a shell the variable is
//! absent and every call is a cheap no-op. A send never blocks: a message the manager's
//! full queue cannot take is dropped. Nothing here unsets the variables: the agent
//! never forks helpers that could mistake them for their own.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends sd_notify messages to the service manager, or nothing when there is none.
#[derive(Clone, Debug)]
pub struct Notifier {
    socket: Option<SocketAddr>,
    watchdog: Option<Duration>,
}

/// Why the sd_notify environment could not be used.
#[derive(Debug)]
pub enum NotifyEnvError {
    /// `NOTIFY_SOCKET` is neither an absolute path nor `@abstract`, or is too long.
    Socket { value: String, source: io::Error },
    /// `WATCHDOG_USEC` is not a positive integer.
    WatchdogUsec(String),
    /// `WATCHDOG_PID` is not a process id.
    WatchdogPid(String),
}

impl fmt::Display for NotifyEnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyEnvError::Socket { value, .. } => {
                write!(f, "unusable NOTIFY_SOCKET {value:?}")
            }
            NotifyEnvError::WatchdogUsec(v) => {
                write!(
                    f,
                    "WATCHDOG_USEC {v:?} is not a positive number of microseconds"
                )
            }
            NotifyEnvError::WatchdogPid(v) => write!(f, "WATCHDOG_PID {v:?} is not a pid"),
        }
    }
}

impl std::error::Error for NotifyEnvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NotifyEnvError::Socket { source, .. } => Some(source),
            NotifyEnvError::WatchdogUsec(_) | NotifyEnvError::WatchdogPid(_) => None,
        }
    }
}

impl Notifier {
    /// A notifier that sends `socket` its messages; `watchdog` is the full watchdog
    /// timeout (what `WATCHDOG_USEC` says), or `None` when there is no watchdog.
    pub fn new(socket: SocketAddr, watchdog: Option<Duration>) -> Notifier {
        Notifier {
            socket: Some(socket),
            watchdog,
        }
    }

    /// A notifier whose every call does nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            socket: None,
            watchdog: None,
        }
    }

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the process
    /// environment. An absent (or empty) `NOTIFY_SOCKET` gives a disabled notifier.
    pub fn from_env() -> Result<Notifier, NotifyEnvError> {
        Notifier::from_vars(|key| std::env::var_os(key), std::process::id())
    }

    /// [`Notifier::from_env`] over any source of variables, so that tests need not
    /// change the process environment; `our_pid` is compared with `WATCHDOG_PID`.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<OsString>,
        our_pid: u32,
    ) -> Result<Notifier, NotifyEnvError> {
        let value = match var("NOTIFY_SOCKET") {
            Some(v) if !v.is_empty() => v,
            _ => return Ok(Notifier::disabled()),
        };
        let socket = parse_socket(value.as_bytes()).map_err(|source| NotifyEnvError::Socket {
            value: value.to_string_lossy().into_owned(),
            source,
        })?;
        Ok(Notifier {
            socket: Some(socket),
            watchdog: parse_watchdog(&var, our_pid)?,
        })
    }

    /// Whether messages go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// `READY=1`: startup is finished, or a reload is.
    pub fn ready(&self) -> io::Result<()> {
        self.send("READY=1")
    }

    /// `RELOADING=1` with `MONOTONIC_USEC`, which systemd 253 and later want so that
    /// they can tell this reload from an earlier one. Send [`Notifier::ready`] when
    /// the reload is done. Older systemd ignores the extra line.
    pub fn reloading(&self) -> io::Result<()> {
        if !self.is_enabled() {
            return Ok(());
        }
        let usec = monotonic_usec()?;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"))
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1")
    }

    /// `STATUS=<text>`, shown by `systemctl status`. Control characters (newlines
    /// among them) become spaces so the status stays one line.
    pub fn status(&self, text: &str) -> io::Result<()> {
        if !self.is_enabled() {
            return Ok(());
        }
        let line: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.send(&format!("STATUS={line}"))
    }

    /// `WATCHDOG=1`: the keep-alive ping. Does nothing when there is no watchdog, or
    /// when `WATCHDOG_PID` named another process, whose watchdog it would be.
    pub fn watchdog(&self) -> io::Result<()> {
        if self.watchdog.is_none() {
            return Ok(());
        }
        self.send("WATCHDOG=1")
    }

    /// How often to call [`Notifier::watchdog`]: half the timeout, as sd_watchdog_enabled(3)
    /// recommends, so that one late ping is not fatal. `None` when there is no watchdog.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Sends one datagram from a fresh unbound socket, as libsystemd does: nothing is
    /// kept open between messages, and a restarted manager is found again by address.
    ///
    /// The socket does not block, as libsystemd's sd_notify sends with `MSG_DONTWAIT`:
    /// these calls come from the run loop, and a manager that has stopped reading (PID 1
    /// busy or stuck, its queue of `net.unix.max_dgram_qlen` datagrams full) must not
    /// stop it, SIGTERM's handling included. A message that would block is dropped and
    /// logged at debug level; the next status or watchdog ping is sent afresh.
    fn send(&self, message: &str) -> io::Result<()> {
        let Some(addr) = &self.socket else {
            return Ok(());
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        let sent = match socket.send_to_addr(message.as_bytes(), addr) {
            Ok(sent) => sent,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let first = message.lines().next().unwrap_or_default();
                crate::log::debug(
                    "sd_notify message dropped: the service manager's queue is full",
                    &[("message", &first)],
                );
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if sent != message.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "sd_notify datagram cut short: {sent} of {} bytes",
                    message.len()
                ),
            ));
        }
        Ok(())
    }
}

fn parse_socket(value: &[u8]) -> io::Result<SocketAddr> {
    match value.split_first() {
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        Some((b'/', _)) => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(value)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an absolute path or an @abstract name (vsock is not supported)",
        )),
    }
}

fn parse_watchdog(
    var: &impl Fn(&str) -> Option<OsString>,
    our_pid: u32,
) -> Result<Option<Duration>, NotifyEnvError> {
    let Some(usec) = var("WATCHDOG_USEC") else {
        return Ok(None);
    };
    let usec = usec.to_string_lossy().into_owned();
    let micros = match usec.parse::<u64>() {
        Ok(n) if n > 0 => n,
        _ => return Err(NotifyEnvError::WatchdogUsec(usec)),
    };
    if let Some(pid) = var("WATCHDOG_PID") {
        let pid = pid.to_string_lossy().into_owned();
        match pid.parse::<u32>() {
            Ok(p) if p == our_pid => {}
            Ok(_) => return Ok(None),
            Err(_) => return Err(NotifyEnvError::WatchdogPid(pid)),
        }
    }
    Ok(Some(Duration::from_micros(micros)))
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
///
/// `std::time::Instant` reads this very clock on Linux but never shows its absolute
/// value, and `/proc/uptime` is the boot-time clock (it counts suspend) with only
/// centisecond precision, so neither will do. Instead this calls `clock_gettime(2)`
/// through a one-line declaration against the C library that std already links (glibc,
/// or musl in the static build), which avoids a dependency on the `libc` crate.
pub fn monotonic_usec() -> io::Result<u64> {
    clock::monotonic_usec()
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod clock {
    use std::io;

    /// `struct timespec` on 64-bit Linux, for glibc and musl alike: `time_t` and
    /// `long` are both 64 bits wide there.
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }

    /// `CLOCK_MONOTONIC` from <linux/time.h>; the same number on every architecture.
    const CLOCK_MONOTONIC: i32 = 1;

    unsafe extern "C" {
        fn clock_gettime(clock_id: i32, tp: *mut Timespec) -> i32;
    }

    pub fn monotonic_usec() -> io::Result<u64> {
        let mut ts = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable `struct timespec` for the duration of the
        // call, and clock_gettime writes nothing else.
        let rc = unsafe { clock_gettime(CLOCK_MONOTONIC, &mut ts) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let secs = u64::try_from(ts.tv_sec).map_err(|_| io::Error::other("negative clock"))?;
        let nanos = u64::try_from(ts.tv_nsec).map_err(|_| io::Error::other("negative clock"))?;
        Ok(secs * 1_000_000 + nanos / 1_000)
    }
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
mod clock {
    use std::io;

    // The agent is built for 64-bit Linux only; elsewhere a reload goes unannounced
    // with a clear error rather than a guessed `struct timespec` layout.
    pub fn monotonic_usec() -> io::Result<u64> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "CLOCK_MONOTONIC is only read on 64-bit Linux",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A bound socket standing in for the service manager, in a fresh temp dir.
    struct Manager {
        socket: UnixDatagram,
        dir: std::path::PathBuf,
    }

    impl Manager {
        fn new(name: &str) -> Manager {
            let dir = std::env::temp_dir().join(format!("felhom-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let socket = UnixDatagram::bind(dir.join("notify")).unwrap();
            socket.set_nonblocking(true).unwrap();
            Manager { socket, dir }
        }

        fn notifier(&self) -> Notifier {
            let addr = SocketAddr::from_pathname(self.dir.join("notify")).unwrap();
            Notifier::new(addr, None)
        }

        /// Fills the queue as a manager that stopped reading; how many it took.
        fn fill(&self) -> usize {
            let filler = UnixDatagram::unbound().unwrap();
            filler.set_nonblocking(true).unwrap();
            let mut queued = 0;
            loop {
                match filler.send_to(b"X=1", self.dir.join("notify")) {
                    Ok(_) => queued += 1,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return queued,
                    Err(e) => panic!("filling the queue: {e}"),
                }
                assert!(queued < 1_000_000, "the queue never filled");
            }
        }

        /// Every datagram queued, read without waiting.
        fn drain(&self) -> Vec<String> {
            let mut buf = [0u8; 256];
            let mut got = Vec::new();
            while let Ok(n) = self.socket.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            got
        }
    }

    impl Drop for Manager {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn a_message_to_a_full_queue_is_dropped_without_blocking() {
        let manager = Manager::new("notify-full");
        let queued = manager.fill();
        let notifier = manager.notifier();
        // Sent from a thread, so that a send that blocks fails the test at the deadline
        // instead of hanging it; draining the queue then lets that thread end.
        let (tx, rx) = mpsc::channel();
        let sender = std::thread::Builder::new()
            .name("notify test".into())
            .spawn(move || {
                let _ = tx.send(notifier.status("pass 1: converged"));
            })
            .unwrap();
        let result = rx.recv_timeout(Duration::from_secs(10));
        let drained = manager.drain();
        sender.join().unwrap();
        assert!(matches!(result, Ok(Ok(()))), "{result:?}");
        assert_eq!(drained.len(), queued, "the status was dropped");
        assert!(drained.iter().all(|d| d == "X=1"));
        // Once the manager reads again, messages arrive as before.
        manager.notifier().status("pass 2: converged").unwrap();
        assert_eq!(manager.drain(), ["STATUS=pass 2: converged"]);
    }
}
