//! Each message kind read back out of the header, refusing any field the
//! kind does not use unless it is zero, so a decoded message re-encodes to
//! exactly the bytes it came from.

use std::num::NonZeroU32;

use bytes::Bytes;
use ebb_core::{ClientId, Nanos};

use super::header::{
    FLAG_IDEMPOTENT, FLAG_JSON, Header, KIND_CONN_ERROR, KIND_DESCRIBE, KIND_DESCRIPTION,
    KIND_PING, KIND_PONG, KIND_REPLY, KIND_REQUEST, KIND_RESIZE, KIND_RESIZED, STATUS_APP_ERROR,
    STATUS_BAD_REQUEST, STATUS_OK, STATUS_OUTCOME_UNKNOWN, STATUS_OVERLOADED, STATUS_PANICKED,
    STATUS_REFUSED, STATUS_UNKNOWN_METHOD,
};
use crate::wire::message::{
    ConnError, ConnErrorKind, Describe, Description, Incarnation, Message, Outcome, Ping, Pong,
    Refusal, Reply, Request, Resize, Resized, Seq,
};
use crate::wire::secret::{CLIENT_SECRET_BYTES, ClientSecret};
use crate::wire::{MAX_TOKEN_BYTES, WireError};

/// Checks one kind's use of the header and builds its message.
struct Check {
    kind: &'static str,
    h: Header,
}

impl Check {
    fn zero(&self, field: &'static str, value: u128) -> Result<(), WireError> {
        if value == 0 {
            Ok(())
        } else {
            Err(WireError::NonZeroField {
                kind: self.kind,
                field,
            })
        }
    }

    fn flags(&self, known: u8) -> Result<(bool, bool), WireError> {
        if self.h.flags & !known != 0 {
            return Err(WireError::UnknownFlags {
                kind: self.kind,
                flags: self.h.flags,
            });
        }
        Ok((
            self.h.flags & FLAG_IDEMPOTENT != 0,
            self.h.flags & FLAG_JSON != 0,
        ))
    }

    fn incarnation(&self) -> Result<Incarnation, WireError> {
        Incarnation::new(self.h.incarnation).ok_or(WireError::FieldOutOfRange {
            kind: self.kind,
            field: "incarnation",
        })
    }

    fn load(&self) -> Result<u32, WireError> {
        u32::try_from(self.h.ack_below).map_err(|_| WireError::FieldOutOfRange {
            kind: self.kind,
            field: "load",
        })
    }

    fn refusal(&self) -> Result<Refusal, WireError> {
        u8::try_from(self.h.deadline)
            .ok()
            .and_then(Refusal::from_u8)
            .ok_or(WireError::UnknownRefusal(
                u8::try_from(self.h.deadline).unwrap_or(u8::MAX),
            ))
    }

    fn unknown_status(&self) -> WireError {
        WireError::UnknownStatus {
            kind: self.kind,
            status: self.h.status,
        }
    }
}

