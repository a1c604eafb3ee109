//! Telling a dead server from a slow one: pings on an idle connection,
//! silence ending calls, and bytes of a reply still arriving counting as
//! hearing from the server.

use super::*;

#[test]
fn idle_connection_pings_and_silence_ends_calls_server_unresponsive() {
    let c = cfg();
    let mut s = ready();
    assert_eq!(s.poll_timeout(), Some(t(c.heartbeat_interval)));
    s.handle_timeout(t(c.heartbeat_interval));
    assert_eq!(kind(&drain(&mut s)[0]), "ping");
    let id = call(&mut s, false, t(c.heartbeat_interval));
    s.handle_timeout(t(c.heartbeat_silence));
    let (got, r) = s.poll_event().unwrap();
    assert_eq!(got, id);
    assert_eq!(
        r,
        Err(CallError::ServerUnresponsive {
            silent: c.heartbeat_silence
        })
    );
    assert!(s.poll_close());
    assert_eq!(s.link(), LinkState::Disconnected);
}

/// A call whose reply is still crossing at `until`: bytes of it arrive
/// every second, and no whole message does meanwhile. Returns the call and
/// the request that went out for it.
fn call_with_a_slow_reply(s: &mut ClientSession, until: Instant) -> (CallId, Message) {
    let deadline = until + Nanos::from_secs(60);
    let id = s
        .start_call(7, true, Bytes::from_static(b"a"), deadline, Instant::EPOCH)
        .unwrap();
    let request = drain(s).remove(0);
    assert_eq!(seq(&request), id.0);
    let mut now = Instant::EPOCH;
    while now < until {
        now += SEC;
        s.handle_progress(now);
        s.handle_timeout(now);
        drain(s);
    }
    (id, request)
}

#[test]
fn a_reply_still_arriving_keeps_the_server_alive_past_the_silence_limit() {
    let c = cfg();
    let mut s = ready();
    let silence = c.heartbeat_silence;
    let until = t(silence + silence + silence);
    let (id, request) = call_with_a_slow_reply(&mut s, until);
    // No whole message for three silence limits, yet nothing ended.
    assert_eq!(s.poll_event(), None);
    assert!(!s.poll_close());
    assert_eq!(s.link(), LinkState::Ready);
    assert_eq!(s.outstanding(), 1);
    // Its last bytes complete the reply.
    s.handle_message(reply(&request, INC, Outcome::Ok, b"big"), until);
    assert_eq!(s.poll_event(), Some((id, Ok(Bytes::from_static(b"big")))));
}

#[test]
fn a_server_that_stops_mid_reply_is_unresponsive_a_silence_limit_later() {
    let c = cfg();
    let mut s = ready();
    let silence = c.heartbeat_silence;
    let last_bytes = t(silence + silence);
    let (id, _) = call_with_a_slow_reply(&mut s, last_bytes);
    assert_eq!(s.poll_event(), None);
    s.handle_timeout(last_bytes + silence.saturating_sub(Nanos::from_micros(1)));
    assert_eq!(s.poll_event(), None, "not yet silent for the limit");
    s.handle_timeout(last_bytes + silence);
    assert_eq!(
        s.poll_event(),
        Some((id, Err(CallError::ServerUnresponsive { silent: silence })))
    );
    assert!(s.poll_close());
    // Bytes of a broken connection's frame revive nothing.
    s.handle_progress(last_bytes + silence);
    assert_eq!(s.link(), LinkState::Disconnected);
}

#[test]
fn silence_spares_calls_that_were_never_sent() {
    let c = cfg();
    let mut s = ClientSession::new(MY_SECRET, c, Instant::EPOCH);
    s.handle_connected(Instant::EPOCH);
    drain(&mut s);
    // Held: at-most-once calls wait for the pong that never comes.
    let id = call(&mut s, false, Instant::EPOCH);
    s.handle_timeout(t(c.heartbeat_silence));
    assert_eq!(s.poll_event(), None);
    assert!(s.poll_close());
    assert_eq!(s.outstanding(), 1);
    s.handle_connected(t(c.heartbeat_silence));
    s.handle_message(pong(INC, None), t(c.heartbeat_silence));
    let f = drain(&mut s);
    assert_eq!(seq(f.last().unwrap()), id.0, "sent on the next connection");
}
