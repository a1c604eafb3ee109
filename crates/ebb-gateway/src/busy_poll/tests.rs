use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use ebb_core::{Instant, Nanos};

use super::{Activity, Counters, Spin, Turn, spin};
use crate::clock::Clock;

fn at(us: u64) -> Instant {
    Instant::from_epoch(Nanos::from_micros(us))
}

#[test]
fn a_spin_goes_on_while_requests_come_and_stops_a_window_after_the_last() {
    let window = Nanos::from_micros(100);
    let mut s = Spin::start(window, 7, at(1_000));
    assert_eq!(s.turn(7, at(1_050)), Turn::Spin, "within the window");
    assert_eq!(s.turn(8, at(1_099)), Turn::Spin, "a request came");
    // The window now counts from 1 099.
    assert_eq!(s.turn(8, at(1_150)), Turn::Spin);
    assert_eq!(s.turn(8, at(1_198)), Turn::Spin, "1 us short of the window");
    assert_eq!(s.turn(8, at(1_199)), Turn::Stop, "idle for the window");
    let mut s = Spin::start(window, 0, at(0));
    assert_eq!(
        s.turn(0, at(100)),
        Turn::Stop,
        "a spin that saw nothing stops"
    );
}

#[test]
fn its_counters_are_in_the_metrics_from_the_start() {
    let text = crate::metrics::Metrics::new()
        .render(&[], (0, 0), 0)
        .expect("encodes");
    for name in [
        "ebb_gateway_busy_poll_spins_total 0",
        "ebb_gateway_busy_poll_turns_total 0",
        "ebb_gateway_busy_poll_seconds_total 0",
    ] {
        assert!(text.contains(name), "{name} in\n{text}");
    }
}

/// A current-thread runtime that counts the times its thread went to
/// sleep (tokio's `on_thread_park` runs only before a real sleep, not
/// before a poll of the driver with a zero timeout).
fn counting_runtime() -> (tokio::runtime::Runtime, Arc<AtomicU64>) {
    let sleeps = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&sleeps);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(move || {
            counted.fetch_add(1, SeqCst);
        })
        .build()
        .expect("a runtime");
    (rt, sleeps)
}

/// Spawns the spinner on the current runtime, sharing `activity` and
/// `counters` with the test.
fn start_spinner(window: Nanos, activity: &Activity, counters: &Counters) {
    tokio::spawn(spin(
        window,
        activity.clone(),
        Clock::new(),
        counters.clone(),
    ));
}

/// A timer on the driver: it fires only if the driver is polled, by a
/// sleep of the thread or by the spinner's turns.
async fn a_timer() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[test]
fn an_idle_spinner_sleeps_and_a_spinning_one_keeps_the_driver_polled_without_sleeping() {
    let (rt, sleeps) = counting_runtime();
    let activity = Activity::default();
    let counters = Counters::default();
    // A window no test run reaches: the spin lasts the whole test.
    let window = Nanos::from_secs(600);
    rt.block_on(async {
        start_spinner(window, &activity, &counters);
        a_timer().await;
        assert!(sleeps.load(SeqCst) > 0, "idle, the thread slept");
        assert_eq!(counters.spins.get(), 0, "no request, no spin");
        assert_eq!(counters.turns.get(), 0, "an idle spinner takes no turns");

        activity.event();
        let before = sleeps.load(SeqCst);
        // Other tasks run while it spins: it starves none.
        let other = tokio::spawn(async {
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
        });
        a_timer().await;
        other.await.expect("the other task ran to its end");
        // I/O through the driver too: a loopback round trip.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("an address");
        let (dialed, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (mut dialed, (mut accepted, _)) = (dialed.expect("dial"), accepted.expect("accept"));
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (wrote, read) = tokio::join!(dialed.write_all(b"ping"), async {
            let mut buf = [0u8; 4];
            accepted.read_exact(&mut buf).await.map(|_| buf)
        });
        wrote.expect("write");
        assert_eq!(&read.expect("read"), b"ping");
        assert_eq!(
            sleeps.load(SeqCst),
            before,
            "the timer fired and the bytes arrived without the thread sleeping once"
        );
        assert_eq!(counters.spins.get(), 1);
        assert!(counters.turns.get() > 0, "it spun");
    });
}

/// Waits, a millisecond timer at a time (bounded), until a spin ended
/// after the `seconds` counted so far: `seconds` grows as each spin stops,
/// and the spinner then sleeps before any other turn.
async fn until_stopped(counters: &Counters, seconds: f64) -> f64 {
    const MAX_WAITS: u32 = 60_000;
    for _ in 0..MAX_WAITS {
        let now = counters.seconds.get();
        if now > seconds {
            return now;
        }
        a_timer().await;
    }
    panic!("the spinner did not stop within {MAX_WAITS} waits");
}

#[test]
fn a_spin_stops_after_the_window_and_the_next_request_starts_another() {
    let (rt, sleeps) = counting_runtime();
    let activity = Activity::default();
    let counters = Counters::default();
    let window = Nanos::from_micros(200);
    rt.block_on(async {
        start_spinner(window, &activity, &counters);
        activity.event();
        let first = until_stopped(&counters, 0.0).await;
        assert_eq!(counters.spins.get(), 1);
        assert!(
            first >= window.as_secs_f64(),
            "a spin lasts at least its window"
        );
        let turns = counters.turns.get();
        let before = sleeps.load(SeqCst);
        a_timer().await;
        assert!(sleeps.load(SeqCst) > before, "stopped, the thread sleeps");
        assert_eq!(counters.turns.get(), turns, "and takes no turns");

        activity.event();
        until_stopped(&counters, first).await;
        assert_eq!(counters.spins.get(), 2, "the next request started a spin");
        assert!(counters.turns.get() > turns);
    });
}
