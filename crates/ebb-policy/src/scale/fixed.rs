//! `none`: the pool stays as it is. The baseline every policy is compared
//! with, and what a run without autoscaling does.

use super::{Decision, Reason, ScalePolicy, Signals};
use ebb_core::{Instant, Rng};

#[derive(Clone, Copy, Debug, Default)]
pub struct Fixed;

impl ScalePolicy for Fixed {
    fn name(&self) -> String {
        "none".into()
    }

    fn decide(&mut self, s: &Signals, _now: Instant, _rng: &mut Rng) -> Decision {
        Decision::hold(s, Reason::Hold)
    }
}
