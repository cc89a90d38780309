//! The connection budget: how many requests are in flight at once, grown while more connections
//! bring more throughput.
//!
//! Why adaptive: on this machine 8 connections already reach the disk's speed from an unthrottled
//! server (W1: 1.00× the speed-limit downloader), and each connection costs ~1 MB (hyper's
//! adaptive read buffer grows to ~400 KiB, and one or two of them are alive per connection: see
//! `writer.rs`), so 8 keeps a 4 GiB download near 25 MB. A server that caps each
//! connection (64 MiB/s per connection in the benchmark kit, like many object stores and CDNs)
//! needs 16–32 connections to fill the link. No fixed number serves both, so the budget starts
//! at `start` and climbs: every [`TICK`] it compares throughput with the rate measured before
//! the last step; a step that bought at least [`GAIN`] more is kept and a twice bigger one is
//! tried (8 → 12 → 20 → 32), or, when a second step again grew throughput in proportion to the
//! connections added (a per-connection cap, or long round trips), 32 at once and then doubling
//! steps (64, 128, 256) while each still pays in proportion; a step that did not pay is
//! given back and the budget stays where it was. It only climbs while requests are waiting for a
//! connection and the connections wait for data rather than for this machine ([`local_bound`]);
//! otherwise more connections cannot help. Because that gate keeps a full link from probing at
//! all, the first step can be large (+start/2) and early (after two ticks), which reaches 32
//! connections sooner on a capped server (figures: benches/README.md). Far from the data (a
//! response's headers [`FAR`] or more away) the first step goes to 32 at once after one tick:
//! there every request in flight needs its own connection for a whole round trip. Which waiting
//! request a freed connection goes to is the [`Gate`]'s rule.
use super::gate::{Gate, Lane, Permit};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

/// How often throughput is sampled.
pub const TICK: Duration = Duration::from_millis(250);
/// A step is kept when throughput grew by at least this factor.
pub const GAIN: f64 = 1.15;
/// A step whose throughput gain is at least this share of its connection gain goes to the ceiling.
const PROPORTIONAL: f64 = 0.8;
/// Where the second proportional step jumps to at once; doubling steps climb beyond it.
const JUMP_TO: usize = 32;
/// Files under way per connection the budget allows: small files spend much of their time
/// opening, syncing and renaming, not holding a connection, so a connection serves several.
const FILES_PER_CONNECTION: usize = 8;
/// Time to a response's headers from which the data counts as far away ([`Climber::far_from_the_data`]).
const FAR: Duration = Duration::from_millis(20);
/// Ticks before the first probe far from the data.
const FAR_WARMUP_TICKS: u32 = 1;
/// Ticks before the first probe.
const WARMUP_TICKS: u32 = 2;
/// Ticks after a change before its effect is judged (new connections must open and ramp up).
const SETTLE_TICKS: u32 = 1;
/// Fewest requests per second before their rate counts as a measure of work: below it (a few big
/// ranged requests) only bytes say whether a step paid.
const MIN_REQUEST_RATE: f64 = 16.0;

/// One tick's throughput: payload bytes and requests answered, each per second.
///
/// Bytes alone undervalue small files: far from the data a 4 KiB file costs a round trip, not
/// its bytes, so a step that answers twice the requests of a mix (a model and 500 logs) moves
/// few more bytes and would look as if it did not pay. A step pays when either grew.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    /// Bytes per second.
    pub bytes: f64,
    /// Requests answered (response headers received) per second.
    pub requests: f64,
}

impl Rate {
    fn mean(self, other: Rate) -> Rate {
        Rate { bytes: (self.bytes + other.bytes) / 2.0, requests: (self.requests + other.requests) / 2.0 }
    }

    fn is_idle(self) -> bool {
        self.bytes <= 0.0 && self.requests <= 0.0
    }

    /// How much more work `self` does than `before`: the larger of the byte ratio and, when
    /// `before` answered enough requests for their rate to mean something, the request ratio.
    fn growth_over(self, before: Rate) -> f64 {
        let bytes = if before.bytes > 0.0 { self.bytes / before.bytes } else { 0.0 };
        let requests = if before.requests >= MIN_REQUEST_RATE { self.requests / before.requests } else { 0.0 };
        bytes.max(requests)
    }
}

