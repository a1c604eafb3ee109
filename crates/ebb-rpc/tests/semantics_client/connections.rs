//! A connection that ends: turned away unread, its framing refused, or
//! its calls abandoned, each call ended saying whether it was sent.

use super::*;

/// A reply naming the connection, not a call.
fn connection_error(kind: ConnErrorKind, why: &'static str) -> Message {
    ebb_rpc::transport::frames::connection_error(inc(INC), kind, why.into())
}

#[test]
fn a_connection_turned_away_unread_ends_the_calls_sent_only_on_it() {
    let mut s = ready();
    let earlier = call(&mut s, false, Instant::EPOCH);
    assert_eq!(drain(&mut s).len(), 1, "sent on the first connection");
    s.handle_disconnect(t(SEC));
    s.handle_connected(t(SEC));
    let fresh = call(&mut s, true, t(SEC));
    assert!(!drain(&mut s).is_empty());
    s.handle_message(
        connection_error(ConnErrorKind::ServerFull, "server full"),
        t(SEC),
    );
    assert!(
        matches!(s.poll_event(), Some((id, Err(CallError::Refused { reason: Refusal::ServerFull, message }))) if id == fresh && message == "server full")
    );
    assert!(
        s.poll_event().is_none(),
        "the earlier call may have run: it waits"
    );
    assert!(
        s.poll_close(),
        "the transport must drop the refused connection"
    );
    assert_eq!(s.link(), LinkState::Disconnected);
    assert_eq!(s.outstanding(), 1);
    let _ = earlier;
}

#[test]
fn a_connection_whose_framing_the_server_refused_ends_every_call() {
    let mut s = ready();
    call(&mut s, false, Instant::EPOCH);
    call(&mut s, true, Instant::EPOCH);
    s.handle_message(
        connection_error(ConnErrorKind::BadFrame, "frame too large"),
        t(SEC),
    );
    let ended: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(ended.len(), 2);
    assert!(
        ended
            .iter()
            .all(|(_, r)| matches!(r, Err(CallError::Protocol { sent: true, .. })))
    );
    assert!(s.poll_close());
}

/// A caller that learns the server is gone ends every call at once, and
/// each says whether it ever went out: one sent before the connection
/// broke may have run, one started after it certainly did not.
#[test]
fn abandoned_calls_end_at_once_saying_whether_they_were_sent() {
    let mut s = ready();
    let sent = call(&mut s, false, Instant::EPOCH);
    assert_eq!(drain(&mut s).len(), 1, "the first call went out");
    s.handle_disconnect(t(Nanos(1)));
    let unsent = call(&mut s, false, t(Nanos(2)));
    let unsent_idem = call(&mut s, true, t(Nanos(2)));
    assert!(
        drain(&mut s).is_empty(),
        "nothing goes out while disconnected"
    );
    s.abandon_all("node 3 is gone");
    let mut ended: Vec<(CallId, Result<Bytes, CallError>)> =
        std::iter::from_fn(|| s.poll_event()).collect();
    ended.sort_by_key(|(id, _)| id.0);
    let lost = |sent| {
        Err(CallError::ConnectionLost {
            sent,
            cause: "node 3 is gone".into(),
        })
    };
    assert_eq!(
        ended,
        vec![
            (sent, lost(true)),
            (unsent, lost(false)),
            (unsent_idem, lost(false))
        ]
    );
    s.handle_timeout(t(Nanos::from_secs(11)));
    assert!(
        s.poll_event().is_none(),
        "an abandoned call never ends twice"
    );
    s.check().unwrap();
}
