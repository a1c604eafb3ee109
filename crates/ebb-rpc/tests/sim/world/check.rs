//! The end-of-run rules every run must keep, whatever its seed: each call
//! ended; none succeeded or panicked without running; none told it did not
//! run yet ran (at-most-once); no protocol errors; no client holding its
//! secret refused as unauthenticated; no call without an accepted token
//! run. Kept apart so the rules read as one list.

use ebb_rpc::CallError;
use ebb_rpc::wire::Refusal;

use super::{Stats, World};

impl World {
    /// The end-of-run rules.
    pub(super) fn check(mut self) -> Result<Stats, String> {
        for (tag, call) in &self.calls {
            let runs = self.executed.get(tag).copied().unwrap_or(0);
            match &call.ended {
                None => {
                    return Err(format!(
                        "call {tag} (started {}, deadline {}) never ended",
                        call.start, call.deadline
                    ));
                }
                Some((_, Ok(()))) if runs == 0 => {
                    return Err(format!("call {tag} succeeded without running"));
                }
                Some((_, Err(CallError::Panicked { .. }))) if runs == 0 => {
                    return Err(format!("call {tag} panicked without running"));
                }
                Some((_, Err(e))) if !e.may_have_run() && runs > 0 && !call.idempotent => {
                    return Err(format!(
                        "call {tag} was rejected, told it did not run ({e}), yet ran {runs} times"
                    ));
                }
                Some((
                    _,
                    Err(e @ (CallError::BadRequest { .. } | CallError::UnknownMethod { .. })),
                )) => {
                    return Err(format!("call {tag} failed with a protocol error: {e}"));
                }
                Some((
                    _,
                    Err(
                        e @ CallError::Refused {
                            reason: Refusal::Unauthenticated,
                            ..
                        },
                    ),
                )) => {
                    return Err(format!(
                        "call {tag} of a client holding its secret was refused as unauthenticated: {e}"
                    ));
                }
                _ => {}
            }
            if self.outsider == Some(call.client) {
                if runs > 0 {
                    return Err(format!(
                        "call {tag} of a client without an accepted token ran {runs} times"
                    ));
                }
                match &call.ended {
                    Some((_, Ok(()))) => {
                        return Err(format!(
                            "call {tag} of a client without an accepted token succeeded"
                        ));
                    }
                    Some((
                        _,
                        Err(CallError::Refused {
                            reason: Refusal::Unauthorized,
                            ..
                        }),
                    )) => self.stats.outsider_calls_refused += 1,
                    _ => {}
                }
            }
        }
        self.stats.calls = self.calls.len() as u64;
        Ok(self.stats)
    }
}
