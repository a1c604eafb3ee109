//! Arbitrary frames for the property tests: every kind, every field drawn
//! from its whole range (refusals, outcomes and incarnations only from
//! their valid values, which is what a sender can encode).

use super::*;

fn refusal() -> impl Strategy<Value = Refusal> {
    (1u8..=12).prop_map(|b| Refusal::from_u8(b).unwrap())
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Ok),
        Just(Outcome::UnknownMethod),
        Just(Outcome::BadRequest),
        Just(Outcome::OutcomeUnknown),
        refusal().prop_map(Outcome::Refused),
        any::<u64>().prop_map(|n| Outcome::Overloaded {
            retry_after: Nanos(n)
        }),
        Just(Outcome::AppError),
        Just(Outcome::Panicked),
    ]
}

fn incarnation() -> impl Strategy<Value = Incarnation> {
    (1u64..).prop_map(|n| Incarnation::new(n).unwrap())
}

fn payload() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

/// Any frame of any kind, every field drawn.
pub(super) fn frame() -> impl Strategy<Value = Message> {
    let client = any::<u128>().prop_map(ClientId);
    let seq = any::<u64>().prop_map(Seq);
    prop_oneof![
        (
            client.clone(),
            seq.clone(),
            seq.clone(),
            proptest::option::of(incarnation()),
            any::<u64>(),
            any::<u16>(),
            any::<(bool, bool)>(),
            payload()
        )
            .prop_map(
                |(
                    client,
                    seq,
                    ack_below,
                    incarnation,
                    deadline,
                    method,
                    (idempotent, json),
                    payload,
                )| {
                    Message::Request(Request {
                        client,
                        seq,
                        ack_below,
                        incarnation,
                        deadline: Nanos(deadline),
                        method,
                        idempotent,
                        json,
                        payload,
                    })
                }
            ),
        (
            client.clone(),
            seq.clone(),
            incarnation(),
            any::<u16>(),
            any::<(bool, bool)>(),
            outcome(),
            (any::<u32>(), any::<u64>()),
            payload()
        )
            .prop_map(
                |(
                    client,
                    seq,
                    incarnation,
                    method,
                    (idempotent, json),
                    outcome,
                    (load, service),
                    payload,
                )| {
                    // A refusal's header field carries its reason or its
                    // retry-after instead: no service time.
                    let service_time = match outcome {
                        Outcome::Refused(_) | Outcome::Overloaded { .. } => Nanos::ZERO,
                        _ => Nanos(service),
                    };
                    Message::Reply(Reply {
                        client,
                        seq,
                        incarnation,
                        method,
                        idempotent,
                        json,
                        outcome,
                        load,
                        service_time,
                        payload,
                    })
                }
            ),
        (
            client.clone(),
            seq.clone(),
            seq.clone(),
            proptest::option::of(incarnation()),
            any::<u128>(),
            proptest::collection::vec(any::<u8>(), 0..=64),
        )
            .prop_map(|(client, floor, ack_below, incarnation, secret, token)| {
                Message::Ping(Ping {
                    client,
                    floor,
                    ack_below,
                    incarnation,
                    secret: ClientSecret(secret),
                    token: Bytes::from(token),
                })
            }),
        (
            client,
            seq,
            incarnation(),
            proptest::option::of(refusal()),
            any::<u32>(),
            payload()
        )
            .prop_map(|(client, floor, incarnation, refused, load, message)| {
                Message::Pong(Pong {
                    client,
                    floor,
                    incarnation,
                    refused,
                    load,
                    message,
                })
            }),
        (incarnation(), 1u8..=4, payload()).prop_map(|(incarnation, k, message)| {
            Message::ConnError(ConnError {
                incarnation,
                kind: ConnErrorKind::from_u8(k).unwrap(),
                message,
            })
        }),
        any::<u64>().prop_map(|id| Message::Describe(Describe { id })),
        (any::<u64>(), incarnation(), payload()).prop_map(|(id, incarnation, payload)| {
            Message::Description(Description {
                id,
                incarnation,
                payload,
            })
        }),
        (any::<u64>(), 1u32..).prop_map(|(id, c)| {
            Message::Resize(Resize {
                id,
                capacity: std::num::NonZeroU32::new(c).unwrap(),
            })
        }),
        (any::<u64>(), incarnation(), any::<u32>()).prop_map(|(id, incarnation, c)| {
            Message::Resized(Resized {
                id,
                incarnation,
                capacity: std::num::NonZeroU32::new(c),
            })
        }),
    ]
}
