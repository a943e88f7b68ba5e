//! The long-running agent: `felhom-agent run`.
//!
//! Start-up: load and validate config and desired state, install signal handlers, trust
//! the CA, open the journal, recover every op left in flight, report READY=1, then pass
//! at once and every `interval` (with a little jitter).
//!
//! One run loop on the main thread takes a closed set of [`Event`]s from one `select!`:
//! a signal (from the `signals` thread, which does nothing else), a lane result, an
//! observation (from the `observer` thread), a tick, a watchdog ping, a fatal journal
//! error, a reload read or a desired-state fetch made by the `loader` thread, the
//! fetch timer, or the death of an internal thread.
//! Threads: `signals`, `observer`, `loader`, `reporter` (once `report_url` is used),
//! `journal` (the journal's writer), `recovery` during start-up, up to `max_parallel`
//! `lane worker N`, up to two `config reader N` while the node is read, and `shutdown`
//! while stopping. All are joined before `run` returns.
//!
//! A remote desired-state source (`desired_url`) is asked at start (the first pass
//! waits for that answer, which is bounded by the fetch timeout), on every SIGHUP,
//! and every `desired_interval_secs`. A new state is swapped in at once and a pass
//! follows; a failure changes nothing but the status.
//!
//! Stopping is bounded: on SIGTERM no new action starts and the observer stops at its
//! next request; running actions get `drain_timeout`; then every wait is cancelled and
//! the threads are joined, which takes at most one request's timeout. A second signal
//! at any point exits at once.

mod loader;
mod observer;
mod outputs;
mod reload;
mod reporter;
mod signals;
mod startup;

use crate::agent::{self, Agent, AppError, Loaded};
use crate::cancel::CancelSource;
use crate::config::{Fixed, Live};
use crate::desired::{DesiredState, Provider, Refresh, SourceStatus};
use crate::engine::{Engine, PassReport};
use crate::exit::ExitCode;
use crate::lanes::JobResult;
use crate::log;
use crate::notify::Notifier;
use crate::remote::ReportTarget;
use crate::telemetry::FetchOutcome;
use crossbeam_channel::{after, never, select, Receiver};
use loader::{Loader, Reply as LoaderReply};
use observer::{Observer, Reply};
use reporter::Reporter;
use signals::{event_of_signal, SignalThread};
use startup::{recover_watching_signals, Recovery};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything that can wake the run loop.
pub enum Event {
    /// Time for a pass.
    Tick,
    /// SIGHUP: re-read config and desired state.
    Reload,
    /// The `loader` thread has read config and desired state for a reload (and asked a
    /// remote source, saying what it did).
    Loaded(Box<Result<Loaded, AppError>>, Option<FetchOutcome>),
    /// The `loader` thread has asked the remote source again; the provider comes back.
    Fetched(Box<dyn Provider>, Refresh),
    /// Time to ask the remote desired-state source again.
    FetchDue,
    /// SIGUSR1: pass now.
    PassNow,
    /// SIGTERM or SIGINT (the signal number).
    Shutdown(i32),
    /// A guest's job finished.
    Result(JobResult),
    /// Time to tell systemd's watchdog we are alive.
    Watchdog,
    /// The journal could not be made durable.
    JournalFatal(String),
    /// The drain bound passed during shutdown.
    DrainDeadline,
    /// A staged job falls due (a guest's `up` delay has passed).
    Stage,
    /// The `observer` thread has read the node for a pass.
    Observation(Reply),
    /// An internal thread ended (its channel closed): a bug. The agent exits non-zero so
    /// that its supervisor restarts it and recovery runs.
    ThreadDied(&'static str),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Tick => f.write_str("tick"),
            Event::Reload => f.write_str("reload (SIGHUP)"),
            Event::Loaded(r, _) => match &**r {
                Ok(_) => f.write_str("reload read"),
                Err(_) => f.write_str("reload read, with errors"),
            },
            Event::Fetched(_, r) => match r {
                Refresh::New(_) => f.write_str("desired state fetched"),
                Refresh::Unchanged => f.write_str("desired state confirmed"),
                Refresh::Failed(_) => f.write_str("desired state fetch failed"),
            },
            Event::FetchDue => f.write_str("desired state fetch due"),
            Event::PassNow => f.write_str("pass now (SIGUSR1)"),
            Event::Shutdown(sig) => write!(f, "shutdown (signal {sig})"),
            Event::Result(r) => write!(f, "result for {}", r.vmid),
            Event::Watchdog => f.write_str("watchdog"),
            Event::JournalFatal(e) => write!(f, "journal fatal: {e}"),
            Event::DrainDeadline => f.write_str("drain deadline"),
            Event::Stage => f.write_str("next startup order due"),
            Event::Observation(o) => write!(f, "observation for generation {}", o.generation),
            Event::ThreadDied(t) => write!(f, "the {t} thread ended"),
        }
    }
}

