//! Request payloads lent to the writer and given back, and large requests
//! whose writing counts as progress rather than silence.

use super::*;

fn payload_of(m: &Message) -> Bytes {
    match m {
        Message::Request(r) => r.payload.clone(),
        other => panic!("not a request: {other:?}"),
    }
}

#[test]
fn a_lent_payload_returns_to_its_call_and_goes_out_again_on_a_resend() {
    let mut s = ready();
    s.start_call(
        7,
        true,
        Bytes::from_static(b"lent"),
        t(Nanos::from_secs(10)),
        Instant::EPOCH,
    )
    .unwrap();
    let mut written = Vec::new();
    s.drain_transmit(|m| written.push(payload_of(m)));
    assert_eq!(written, [Bytes::from_static(b"lent")]);
    // The retransmission timer sends it again: the payload is back in the call.
    s.handle_timeout(t(Nanos::from_millis(300)));
    let again = drain(&mut s);
    assert_eq!(again.len(), 1, "one resend");
    assert_eq!(payload_of(&again[0]), Bytes::from_static(b"lent"));
    s.check().unwrap();
}

#[test]
fn a_call_that_ends_before_its_request_is_written_still_sends_its_payload() {
    let mut s = ready();
    s.start_call(
        7,
        false,
        Bytes::from_static(b"queued"),
        t(Nanos::from_secs(10)),
        Instant::EPOCH,
    )
    .unwrap();
    // The call ends (abandoned) while its request waits in the queue: the
    // request goes out as it was sent, with its payload.
    s.abandon_all("gone");
    assert_eq!(s.outstanding(), 0);
    s.check().unwrap();
    let mut written = Vec::new();
    s.drain_transmit(|m| written.push(payload_of(m)));
    assert_eq!(written, [Bytes::from_static(b"queued")]);
    s.check().unwrap();
}

/// Starts an idempotent call with a large payload on a ready session and
/// returns its id, its request, and the bytes handed to the transport so
/// far (handshake included).
fn large_call(s: &mut ClientSession, deadline: Instant) -> (CallId, Message, u64) {
    let payload = Bytes::from(vec![7u8; 1 << 20]);
    let id = s
        .start_call(7, true, payload, deadline, Instant::EPOCH)
        .unwrap();
    let request = drain(s).remove(0);
    assert_eq!(seq(&request), id.0);
    // The handshake ping went first (`ready`).
    let handed = handshake_bytes() + request.encoded_len() as u64;
    (id, request, handed)
}

fn handshake_bytes() -> u64 {
    let mut s = ClientSession::new(MY_SECRET, cfg(), Instant::EPOCH);
    s.handle_connected(Instant::EPOCH);
    drain(&mut s).iter().map(|m| m.encoded_len() as u64).sum()
}

#[test]
fn a_large_request_still_being_written_keeps_the_server_alive_and_is_not_resent() {
    let c = cfg();
    let mut s = ready();
    let until = t(c.heartbeat_silence + c.heartbeat_silence + c.heartbeat_silence);
    let (id, request, copy_end) = large_call(&mut s, until + Nanos::from_secs(60));
    // The link takes a few bytes at a time: never the whole copy before
    // `until`, three silence limits and many resend intervals later.
    let step = Nanos::from_millis(100);
    let mut now = Instant::EPOCH;
    let mut written = 0;
    while now < until {
        now += step;
        written = (written + 1000).min(copy_end - 1);
        s.handle_written(written, now);
        s.handle_timeout(now);
        let sent = drain(&mut s);
        assert!(
            sent.iter().all(|m| kind(m) == "ping"),
            "at {now}: resent while the copy was still leaving: {sent:?}"
        );
    }
    assert_eq!(s.poll_event(), None, "not declared silent");
    assert!(!s.poll_close());
    assert_eq!(s.link(), LinkState::Ready);
    let postponed = s.postponed_retransmits();
    assert!(
        postponed >= 3,
        "the resend timer fired and waited: {postponed}"
    );
    // Once the copy has left, a silent server gets the resend again (at
    // least once, as before).
    s.handle_written(copy_end, now);
    let later = now + c.max_retransmit_interval;
    s.handle_timeout(later);
    let resent = drain(&mut s);
    assert!(
        resent
            .iter()
            .any(|m| kind(m) == "request" && seq(m) == id.0),
        "{resent:?}"
    );
    s.handle_message(reply(&request, INC, Outcome::Ok, b"done"), later);
    assert_eq!(s.poll_event(), Some((id, Ok(Bytes::from_static(b"done")))));
    s.check().unwrap();
}

#[test]
fn a_write_that_stalls_is_silent_a_silence_limit_after_its_last_progress() {
    let c = cfg();
    let mut s = ready();
    let (id, _, copy_end) = large_call(&mut s, t(Nanos::from_secs(600)));
    let last_progress = t(c.heartbeat_silence + c.heartbeat_silence);
    s.handle_written(copy_end / 2, last_progress);
    s.handle_timeout(last_progress);
    drain(&mut s);
    // The same count again is no progress.
    let almost = last_progress + c.heartbeat_silence.saturating_sub(Nanos::from_micros(1));
    s.handle_written(copy_end / 2, almost);
    s.handle_timeout(almost);
    assert_eq!(s.poll_event(), None);
    s.handle_written(copy_end / 2, last_progress + c.heartbeat_silence);
    s.handle_timeout(last_progress + c.heartbeat_silence);
    assert_eq!(
        s.poll_event(),
        Some((
            id,
            Err(CallError::ServerUnresponsive {
                silent: c.heartbeat_silence
            })
        ))
    );
    assert!(s.poll_close());
}

#[test]
fn a_transport_that_reports_no_writes_gets_the_resend_on_its_timer() {
    let c = cfg();
    let mut s = ready();
    let (id, _, _) = large_call(&mut s, t(Nanos::from_secs(600)));
    s.handle_timeout(t(c.retransmit_after));
    let resent = drain(&mut s);
    assert!(
        resent
            .iter()
            .any(|m| kind(m) == "request" && seq(m) == id.0),
        "{resent:?}"
    );
    assert_eq!(s.postponed_retransmits(), 0);
}