/// Ticks to wait before judging a step when a request takes `latency` to its response headers:
/// a new connection needs about three of those (handshake, request, first bytes) to carry data.
/// On a local link that is under one tick; at 100 ms round trips it is 2–3 ticks.
pub fn settle_ticks(latency: Duration) -> u32 {
    let ticks = (3.0 * latency.as_secs_f64() / TICK.as_secs_f64()).ceil();
    (ticks as u32).clamp(SETTLE_TICKS, 20)
}

/// What the climber decided after one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keep the budget.
    Hold,
    /// Add this many connections.
    Grow(usize),
    /// Take back this many connections (the last step did not pay) and stop climbing.
    Shrink(usize),
}

/// Hill climbing on the connection count (pure, so it can be unit-tested).
#[derive(Debug)]
pub struct Climber {
    level: usize,
    ceiling: usize,
    /// Rate before the pending step, and the step's size.
    pending: Option<(Rate, usize)>,
    /// Size of the next step: half the start at first, doubled after each step that paid, like
    /// TCP's slow start.
    next_step: usize,
    since_change: u32,
    /// Ticks a step needs before its effect shows: longer far from the data, where a new
    /// connection takes round trips to open and to bring its first byte ([`settle_ticks`]).
    settle: u32,
    /// Set when a step did not pay: the rate then. The climb resumes only when the work changes
    /// character ([`CHANGED`]: a plan's big file done and its small files left, or the reverse).
    frozen: Option<Rate>,
    /// The previous sample (the rate before a step is the mean of the last two).
    prev: Option<Rate>,
    /// Requests take [`FAR`] or more to answer (set before the first probe).
    far: bool,
    /// Steps taken so far, and steps kept.
    probes: u32,
    kept: u32,
}

impl Climber {
    /// Start at `start` connections, never above `ceiling`.
    pub fn new(start: usize, ceiling: usize) -> Self {
        let start = start.max(1);
        let next_step = (start / 2).max(2);
        Climber {
            level: start,
            ceiling: ceiling.max(start),
            pending: None,
            next_step,
            since_change: 0,
            settle: SETTLE_TICKS,
            frozen: None,
            prev: None,
            far: false,
            probes: 0,
            kept: 0,
        }
    }

    /// Judge each step after `ticks` ticks (at least `SETTLE_TICKS`).
    pub fn set_settle(&mut self, ticks: u32) {
        self.settle = ticks.max(SETTLE_TICKS);
    }

    /// The current budget.
    pub fn level(&self) -> usize {
        self.level
    }

    /// Requests take [`FAR`] or more to answer: before the first probe, make it a step to
    /// [`JUMP_TO`] connections at once. Far from the data a connection carries one request per
    /// round trip, so the doubling steps of a local link, each judged after several ticks,
    /// would spend seconds below the count the round trips need.
    pub fn far_from_the_data(&mut self) {
        if self.probes == 0 {
            self.next_step = self.next_step.max(JUMP_TO.saturating_sub(self.level));
            self.far = true;
        }
    }

    /// One sample: the last tick's `rate` and whether requests were waiting.
    pub fn sample(&mut self, rate: Rate, waiting: bool) -> Step {
        self.since_change += 1;
        let smoothed = match self.prev {
            Some(prev) if !prev.is_idle() => prev.mean(rate),
            _ => rate,
        };
        self.prev = Some(rate);
        // The first probe waits for the transfer to settle (connections opening, the first
        // chunk), so that a slow start is not mistaken for a low rate that any step would beat.
        // Far from the data the first step is to `JUMP_TO` ([`Self::far_from_the_data`]), which a
        // round trip per request needs anyway: it is taken after one tick.
        let settle = match (self.probes, self.far) {
            (0, true) => FAR_WARMUP_TICKS,
            (0, false) => WARMUP_TICKS.max(self.settle + 1),
            _ => self.settle,
        };
        if let Some(then) = self.frozen
            && changed(then, rate)
        {
            self.frozen = None;
            self.next_step = (self.level / 2).max(2);
            self.since_change = 0;
        }
        if self.frozen.is_some() || self.since_change <= settle {
            return Step::Hold;
        }
        if let Some((before, step)) = self.pending.take() {
            let growth = rate.growth_over(before);
            if growth < GAIN {
                self.frozen = Some(smoothed);
                self.level -= step;
                self.since_change = 0;
                return Step::Shrink(step);
            }
            // Throughput that grew in proportion to the connections added (at least 80% of it)
            // is the signature of a per-connection cap: go straight to the ceiling instead of
            // doubling, which would spend most of a 1 GiB download climbing.
            // Only after a first step that paid, so one noisy sample cannot open 32 connections.
            let before_level = (self.level - step) as f64;
            let proportional = growth >= 1.0 + PROPORTIONAL * step as f64 / before_level;
            self.next_step = if proportional && self.kept >= 1 {
                // Up to JUMP_TO at once (a capped link), then doubling: far from the data, small
                // files need a connection per round trip in flight, and each doubling is judged.
                if self.level < JUMP_TO { JUMP_TO - self.level } else { self.level }
            } else {
                step * 2
            };
            self.kept += 1;
        }
        if !waiting || self.level >= self.ceiling || rate.is_idle() {
            return Step::Hold;
        }
        let step = self.next_step.min(self.ceiling - self.level);
        self.pending = Some((smoothed, step));
        self.probes += 1;
        self.level += step;
        self.since_change = 0;
        Step::Grow(step)
    }
}