/// The run loop's state.
struct Daemon {
    config_path: PathBuf,
    /// What the agent was built from; a reload never changes it.
    fixed: Fixed,
    /// What a reload may change.
    live: Live,
    /// The certificates trusted since start (the TLS stack reads them once).
    trust: crate::trust::TrustPlan,
    /// `None` while it is lent to the loader for a fetch.
    provider: Option<Box<dyn Provider>>,
    /// The remote source's status as of its last answer.
    source: Option<SourceStatus>,
    /// The last fetch error logged as a warning, so that a lasting outage warns once.
    source_warned: Option<String>,
    desired: DesiredState,
    engine: Engine,
    notifier: Notifier,
    reload_error: Option<String>,
    last_report: Option<PassReport>,
    journal: crate::journal::Journal,
    telemetry: crate::telemetry::Telemetry,
    observer: Observer,
    loader: Loader,
    /// Started on first use.
    reporter: Option<Reporter>,
    /// Where the status goes after every pass.
    report: Option<ReportTarget>,
    /// The loader is reading a reload or fetching.
    loading: bool,
    /// A reload was asked for while the loader was busy.
    reload_due: bool,
    /// A fetch fell due while the loader was busy.
    fetch_due: bool,
    /// When the remote source is asked next (`None`: no remote source, or a fetch is
    /// under way).
    next_fetch: Option<Instant>,
    /// The first answer of the remote source is awaited: passes wait for it, so that
    /// the agent does not act on a state kept from an earlier run that the source has
    /// since changed.
    first_fetch: bool,
    /// Bumped by every reload that swaps the desired state in: an observation made for
    /// an older one is discarded.
    generation: u64,
    /// An observation is under way.
    observing: bool,
    /// A pass was asked for while one was being observed.
    pass_due: bool,
}

/// `felhom-agent run`. Returns the exit code for a clean stop.
pub fn run(config_path: &Path) -> Result<ExitCode, AppError> {
    let loaded = agent::load(config_path)?;
    let mut cancel = CancelSource::new();
    let agent = Agent::start(&loaded, &cancel.token())?;
    let Loaded {
        config,
        provider,
        desired,
        report,
        ..
    } = loaded;
    // Installed before recovery and readiness, so no signal is lost.
    let signals = SignalThread::install()?;
    let notifier = Notifier::from_env().unwrap_or_else(|e| {
        log::warn("sd_notify disabled", &[("error", &e)]);
        Notifier::disabled()
    });
    let reload = match recover_watching_signals(&agent, &mut cancel, &signals.events, &notifier)? {
        Recovery::Done { reload } => reload,
        Recovery::Stopped(sig) => {
            log::info("stopped during recovery", &[("signal", &sig)]);
            agent.journal.close()?;
            drop(signals);
            return Ok(ExitCode::Ok);
        }
    };
    let engine = agent.engine(&config.live, cancel.token(), None);
    let _ = notifier.ready();
    log::info(
        "agent ready",
        &[
            ("node", &agent.fixed.node),
            ("guests", &desired.guests.len()),
            ("source", &provider.name()),
        ],
    );
    let observer = Observer::spawn(engine.reader())
        .map_err(|e| AppError::Io("starting the observer thread".into(), e))?;
    let loader = Loader::spawn(config_path.to_path_buf(), agent.fixed.state_dir.clone())
        .map_err(|e| AppError::Io("starting the loader thread".into(), e))?;
    let remote = provider.refresh_every().is_some();
    let mut d = Daemon {
        config_path: config_path.to_path_buf(),
        trust: crate::trust::TrustPlan::of(&agent.fixed, &config.live),
        fixed: agent.fixed,
        live: config.live,
        source: provider.source_status(),
        source_warned: None,
        provider: Some(provider),
        desired,
        engine,
        notifier,
        reload_error: None,
        last_report: None,
        journal: agent.journal,
        telemetry: Default::default(),
        observer,
        loader,
        reporter: None,
        report,
        loading: false,
        reload_due: false,
        fetch_due: false,
        next_fetch: None,
        first_fetch: remote,
        generation: 0,
        observing: false,
        pass_due: false,
    };
    if reload {
        // The reload asks the source too.
        d.start_reload();
    } else if remote {
        d.start_fetch();
    }
    let code = d.run_loop(&signals.events);
    // Whatever ended the loop, nothing may keep a lane waiting: cancel, then join every
    // thread, still answering a second signal.
    cancel.cancel();
    let Daemon {
        engine,
        journal,
        observer,
        loader,
        reporter,
        ..
    } = d;
    join_all(engine, observer, loader, reporter, &signals.events);
    if let Err(e) = journal.close() {
        log::error("closing the journal", &[("error", &log::Chain(&e))]);
    }
    drop(signals);
    log::info("agent stopped", &[("exit", &code.code())]);
    Ok(code)
}

