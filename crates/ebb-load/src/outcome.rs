//! How one request ended, classified the same way for both protocols: an
//! RPC failure goes through ebb-http's mapping first, so "overloaded" means
//! the same thing whether it came as `CallError::Refused` or as a 503.

use ebb_core::Nanos;
use ebb_http::HttpError;
use ebb_rpc::CallError;
use serde_json::Value;

/// The `other_errors` label of a call that never left because the target
/// could not be connected to, over either protocol.
pub const CONNECT_FAILED: &str = "connect_failed";

/// The classes the summary counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Refused without running (ebb's `overloaded`, or a proxy's 503/429),
    /// with the wait the server asked for before a retry when it named one
    /// (ebb's `retry_after_ms`, an HTTP `Retry-After` in seconds, or an ebb
    /// RPC `Overloaded` reply's). The generator only reports it: an
    /// open-loop schedule that waited would hide the overload it measures.
    Overloaded {
        retry_after: Option<Nanos>,
    },
    /// No reply by the deadline (the server's or the client's own timer).
    DeadlineExceeded,
    /// The call may have run and its result is lost (a node died, a
    /// connection broke after sending, a proxy's 502).
    OutcomeUnknown,
    /// Anything else, by a short stable label (an ebb error kind, or
    /// `http_<status>`, or a client-side label).
    Other(String),
}

impl Outcome {
    /// The failure's label, as `ebb load`'s `errors` and `ebb demo`'s
    /// `other_errors_by_kind` name it; `None` for a success.
    pub fn label(&self) -> Option<&str> {
        match self {
            Outcome::Ok => None,
            Outcome::Overloaded { .. } => Some("overloaded"),
            Outcome::DeadlineExceeded => Some("deadline_exceeded"),
            Outcome::OutcomeUnknown => Some("outcome_unknown"),
            Outcome::Other(label) => Some(label),
        }
    }

    /// From an ebb error kind, its `may_have_run` field and the wait it
    /// asked for.
    pub fn from_kind(
        kind: &str,
        may_have_run: Option<bool>,
        retry_after: Option<Nanos>,
    ) -> Outcome {
        match kind {
            "overloaded" => Outcome::Overloaded { retry_after },
            "deadline_exceeded" => Outcome::DeadlineExceeded,
            // A lost node whose call provably never arrived is a plain error.
            "node_lost" if may_have_run != Some(false) => Outcome::OutcomeUnknown,
            other => Outcome::Other(other.to_owned()),
        }
    }