/// How many times more requests (or bytes) per second than when the climb stopped mark work of
/// another character, worth a new climb.
const CHANGED: f64 = 2.0;

/// Whether `now` is work of another character than `then`: many more requests answered (small
/// files after a big one), many more bytes (a big file after small ones), or far fewer bytes
/// while requests go on (the big file of a mix done, its small files left: they answer about as
/// many requests as they did beside it, but each needs a connection per round trip).
fn changed(then: Rate, now: Rate) -> bool {
    let busy = now.requests >= MIN_REQUEST_RATE;
    let requests = busy && now.requests >= CHANGED * then.requests;
    let more_bytes = then.bytes > 0.0 && now.bytes >= CHANGED * then.bytes;
    let fewer_bytes = busy && now.bytes * CHANGED <= then.bytes;
    requests || more_bytes || fewer_bytes
}

/// Whether the tick's pieces show that this machine, not the network, sets the pace: nearly
/// every piece of a chunk body was already received when its connection asked for it (the
/// connections wait for the disk or the CPU, not for data), so more connections cannot help.
/// Measured per tick on a 4 GiB blob: from unthrottled local nginx 92–100% of the pieces were
/// ready once the transfer settled (so a probe, which cost ~1 MB per connection and never paid
/// there, is not taken); from the kit's capped nginx (64 MiB/s per connection) 10–30% while the budget
/// climbed to 32, then ~90% (32 connections fill this machine). A tick with few pieces (small
/// files, which do not count them) says nothing.
pub(crate) fn local_bound(ready: u64, waited: u64) -> bool {
    let seen = ready + waited;
    seen >= LOCAL_MIN_PIECES && ready as f64 >= LOCAL_SHARE * seen as f64
}

/// Share of ready pieces that marks a tick as local-bound.
const LOCAL_SHARE: f64 = 0.8;
/// Fewest pieces in a tick for its share to count.
const LOCAL_MIN_PIECES: u64 = 32;

/// The run's connection budget: a semaphore whose size the climber adjusts.
pub(crate) struct Budget {
    gate: Gate,
    waiting: AtomicUsize,
    /// Connections the budget allows now.
    level: AtomicUsize,
    /// Payload bytes received (for the throughput samples).
    pub bytes: AtomicU64,
    /// Pieces of chunk bodies that were already received when asked for, and pieces that had to
    /// be waited for (see [`local_bound`]).
    pub ready: AtomicU64,
    pub waited: AtomicU64,
    /// Time from a request to its response headers, microseconds, smoothed (0: none yet).
    latency_us: AtomicU64,
    /// Requests answered so far (for the throughput samples).
    answered: AtomicU64,
    /// Files under way: [`FILES_PER_CONNECTION`] per connection allowed, so other files' setup and
    /// publication (fsync, rename) overlap the requests while the files still start in the
    /// plan's order (see [`Self::start_file`]).
    starts: Semaphore,
    ceiling: usize,
}

impl Budget {
    /// A budget of `start` connections that may climb to `ceiling`.
    pub fn new(start: usize, ceiling: usize) -> Self {
        let start = start.max(1);
        Budget {
            gate: Gate::new(start),
            waiting: AtomicUsize::new(0),
            level: AtomicUsize::new(start),
            bytes: AtomicU64::new(0),
            ready: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            latency_us: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            starts: Semaphore::new(FILES_PER_CONNECTION * start),
            ceiling: ceiling.max(start),
        }
    }