/// How long the last joins may take once everything is cancelled: a request already on
/// the wire ends within the client's timeout (30 s), a fetch of the desired state
/// within [`crate::desired::FETCH_TIMEOUT`], a report within
/// [`crate::remote::REPORT_TIMEOUT`].
const JOIN_BOUND: Duration = Duration::from_secs(35);

/// Joins the lane workers, the observer, the loader and the reporter on a `shutdown`
/// thread while this thread keeps answering signals: a second SIGTERM or SIGINT exits
/// at once. Should a thread outlive [`JOIN_BOUND`] (it cannot, short of a bug), the
/// agent exits without it.
fn join_all(
    mut engine: Engine,
    observer: Observer,
    loader: Loader,
    reporter: Option<Reporter>,
    signals: &Receiver<i32>,
) {
    let (done_tx, done) = crossbeam_channel::bounded::<()>(1);
    let joiner = std::thread::Builder::new()
        .name("shutdown".into())
        .spawn(move || {
            drop(observer);
            drop(loader);
            drop(reporter);
            engine.close_lanes(|_| {});
            drop(engine);
            let _ = done_tx.send(());
        });
    let joiner = match joiner {
        Ok(j) => j,
        Err(e) => {
            log::error("cannot start the shutdown thread", &[("error", &e)]);
            return;
        }
    };
    let deadline = after(JOIN_BOUND);
    loop {
        select! {
            recv(done) -> _ => {
                let _ = joiner.join();
                return;
            }
            recv(signals) -> s => {
                if let Ok(Event::Shutdown(sig)) = s.map(event_of_signal) {
                    log::warn("second signal: exiting at once", &[("signal", &sig)]);
                    std::process::exit(ExitCode::Failure.code());
                }
            }
            recv(deadline) -> _ => {
                log::error("threads did not end in time; exiting without them", &[]);
                return;
            }
        }
    }
}

impl Daemon {
    fn run_loop(&mut self, signals: &Receiver<i32>) -> ExitCode {
        let mut next_pass = Instant::now();
        let watchdog = self.notifier.watchdog_interval();
        let mut next_watchdog = watchdog.map(|w| Instant::now() + w);
        loop {
            let tick = after(next_pass.saturating_duration_since(Instant::now()));
            let dog = next_watchdog.map_or(never(), |t| {
                after(t.saturating_duration_since(Instant::now()))
            });
            let stage = self.engine.next_wake().map_or(never(), |t| {
                after(t.saturating_duration_since(Instant::now()))
            });
            let fetch = self.next_fetch.map_or(never(), |t| {
                after(t.saturating_duration_since(Instant::now()))
            });
            let event = select! {
                recv(signals) -> s => match s {
                    Ok(s) => event_of_signal(s),
                    Err(_) => Event::ThreadDied("signals"),
                },
                recv(self.engine.results()) -> r => match r {
                    Ok(r) => Event::Result(r),
                    Err(_) => Event::ThreadDied("lane results"),
                },
                recv(self.engine.fatal()) -> e => match e {
                    Ok(e) => Event::JournalFatal(e),
                    Err(_) => Event::ThreadDied("journal fatal"),
                },
                recv(self.observer.results) -> o => match o {
                    Ok(o) => Event::Observation(o),
                    Err(_) => Event::ThreadDied("observer"),
                },
                recv(self.loader.results) -> l => match l {
                    Ok(LoaderReply::Reloaded(l, fetched)) => Event::Loaded(l, fetched),
                    Ok(LoaderReply::Fetched(p, r)) => Event::Fetched(p, r),
                    Err(_) => Event::ThreadDied("loader"),
                },
                recv(tick) -> _ => Event::Tick,
                recv(fetch) -> _ => Event::FetchDue,
                recv(dog) -> _ => Event::Watchdog,
                recv(stage) -> _ => Event::Stage,
            };
            log::debug("event", &[("event", &event)]);
            match event {
                // Until the source's first answer, a tick waits: the answer brings a
                // pass at once. SIGUSR1 passes with the state in force all the same.
                Event::Tick if self.first_fetch => {
                    next_pass = Instant::now() + jittered(self.live.interval);
                }
                Event::Tick | Event::PassNow => {
                    self.request_pass();
                    next_pass = Instant::now() + jittered(self.live.interval);
                }
                Event::Observation(o) => self.plan_observed(o),
                Event::Reload => self.start_reload(),
                Event::Loaded(loaded, fetched) => {
                    self.on_reloaded(*loaded, fetched);
                    next_pass = Instant::now();
                }
                Event::Fetched(provider, refresh) => {
                    if self.on_fetched(provider, refresh) {
                        next_pass = Instant::now();
                    }
                }
                Event::FetchDue => {
                    self.next_fetch = None;
                    self.start_fetch();
                }
                Event::Result(r) => {
                    if let Some(report) = self.engine.on_result(r) {
                        self.pass_done(report);
                    }
                }
                Event::Watchdog => {
                    let _ = self.notifier.watchdog();
                    next_watchdog = watchdog.map(|w| Instant::now() + w);
                }
                Event::JournalFatal(e) => {
                    log::error(
                        "journal cannot be made durable; exiting so that recovery runs",
                        &[("error", &e)],
                    );
                    return ExitCode::JournalSync;
                }
                Event::Shutdown(sig) => return self.shutdown(sig, signals),
                Event::ThreadDied(which) => {
                    // No more watchdog pings: the loop ends here, and so does the agent.
                    log::error(
                        "an internal thread ended; exiting so that the supervisor restarts the agent and recovery runs",
                        &[("thread", &which)],
                    );
                    return ExitCode::Internal;
                }
                Event::Stage => {
                    for report in self.engine.on_wake() {
                        self.pass_done(report);
                    }
                }
                Event::DrainDeadline => {}
            }
        }
    }

