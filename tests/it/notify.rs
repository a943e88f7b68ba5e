//! sd_notify: the exact datagrams a listening "service manager" receives.

use felhom_agent::notify::{monotonic_usec, Notifier, NotifyEnvError};
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A datagram socket standing in for systemd, bound in its own temp dir.
struct Manager {
    socket: UnixDatagram,
    dir: Option<PathBuf>,
}

impl Manager {
    fn at_path(tag: &str) -> (Manager, PathBuf) {
        // Unique per test (the tag) and per run (the pid).
        let dir = std::env::temp_dir().join(format!("felhom-notify-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        (
            Manager {
                socket,
                dir: Some(dir),
            },
            path,
        )
    }

    fn abstract_named(name: &str) -> Manager {
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        Manager { socket, dir: None }
    }

    /// The next datagram, waiting at most two seconds.
    fn recv(&self) -> String {
        self.socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).expect("a datagram within 2 s");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// Asserts that nothing is waiting (the socket is never blocked on).
    fn assert_empty(&self) {
        self.socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let got = self.socket.recv(&mut buf);
        assert_eq!(
            got.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "unexpected datagram"
        );
        self.socket.set_nonblocking(false).unwrap();
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn unique_abstract(tag: &str) -> String {
    format!("felhom-notify-test-{tag}-{}", std::process::id())
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let map: HashMap<String, OsString> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn path_socket_gets_exact_datagrams() {
    let (manager, path) = Manager::at_path("exact");
    let n = Notifier::new(
        SocketAddr::from_pathname(&path).unwrap(),
        Some(Duration::from_secs(120)),
    );
    assert!(n.is_enabled());
    n.ready().unwrap();
    assert_eq!(manager.recv(), "READY=1");
    n.stopping().unwrap();
    assert_eq!(manager.recv(), "STOPPING=1");
    n.watchdog().unwrap();
    assert_eq!(manager.recv(), "WATCHDOG=1");
    n.status("converging 3 guests").unwrap();
    assert_eq!(manager.recv(), "STATUS=converging 3 guests");
    n.status("two\nlines\r\tand a tab").unwrap();
    assert_eq!(manager.recv(), "STATUS=two lines  and a tab");
    manager.assert_empty();
    assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(60)));
}

#[test]
fn abstract_socket_from_env() {
    let name = unique_abstract("env");
    let manager = Manager::abstract_named(&name);
    let at = format!("@{name}");
    let n = Notifier::from_vars(
        env(&[
            ("NOTIFY_SOCKET", &at),
            ("WATCHDOG_USEC", "30000000"),
            ("WATCHDOG_PID", "4242"),
        ]),
        4242,
    )
    .unwrap();
    assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(15)));
    n.ready().unwrap();
    assert_eq!(manager.recv(), "READY=1");
    n.watchdog().unwrap();
    assert_eq!(manager.recv(), "WATCHDOG=1");
}

#[test]
fn reloading_carries_the_monotonic_clock() {
    let name = unique_abstract("reload");
    let manager = Manager::abstract_named(&name);
    let n = Notifier::new(SocketAddr::from_abstract_name(&name).unwrap(), None);
    let before = monotonic_usec().unwrap();
    n.reloading().unwrap();
    let after = monotonic_usec().unwrap();
    let got = manager.recv();
    let usec: u64 = got
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("unexpected datagram {got:?}"))
        .parse()
        .unwrap();
    assert!(
        before <= usec && usec <= after,
        "{before} <= {usec} <= {after}"
    );
}

#[test]
fn monotonic_clock_advances_with_instant() {
    // Instant reads CLOCK_MONOTONIC too, so the two must agree on elapsed time.
    let start_usec = monotonic_usec().unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(5) {
        std::hint::spin_loop();
    }
    let elapsed = monotonic_usec().unwrap() - start_usec;
    assert!(
        (5_000..1_000_000).contains(&elapsed),
        "monotonic clock moved {elapsed} µs over at least 5 ms"
    );
}

#[test]
fn watchdog_for_another_pid_is_ignored() {
    let name = unique_abstract("otherpid");
    let manager = Manager::abstract_named(&name);
    let at = format!("@{name}");
    let n = Notifier::from_vars(
        env(&[
            ("NOTIFY_SOCKET", &at),
            ("WATCHDOG_USEC", "30000000"),
            ("WATCHDOG_PID", "1"),
        ]),
        4242,
    )
    .unwrap();
    assert_eq!(n.watchdog_interval(), None);
    n.watchdog().unwrap();
    manager.assert_empty();
    n.ready().unwrap();
    assert_eq!(manager.recv(), "READY=1");
}

#[test]
fn absent_socket_is_a_no_op() {
    for vars in [&[][..], &[("NOTIFY_SOCKET", "")][..]] {
        let n = Notifier::from_vars(env(vars), 1).unwrap();
        assert!(!n.is_enabled());
        n.ready().unwrap();
        n.reloading().unwrap();
        n.stopping().unwrap();
        n.status("x").unwrap();
        n.watchdog().unwrap();
        assert_eq!(n.watchdog_interval(), None);
    }
    // WATCHDOG_USEC without a socket is useless, and not an error.
    let n = Notifier::from_vars(env(&[("WATCHDOG_USEC", "1000")]), 1).unwrap();
    assert!(!n.is_enabled());
    assert_eq!(n.watchdog_interval(), None);
}

#[test]
fn bad_environment_is_reported() {
    let check = |vars: &[(&str, &str)], want: &str| {
        let err = Notifier::from_vars(env(vars), 7).unwrap_err();
        assert_eq!(err.to_string(), want);
        err
    };
    let err = check(
        &[("NOTIFY_SOCKET", "relative/sock")],
        "unusable NOTIFY_SOCKET \"relative/sock\"",
    );
    assert!(matches!(err, NotifyEnvError::Socket { .. }));
    assert!(std::error::Error::source(&err).is_some());
    check(
        &[("NOTIFY_SOCKET", "vsock:2:1234")],
        "unusable NOTIFY_SOCKET \"vsock:2:1234\"",
    );
    let long = format!("/{}", "x".repeat(200));
    check(
        &[("NOTIFY_SOCKET", &long)],
        &format!("unusable NOTIFY_SOCKET {long:?}"),
    );
    check(
        &[("NOTIFY_SOCKET", "/run/n"), ("WATCHDOG_USEC", "0")],
        "WATCHDOG_USEC \"0\" is not a positive number of microseconds",
    );
    check(
        &[("NOTIFY_SOCKET", "/run/n"), ("WATCHDOG_USEC", "2s")],
        "WATCHDOG_USEC \"2s\" is not a positive number of microseconds",
    );
    check(
        &[
            ("NOTIFY_SOCKET", "/run/n"),
            ("WATCHDOG_USEC", "5"),
            ("WATCHDOG_PID", "me"),
        ],
        "WATCHDOG_PID \"me\" is not a pid",
    );
}

#[test]
fn send_errors_are_returned() {
    // Nobody listens at this path: the error comes back instead of a panic.
    let (manager, path) = Manager::at_path("gone");
    drop(manager);
    let n = Notifier::new(SocketAddr::from_pathname(&path).unwrap(), None);
    assert!(n.ready().is_err());
}