    /// The most connections this run may use (sizes the worker pools).
    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// How many connections the budget allows now.
    pub fn level(&self) -> usize {
        self.level.load(Ordering::Relaxed)
    }

    /// One request answered after `d` to its response headers: counted for the throughput
    /// samples, and its time kept as a moving average of the last ~8 (a race between two
    /// requests loses one time sample, which does not matter).
    pub fn note_answer(&self, d: Duration) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        let x = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.latency_us.load(Ordering::Relaxed);
        let new = if old == 0 { x } else { (old.saturating_mul(7).saturating_add(x)) / 8 };
        self.latency_us.store(new, Ordering::Relaxed);
    }

    /// Wait for a file's turn to start; hold the permit until the file is done.
    ///
    /// A file started early but whose first request comes late (a big file opens its part file
    /// and reads its resume record first) would otherwise queue behind every small file of the
    /// plan: the biggest file, planned first, would end last. Starting files only as fast as
    /// the budget can serve them keeps the plan's order; the [`Gate`] then keeps a big file's
    /// later pieces from queueing behind the small files started beside it.
    pub async fn start_file(&self) -> Option<SemaphorePermit<'_>> {
        self.starts.acquire().await.ok()
    }

    /// Take a connection for a request of `lane`'s kind (waits while all are in use; see
    /// [`Gate`] for how ranged and whole-object requests share them).
    pub async fn acquire(&self, lane: Lane) -> Permit<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let p = self.gate.acquire(lane).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        p
    }

    /// Climb while the run lasts (a no-op when the ceiling is the start).
    pub async fn govern(self: Arc<Self>, start: usize, cancel: CancellationToken) {
        if self.ceiling <= start.max(1) {
            return;
        }
        let mut climber = Climber::new(start, self.ceiling);
        let mut last = (self.bytes.load(Ordering::Relaxed), self.answered.load(Ordering::Relaxed));
        let mut pieces = (0, 0);
        let mut clock = tokio::time::interval(TICK);
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        clock.tick().await;
        loop {
            tokio::select! {
                _ = clock.tick() => {}
                _ = cancel.cancelled() => return,
            }
            let latency = Duration::from_micros(self.latency_us.load(Ordering::Relaxed));
            climber.set_settle(settle_ticks(latency));
            if latency >= FAR {
                climber.far_from_the_data();
            }
            let now = (self.bytes.load(Ordering::Relaxed), self.answered.load(Ordering::Relaxed));
            let per_sec = |a: u64, b: u64| a.saturating_sub(b) as f64 / TICK.as_secs_f64();
            let rate = Rate { bytes: per_sec(now.0, last.0), requests: per_sec(now.1, last.1) };
            last = now;
            let seen = (self.ready.load(Ordering::Relaxed), self.waited.load(Ordering::Relaxed));
            let local = local_bound(seen.0 - pieces.0, seen.1 - pieces.1);
            pieces = seen;
            match climber.sample(rate, self.waiting.load(Ordering::Relaxed) > 0 && !local) {
                Step::Hold => {}
                Step::Grow(n) => {
                    crate::log::log(
                        2,
                        format!(
                            "connections: {} (throughput {:.0} MiB/s, {:.0} requests/s)",
                            climber.level(),
                            rate.bytes / 1048576.0,
                            rate.requests
                        ),
                    );
                    self.gate.grow(n);
                    self.starts.add_permits(FILES_PER_CONNECTION * n);
                    self.level.fetch_add(n, Ordering::Relaxed);
                }
                Step::Shrink(n) => {
                    crate::log::log(2, format!("connections: back to {} (the last step did not pay)", climber.level()));
                    self.level.fetch_sub(n, Ordering::Relaxed);
                    // Free connections at once, held ones as their requests finish.
                    self.gate.shrink(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(b: f64) -> Rate {
        Rate { bytes: b, requests: 0.0 }
    }

    fn run(c: &mut Climber, rates: &[f64]) -> Vec<Step> {
        rates.iter().map(|&r| c.sample(bytes(r), true)).collect()
    }

    #[test]
    fn a_capped_server_goes_to_the_ceiling_after_two_proportional_steps() {
        // Each connection gives 64 units: throughput follows the level.
        let mut c = Climber::new(8, 32);
        let mut grown = Vec::new();
        for _ in 0..40 {
            let rate = 64.0 * c.level() as f64;
            if let Step::Grow(n) = c.sample(bytes(rate), true) {
                grown.push(n);
            }
        }
        assert_eq!(grown, [4, 8, 12]);
        assert_eq!(c.level(), 32);
    }

    #[test]
    fn far_from_the_data_proportional_steps_double_past_32_up_to_the_ceiling() {
        // 100 ms round trips and small files: every connection added brings its share.
        let mut c = Climber::new(8, 256);
        let mut grown = Vec::new();
        for _ in 0..60 {
            let rate = 10.0 * c.level() as f64;
            if let Step::Grow(n) = c.sample(bytes(rate), true) {
                grown.push(n);
            }
        }
        assert_eq!(grown, [4, 8, 12, 32, 64, 128]);
        assert_eq!(c.level(), 256);
        // Past what pays (here 64 connections), the step is given back and the climb ends.
        let mut c = Climber::new(8, 256);
        let mut last = Step::Hold;
        for _ in 0..60 {
            let rate = 10.0 * c.level().min(64) as f64;
            let s = c.sample(bytes(rate), true);
            if s != Step::Hold {
                last = s;
            }
        }
        assert_eq!((last, c.level()), (Step::Shrink(64), 64));
    }

    #[test]
    fn small_files_far_from_the_data_pay_in_requests_not_bytes() {
        // A model's chunks keep the bytes flat while each connection added answers its share of
        // the logs' requests (one per round trip): the requests show that the step paid.
        let mut c = Climber::new(8, 256);
        let mut grown = Vec::new();
        for _ in 0..60 {
            let rate = Rate { bytes: 500e6, requests: 10.0 * c.level() as f64 };
            if let Step::Grow(n) = c.sample(rate, true) {
                grown.push(n);
            }
        }
        assert_eq!(grown, [4, 8, 12, 32, 64, 128]);
        // Too few requests for their rate to mean anything: bytes alone decide (and did not grow).
        let mut c = Climber::new(8, 256);
        let steps: Vec<Step> = (0..12)
            .map(|_| c.sample(Rate { bytes: 500e6, requests: MIN_REQUEST_RATE / 2.0 * c.level() as f64 / 8.0 }, true))
            .collect();
        assert!(steps.contains(&Step::Shrink(4)), "{steps:?}");
        assert_eq!(c.level(), 8);
    }

    #[test]
    fn a_stopped_climb_resumes_when_small_files_follow_a_big_one() {
        // A big file fills the link: the first step does not pay and the climb stops.
        let mut c = Climber::new(8, 256);
        let big = Rate { bytes: 250e6, requests: 8.0 };
        let steps: Vec<Step> = (0..8).map(|_| c.sample(big, true)).collect();
        assert!(steps.contains(&Step::Shrink(4)), "{steps:?}");
        assert_eq!(c.level(), 8);
        // The same work goes on: no new probe.
        assert!((0..8).all(|_| c.sample(big, true) == Step::Hold));
        // Then only small files are left, one request per round trip per connection: the climb
        // starts again and pays in requests.
        let mut grown = Vec::new();
        for _ in 0..40 {
            let rate = Rate { bytes: 1e6, requests: 10.0 * c.level() as f64 };
            if let Step::Grow(n) = c.sample(rate, true) {
                grown.push(n);
            }
        }
        assert!(c.level() >= 64, "{grown:?}");
    }

    #[test]
    fn far_from_the_data_the_first_probe_goes_to_32_at_once() {
        let mut near = Climber::new(8, 256);
        let mut far = Climber::new(8, 256);
        far.far_from_the_data();
        let rate = Rate { bytes: 1e6, requests: 80.0 };
        let first = |c: &mut Climber| (1..10).map(|t| (t, c.sample(rate, true))).find(|(_, s)| *s != Step::Hold);
        assert_eq!(first(&mut near), Some((3, Step::Grow(4))), "a local link climbs in small steps");
        assert_eq!(first(&mut far), Some((2, Step::Grow(24))), "and far from the data after one tick");
        // Only the first probe: once the climb has begun, its own steps apply.
        far.far_from_the_data();
        assert_eq!(far.level(), 32);
    }

    #[test]
    fn a_stopped_climb_resumes_when_a_mix_loses_its_big_file() {
        // A big file and small files beside it: the step does not pay and the climb stops.
        let mut c = Climber::new(8, 256);
        let mixed = Rate { bytes: 250e6, requests: 40.0 };
        let steps: Vec<Step> = (0..8).map(|_| c.sample(mixed, true)).collect();
        assert!(steps.contains(&Step::Shrink(4)), "{steps:?}");
        // The big file is done; the small files answer fewer than twice the requests they did
        // beside it, but the bytes fell: the climb starts again.
        let mut grown = Vec::new();
        for _ in 0..40 {
            let rate = Rate { bytes: 2e6, requests: 70.0f64.max(9.0 * c.level() as f64) };
            if let Step::Grow(n) = c.sample(rate, true) {
                grown.push(n);
            }
        }
        assert!(c.level() >= 32, "{grown:?}");
    }

    #[test]
    fn far_from_the_data_a_step_is_judged_once_its_connections_can_carry_data() {
        assert_eq!(settle_ticks(Duration::from_micros(200)), SETTLE_TICKS, "a local link: as before");
        assert_eq!(settle_ticks(Duration::from_millis(100)), 2);
        assert_eq!(settle_ticks(Duration::from_millis(200)), 3);
        // A step whose connections bring data only 3 ticks later: judged too early it looks
        // like a step that did not pay; judged after the settle time it is kept.
        let rates = |c: &mut Climber| {
            let mut out = Vec::new();
            let mut grown_at = None;
            for t in 0..12 {
                let level = match grown_at {
                    Some(g) if t >= g + 3 => c.level(),
                    _ => 8,
                };
                let s = c.sample(bytes(10.0 * level as f64), true);
                if matches!(s, Step::Grow(_)) && grown_at.is_none() {
                    grown_at = Some(t);
                }
                out.push(s);
            }
            out
        };
        let mut hasty = Climber::new(8, 256);
        assert!(rates(&mut hasty).contains(&Step::Shrink(4)));
        let mut patient = Climber::new(8, 256);
        patient.set_settle(settle_ticks(Duration::from_millis(200)));
        let steps = rates(&mut patient);
        assert!(!steps.iter().any(|s| matches!(s, Step::Shrink(_))), "{steps:?}");
        assert!(patient.level() > 12, "{steps:?}");
    }

    #[test]
    fn a_partial_gain_climbs_in_doubling_steps() {
        // Each step pays ~18%: more than GAIN, less than in proportion to the connections added.
        let mut c = Climber::new(8, 32);
        let steps = run(&mut c, &[1000.0, 1000.0, 1000.0, 1000.0, 1180.0, 1180.0, 1300.0]);
        use Step::{Grow, Hold};
        assert_eq!(steps, [Hold, Hold, Grow(4), Hold, Grow(8), Hold, Grow(12)]);
    }

    #[test]
    fn a_saturated_link_gives_the_step_back_and_stays() {
        let mut c = Climber::new(8, 32);
        let steps = run(&mut c, &[1000.0, 1000.0, 1000.0, 1000.0, 1010.0, 1020.0, 1000.0, 1000.0, 1000.0]);
        assert_eq!(steps[2], Step::Grow(4), "{steps:?}");
        assert_eq!(steps[4], Step::Shrink(4), "{steps:?}");
        assert_eq!(c.level(), 8);
        assert!(steps[5..].iter().all(|s| *s == Step::Hold), "{steps:?}");
    }

    #[test]
    fn a_tick_is_local_bound_when_nearly_every_piece_was_ready() {
        assert!(local_bound(99, 1));
        assert!(local_bound(80, 20));
        assert!(!local_bound(79, 21), "a fifth waited for data: the network may be the limit");
        assert!(!local_bound(10, 90));
        assert!(!local_bound(LOCAL_MIN_PIECES - 1, 0), "too few pieces to judge");
        assert!(!local_bound(0, 0));
    }

    #[test]
    fn no_climb_without_waiting_requests_or_above_the_ceiling() {
        let mut c = Climber::new(8, 32);
        for _ in 0..10 {
            assert_eq!(c.sample(bytes(500.0), false), Step::Hold);
        }
        let mut fixed = Climber::new(8, 8);
        for _ in 0..10 {
            assert_eq!(fixed.sample(bytes(500.0), true), Step::Hold);
        }
        // The last step is cut to fit under the ceiling.
        let mut near = Climber::new(31, 32);
        assert_eq!(run(&mut near, &[1.0, 1.0, 1.0])[2], Step::Grow(1));
    }
}