    pub fn from_call_error(e: CallError) -> Outcome {
        // A call that never left because no connection could be made is
        // the generator's own failure to reach the target, labelled as the
        // HTTP sender labels a failed connect, not a lost node.
        if let CallError::ConnectionLost { sent: false, .. } = e {
            return Outcome::Other(CONNECT_FAILED.to_owned());
        }
        // Only an `Overloaded` reply carries the server's wait; the HTTP
        // mapping gives other refusals a default the server never named.
        let asked = match &e {
            CallError::Overloaded { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let e = HttpError::from(e);
        Outcome::from_kind(e.kind(), e.may_have_run(), asked)
    }

    /// From an HTTP response: ebb's JSON error body when there is one, else
    /// the status alone (a proxy's own error page). `retry_after` is the
    /// response's `Retry-After` header; a body's `retry_after_ms`, finer
    /// than the header's whole seconds, wins over it.
    pub fn from_http(status: u16, retry_after: Option<Nanos>, body: &[u8]) -> Outcome {
        if status == 200 {
            return Outcome::Ok;
        }
        if let Ok(json) = serde_json::from_slice::<Value>(body) {
            if let Some(kind) = json.get("error").and_then(Value::as_str) {
                let may_have_run = json.get("may_have_run").and_then(Value::as_bool);
                let asked = json
                    .get("retry_after_ms")
                    .and_then(Value::as_u64)
                    .map(Nanos::from_millis)
                    .or(retry_after);
                return Outcome::from_kind(kind, may_have_run, asked);
            }
        }
        match status {
            429 | 503 => Outcome::Overloaded { retry_after },
            504 => Outcome::DeadlineExceeded,
            502 => Outcome::OutcomeUnknown,
            other => Outcome::Other(format!("http_{other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ebb_bodies_are_classified_by_kind_and_proxy_pages_by_status() {
        let body = |kind: &str, run: Option<bool>| {
            let mut v = serde_json::json!({"error": kind, "message": "m"});
            if let Some(r) = run {
                v["may_have_run"] = r.into();
            }
            v.to_string().into_bytes()
        };
        assert_eq!(Outcome::from_http(200, None, b"1"), Outcome::Ok);
        assert_eq!(
            Outcome::from_http(503, Some(Nanos::from_secs(2)), &body("overloaded", None)),
            Outcome::Overloaded {
                retry_after: Some(Nanos::from_secs(2))
            }
        );
        assert_eq!(
            Outcome::from_http(504, None, &body("deadline_exceeded", Some(true))),
            Outcome::DeadlineExceeded
        );
        assert_eq!(
            Outcome::from_http(502, None, &body("node_lost", Some(true))),
            Outcome::OutcomeUnknown
        );
        assert_eq!(
            Outcome::from_http(502, None, &body("node_lost", Some(false))),
            Outcome::Other("node_lost".into())
        );
        assert_eq!(
            Outcome::from_http(400, None, &body("bad_arguments", None)),
            Outcome::Other("bad_arguments".into())
        );
        let page = b"<html><body><h1>503 Service Unavailable</h1></body></html>";
        let two_s = Some(Nanos::from_secs(2));
        assert_eq!(
            Outcome::from_http(503, None, page),
            Outcome::Overloaded { retry_after: None }
        );
        assert_eq!(
            Outcome::from_http(429, two_s, page),
            Outcome::Overloaded { retry_after: two_s }
        );
        assert_eq!(
            Outcome::from_http(504, None, page),
            Outcome::DeadlineExceeded
        );
        assert_eq!(Outcome::from_http(502, None, page), Outcome::OutcomeUnknown);
        assert_eq!(
            Outcome::from_http(500, None, page),
            Outcome::Other("http_500".into())
        );
    }

    /// ebb's body names the wait in milliseconds, finer than the header's
    /// whole seconds (rounded up), and wins over it.
    #[test]
    fn an_ebb_bodys_retry_after_ms_wins_over_the_header() {
        let body = br#"{"error":"overloaded","message":"m","retry_after_ms":250}"#;
        assert_eq!(
            Outcome::from_http(503, Some(Nanos::from_secs(1)), body),
            Outcome::Overloaded {
                retry_after: Some(Nanos::from_millis(250))
            }
        );
    }

    #[test]
    fn rpc_failures_share_the_http_classes() {
        let cases = [
            (
                CallError::Refused {
                    reason: ebb_rpc::wire::Refusal::InFlight,
                    message: "full".into(),
                },
                Outcome::Overloaded { retry_after: None },
            ),
            (
                CallError::Overloaded {
                    retry_after: Nanos::from_millis(250),
                    message: "the work ahead cannot finish by the deadline".into(),
                },
                Outcome::Overloaded {
                    retry_after: Some(Nanos::from_millis(250)),
                },
            ),
            (
                CallError::DeadlineExceeded {
                    elapsed: Nanos::from_millis(5),
                    sent: true,
                },
                Outcome::DeadlineExceeded,
            ),
            (
                CallError::OutcomeUnknown { old: 1, new: 2 },
                Outcome::OutcomeUnknown,
            ),
            (
                CallError::ConnectionLost {
                    sent: true,
                    cause: "reset".into(),
                },
                Outcome::OutcomeUnknown,
            ),
            (
                CallError::ConnectionLost {
                    sent: false,
                    cause: "connection refused".into(),
                },
                Outcome::Other(CONNECT_FAILED.into()),
            ),
            (
                CallError::BadRequest {
                    message: "x".into(),
                },
                Outcome::Other("bad_arguments".into()),
            ),
        ];
        for (e, want) in cases {
            assert_eq!(Outcome::from_call_error(e), want);
        }
    }
}
