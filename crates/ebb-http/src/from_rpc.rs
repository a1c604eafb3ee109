//! The one mapping from ebb-rpc's typed failures onto [`HttpError`].

use ebb_core::Nanos;
use ebb_rpc::CallError;
use ebb_rpc::service::DispatchError;

use crate::HttpError;
use crate::error::DEFAULT_RETRY_AFTER_MS;

impl From<CallError> for HttpError {
    /// `may_have_run` is the error's own account (`CallError::may_have_run`:
    /// false only when the call provably never reached a node), so a client
    /// is never told it may repeat an at-most-once call that did run.
    fn from(e: CallError) -> HttpError {
        let retry_after = Nanos::from_millis(DEFAULT_RETRY_AFTER_MS);
        let may_have_run = e.may_have_run();
        match e {
            CallError::DeadlineExceeded { elapsed, .. } => HttpError::DeadlineExceeded {
                deadline: elapsed,
                may_have_run,
            },
            e @ (CallError::OutcomeUnknown { .. }
            | CallError::ConnectionLost { .. }
            | CallError::ServerUnresponsive { .. }) => HttpError::NodeLost {
                message: e.to_string(),
                may_have_run,
            },
            CallError::UnknownMethod { method } => {
                HttpError::UnknownMethod(format!("unknown method {method}"))
            }
            CallError::BadRequest { message } => HttpError::BadArguments(message),
            e @ (CallError::Refused { .. } | CallError::TooManyOutstanding { .. }) => {
                HttpError::Overloaded {
                    message: e.to_string(),
                    retry_after,
                }
            }
            e @ CallError::Overloaded { retry_after, .. } => HttpError::Overloaded {
                message: e.to_string(),
                retry_after,
            },
            CallError::Remote { message } | CallError::Panicked { message } => {
                HttpError::Remote(message)
            }
            e @ (CallError::Codec { .. } | CallError::Protocol { .. }) => {
                HttpError::Internal(e.to_string())
            }
        }
    }
}

impl From<DispatchError> for HttpError {
    fn from(e: DispatchError) -> HttpError {
        match e {
            e @ DispatchError::UnknownMethod(_) => HttpError::UnknownMethod(e.to_string()),
            DispatchError::BadArgs(m) => HttpError::BadArguments(m),
            e @ DispatchError::EncodeReply(_) => HttpError::Remote(e.to_string()),
            e @ DispatchError::BadReply(_) => HttpError::Internal(e.to_string()),
            e @ DispatchError::Rejected(_) => HttpError::Overloaded {
                message: e.to_string(),
                retry_after: Nanos::from_millis(DEFAULT_RETRY_AFTER_MS),
            },
            DispatchError::Overloaded {
                message,
                retry_after,
            } => HttpError::Overloaded {
                message,
                retry_after,
            },
            e @ DispatchError::OutcomeUnknown(_) => HttpError::NodeLost {
                message: e.to_string(),
                may_have_run: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    /// Every `CallError` variant, and what an HTTP caller must be told.
    #[test]
    fn each_call_error_maps_to_one_status_and_kind() {
        let cases: Vec<(CallError, StatusCode, &str, Option<bool>)> = vec![
            (
                CallError::DeadlineExceeded {
                    elapsed: Nanos::from_millis(5),
                    sent: true,
                },
                StatusCode::GATEWAY_TIMEOUT,
                "deadline_exceeded",
                Some(true),
            ),
            (
                CallError::OutcomeUnknown { old: 1, new: 2 },
                StatusCode::BAD_GATEWAY,
                "node_lost",
                Some(true),
            ),
            (
                CallError::ConnectionLost {
                    sent: true,
                    cause: "reset".into(),
                },
                StatusCode::BAD_GATEWAY,
                "node_lost",
                Some(true),
            ),
            (
                CallError::ServerUnresponsive {
                    silent: Nanos::from_secs(3),
                },
                StatusCode::BAD_GATEWAY,
                "node_lost",
                Some(true),
            ),
            (
                CallError::UnknownMethod {
                    method: "Demo.x".into(),
                },
                StatusCode::NOT_FOUND,
                "unknown_method",
                None,
            ),
            (
                CallError::BadRequest {
                    message: "key: expects String".into(),
                },
                StatusCode::BAD_REQUEST,
                "bad_arguments",
                None,
            ),
            (
                CallError::Refused {
                    reason: ebb_rpc::wire::Refusal::DeadlinePassed,
                    message: "cannot meet deadline".into(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                None,
            ),
            (
                CallError::Overloaded {
                    retry_after: Nanos::from_millis(40),
                    message: "queue ahead".into(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                None,
            ),
            (
                CallError::TooManyOutstanding { limit: 8 },
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                None,
            ),
            (
                CallError::Remote {
                    message: "failed".into(),
                },
                StatusCode::INTERNAL_SERVER_ERROR,
                "remote_error",
                None,
            ),
            (
                CallError::Codec {
                    message: "reply".into(),
                    sent: true,
                },
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
            ),
        ];
        for (call_error, status, kind, may_have_run) in cases {
            let what = call_error.to_string();
            let e = HttpError::from(call_error);
            assert_eq!(e.status(), status, "{what}");
            assert_eq!(e.kind(), kind, "{what}");
            assert_eq!(e.may_have_run(), may_have_run, "{what}");
            assert_eq!(e.retry_after().is_some(), kind == "overloaded", "{what}");
        }
    }

    #[test]
    fn each_dispatch_error_maps_to_one_status_and_kind() {
        let cases = [
            (
                DispatchError::UnknownMethod("Demo.x".into()),
                StatusCode::NOT_FOUND,
                "unknown_method",
            ),
            (
                DispatchError::BadArgs("key".into()),
                StatusCode::BAD_REQUEST,
                "bad_arguments",
            ),
            (
                DispatchError::EncodeReply("map".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                "remote_error",
            ),
            (
                DispatchError::Overloaded {
                    message: "queue ahead".into(),
                    retry_after: Nanos::from_millis(40),
                },
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
            ),
            (
                DispatchError::BadReply("bytes".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
        ];
        for (dispatch_error, status, kind) in cases {
            let e = HttpError::from(dispatch_error);
            assert_eq!((e.status(), e.kind()), (status, kind));
        }
    }
}
