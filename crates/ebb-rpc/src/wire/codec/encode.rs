//! Each message kind laid into the header: which field carries what, and
//! 0 for "none". The inverse of `decode.rs`.

use bytes::Bytes;

use super::header::{
    FLAG_IDEMPOTENT, FLAG_JSON, Header, KIND_CONN_ERROR, KIND_DESCRIBE, KIND_DESCRIPTION,
    KIND_PING, KIND_PONG, KIND_REPLY, KIND_REQUEST, KIND_RESIZE, KIND_RESIZED, STATUS_APP_ERROR,
    STATUS_BAD_REQUEST, STATUS_OK, STATUS_OUTCOME_UNKNOWN, STATUS_OVERLOADED, STATUS_PANICKED,
    STATUS_REFUSED, STATUS_UNKNOWN_METHOD,
};
use crate::wire::message::{Incarnation, Message, Outcome, Refusal, Reply};
use crate::wire::secret::ClientSecret;

fn flags(idempotent: bool, json: bool) -> u8 {
    (if idempotent { FLAG_IDEMPOTENT } else { 0 }) | (if json { FLAG_JSON } else { 0 })
}

fn incarnation(i: Option<Incarnation>) -> u64 {
    i.map_or(0, Incarnation::get)
}

fn refusal_status(r: Option<Refusal>) -> (u8, u64) {
    r.map_or((STATUS_OK, 0), |r| (STATUS_REFUSED, r as u64))
}

/// The header, the secret a ping carries ahead of its payload, and the
/// payload of `m`.
pub(super) fn lay_out(m: &Message) -> (Header, Option<ClientSecret>, &Bytes) {
    let (h, payload) = match m {
        Message::Request(r) => (
            Header {
                kind: KIND_REQUEST,
                flags: flags(r.idempotent, r.json),
                client: r.client.0,
                seq: r.seq.0,
                ack_below: r.ack_below.0,
                incarnation: incarnation(r.incarnation),
                deadline: r.deadline.as_nanos(),
                method: r.method,
                ..Header::default()
            },
            &r.payload,
        ),
        Message::Reply(r) => lay_out_reply(r),
        Message::Ping(p) => {
            let h = Header {
                kind: KIND_PING,
                client: p.client.0,
                seq: p.floor.0,
                ack_below: p.ack_below.0,
                incarnation: incarnation(p.incarnation),
                ..Header::default()
            };
            return (h, Some(p.secret), &p.token);
        }
        Message::Pong(p) => {
            let (status, reason) = refusal_status(p.refused);
            (
                Header {
                    kind: KIND_PONG,
                    status,
                    client: p.client.0,
                    seq: p.floor.0,
                    ack_below: u64::from(p.load),
                    incarnation: p.incarnation.get(),
                    deadline: reason,
                    ..Header::default()
                },
                &p.message,
            )
        }
        Message::ConnError(e) => (
            Header {
                kind: KIND_CONN_ERROR,
                status: e.kind as u8,
                incarnation: e.incarnation.get(),
                ..Header::default()
            },
            &e.message,
        ),
        Message::Describe(d) => (
            Header {
                kind: KIND_DESCRIBE,
                seq: d.id,
                ..Header::default()
            },
            &EMPTY,
        ),
        Message::Description(d) => (
            Header {
                kind: KIND_DESCRIPTION,
                seq: d.id,
                incarnation: d.incarnation.get(),
                ..Header::default()
            },
            &d.payload,
        ),
        Message::Resize(r) => (
            Header {
                kind: KIND_RESIZE,
                seq: r.id,
                ack_below: u64::from(r.capacity.get()),
                ..Header::default()
            },
            &EMPTY,
        ),
        Message::Resized(r) => (
            Header {
                kind: KIND_RESIZED,
                seq: r.id,
                ack_below: r.capacity.map_or(0, |c| u64::from(c.get())),
                incarnation: r.incarnation.get(),
                ..Header::default()
            },
            &EMPTY,
        ),
    };
    (h, None, payload)
}

/// The header and the payload of a reply.
pub(super) fn lay_out_reply(r: &Reply) -> (Header, &Bytes) {
    let (status, reason) = match r.outcome {
        Outcome::Ok => (STATUS_OK, r.service_time.as_nanos()),
        Outcome::UnknownMethod => (STATUS_UNKNOWN_METHOD, r.service_time.as_nanos()),
        Outcome::BadRequest => (STATUS_BAD_REQUEST, r.service_time.as_nanos()),
        Outcome::OutcomeUnknown => (STATUS_OUTCOME_UNKNOWN, r.service_time.as_nanos()),
        // The field carries the reason or the retry-after: no service time.
        Outcome::Refused(why) => (STATUS_REFUSED, why as u64),
        Outcome::Overloaded { retry_after } => (STATUS_OVERLOADED, retry_after.as_nanos()),
        Outcome::AppError => (STATUS_APP_ERROR, r.service_time.as_nanos()),
        Outcome::Panicked => (STATUS_PANICKED, r.service_time.as_nanos()),
    };
    (
        Header {
            kind: KIND_REPLY,
            flags: flags(r.idempotent, r.json),
            status,
            client: r.client.0,
            seq: r.seq.0,
            ack_below: u64::from(r.load),
            incarnation: r.incarnation.get(),
            deadline: reason,
            method: r.method,
        },
        &r.payload,
    )
}

static EMPTY: Bytes = Bytes::new();