pub(super) fn to_message(h: Header, payload: Bytes) -> Result<Message, WireError> {
    let kind = match h.kind {
        KIND_REQUEST => "request",
        KIND_REPLY => "reply",
        KIND_PING => "ping",
        KIND_PONG => "pong",
        KIND_CONN_ERROR => "connection error",
        KIND_DESCRIBE => "describe",
        KIND_DESCRIPTION => "description",
        KIND_RESIZE => "resize",
        KIND_RESIZED => "resized",
        other => return Err(WireError::UnknownKind(other)),
    };
    let c = Check { kind, h };
    let h = &c.h;
    Ok(match h.kind {
        KIND_REQUEST => {
            let (idempotent, json) = c.flags(FLAG_IDEMPOTENT | FLAG_JSON)?;
            if h.status != STATUS_OK {
                return Err(c.unknown_status());
            }
            Message::Request(Request {
                client: ClientId(h.client),
                seq: Seq(h.seq),
                ack_below: Seq(h.ack_below),
                incarnation: Incarnation::new(h.incarnation),
                deadline: Nanos(h.deadline),
                method: h.method,
                idempotent,
                json,
                payload,
            })
        }
        KIND_REPLY => {
            let (idempotent, json) = c.flags(FLAG_IDEMPOTENT | FLAG_JSON)?;
            let outcome = match h.status {
                STATUS_OK => Outcome::Ok,
                STATUS_UNKNOWN_METHOD => Outcome::UnknownMethod,
                STATUS_BAD_REQUEST => Outcome::BadRequest,
                STATUS_OUTCOME_UNKNOWN => Outcome::OutcomeUnknown,
                STATUS_REFUSED => Outcome::Refused(c.refusal()?),
                STATUS_OVERLOADED => Outcome::Overloaded {
                    retry_after: Nanos(h.deadline),
                },
                STATUS_APP_ERROR => Outcome::AppError,
                STATUS_PANICKED => Outcome::Panicked,
                _ => return Err(c.unknown_status()),
            };
            let service_time = match outcome {
                Outcome::Refused(_) | Outcome::Overloaded { .. } => Nanos::ZERO,
                _ => Nanos(h.deadline),
            };
            Message::Reply(Reply {
                client: ClientId(h.client),
                seq: Seq(h.seq),
                incarnation: c.incarnation()?,
                method: h.method,
                idempotent,
                json,
                outcome,
                load: c.load()?,
                service_time,
                payload,
            })
        }
        KIND_PING => {
            c.flags(0)?;
            c.zero("status", h.status.into())?;
            c.zero("deadline", h.deadline.into())?;
            c.zero("method", h.method.into())?;
            let token_len = payload.len().checked_sub(CLIENT_SECRET_BYTES);
            let Some(token_len @ 0..=MAX_TOKEN_BYTES) = token_len else {
                return Err(WireError::FieldOutOfRange {
                    kind: c.kind,
                    field: "payload",
                });
            };
            debug_assert_eq!(token_len + CLIENT_SECRET_BYTES, payload.len());
            let mut secret = [0u8; CLIENT_SECRET_BYTES];
            secret.copy_from_slice(&payload[..CLIENT_SECRET_BYTES]);
            Message::Ping(Ping {
                client: ClientId(h.client),
                floor: Seq(h.seq),
                ack_below: Seq(h.ack_below),
                incarnation: Incarnation::new(h.incarnation),
                secret: ClientSecret(u128::from_le_bytes(secret)),
                token: payload.slice(CLIENT_SECRET_BYTES..),
            })
        }
        KIND_PONG => {
            c.flags(0)?;
            c.zero("method", h.method.into())?;
            let refused = match h.status {
                STATUS_OK => {
                    c.zero("deadline", h.deadline.into())?;
                    None
                }
                STATUS_REFUSED => Some(c.refusal()?),
                _ => return Err(c.unknown_status()),
            };
            Message::Pong(Pong {
                client: ClientId(h.client),
                floor: Seq(h.seq),
                incarnation: c.incarnation()?,
                refused,
                load: c.load()?,
                message: payload,
            })
        }
        KIND_CONN_ERROR => {
            c.flags(0)?;
            c.zero("client", h.client)?;
            c.zero("seq", h.seq.into())?;
            c.zero("ack_below", h.ack_below.into())?;
            c.zero("deadline", h.deadline.into())?;
            c.zero("method", h.method.into())?;
            let kind = ConnErrorKind::from_u8(h.status).ok_or_else(|| c.unknown_status())?;
            Message::ConnError(ConnError {
                incarnation: c.incarnation()?,
                kind,
                message: payload,
            })
        }
        KIND_DESCRIBE => {
            c.flags(0)?;
            c.zero("status", h.status.into())?;
            c.zero("client", h.client)?;
            c.zero("ack_below", h.ack_below.into())?;
            c.zero("incarnation", h.incarnation.into())?;
            c.zero("deadline", h.deadline.into())?;
            c.zero("method", h.method.into())?;
            c.zero("payload", payload.len() as u128)?;
            Message::Describe(Describe { id: h.seq })
        }
        KIND_RESIZE | KIND_RESIZED => {
            c.flags(0)?;
            c.zero("status", h.status.into())?;
            c.zero("client", h.client)?;
            c.zero("deadline", h.deadline.into())?;
            c.zero("method", h.method.into())?;
            c.zero("payload", payload.len() as u128)?;
            let capacity = u32::try_from(h.ack_below).ok().map(NonZeroU32::new).ok_or(
                WireError::FieldOutOfRange {
                    kind: c.kind,
                    field: "capacity",
                },
            )?;
            if h.kind == KIND_RESIZE {
                c.zero("incarnation", h.incarnation.into())?;
                let capacity = capacity.ok_or(WireError::FieldOutOfRange {
                    kind: c.kind,
                    field: "capacity",
                })?;
                Message::Resize(Resize {
                    id: h.seq,
                    capacity,
                })
            } else {
                Message::Resized(Resized {
                    id: h.seq,
                    incarnation: c.incarnation()?,
                    capacity,
                })
            }
        }
        _ => {
            c.flags(0)?;
            c.zero("status", h.status.into())?;
            c.zero("client", h.client)?;
            c.zero("ack_below", h.ack_below.into())?;
            c.zero("deadline", h.deadline.into())?;
            c.zero("method", h.method.into())?;
            Message::Description(Description {
                id: h.seq,
                incarnation: c.incarnation()?,
                payload,
            })
        }
    })
}