    /// Asks the observer to read the node for a pass (or remembers to, when it is busy).
    fn request_pass(&mut self) {
        if self.observing {
            self.pass_due = true;
            return;
        }
        self.observing = true;
        self.observer.request(observer::Request {
            generation: self.generation,
            desired: Arc::new(self.desired.clone()),
            held: self.engine.read_holds(&self.desired),
            settings: self.engine.plan_settings().clone(),
        });
    }

    /// Plans and dispatches a pass from the observer's answer.
    fn plan_observed(&mut self, o: Reply) {
        self.observing = false;
        if o.generation != self.generation {
            // The desired state was reloaded meanwhile: read the node again for it.
            self.request_pass();
            return;
        }
        let (_plan, done) = self
            .engine
            .start_observed_pass(&self.desired, o.result, o.started);
        if let Some(report) = done {
            self.pass_done(report);
        }
        if std::mem::take(&mut self.pass_due) {
            self.request_pass();
        }
    }

    /// Starts no new action, stops the observer at its next request, and lets running
    /// actions finish within the drain bound; the caller then cancels what is left (it
    /// stays in flight in the journal) and joins the threads. A second signal exits at
    /// once; every journal record is already whole on disk.
    fn shutdown(&mut self, sig: i32, signals: &Receiver<i32>) -> ExitCode {
        let _ = self.notifier.stopping();
        self.engine.stop_new();
        self.observer.stop();
        log::info(
            "stopping",
            &[
                ("signal", &sig),
                ("busy", &self.engine.busy()),
                ("drain_secs", &self.live.drain_timeout.as_secs()),
            ],
        );
        let deadline = after(self.live.drain_timeout);
        while self.engine.busy() > 0 {
            let event = select! {
                recv(signals) -> s => match s.map(event_of_signal) {
                    Ok(Event::Shutdown(sig)) => Event::Shutdown(sig),
                    Ok(_) => continue,
                    Err(_) => break,
                },
                recv(self.engine.results()) -> r => match r {
                    Ok(r) => Event::Result(r),
                    Err(_) => break,
                },
                recv(deadline) -> _ => Event::DrainDeadline,
            };
            match event {
                Event::Result(r) => {
                    if let Some(report) = self.engine.on_result(r) {
                        self.pass_done(report);
                    }
                }
                Event::Shutdown(sig) => {
                    log::warn("second signal: exiting at once", &[("signal", &sig)]);
                    std::process::exit(ExitCode::Failure.code());
                }
                _ => break,
            }
        }
        let busy = self.engine.busy();
        if busy > 0 {
            log::warn(
                "drain bound reached; in-flight ops stay in the journal for recovery",
                &[("busy", &busy)],
            );
        }
        ExitCode::Ok
    }
}

/// The interval with ±10 % jitter, so nodes started together do not poll in step.
fn jittered(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let permille = 900 + (nanos % 201);
    interval * permille / 1000
}
