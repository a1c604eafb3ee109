//! The smallest key among candidates offered one by one, ties broken
//! uniformly at random: without it, a scan would always favour the lowest
//! index among equally loaded nodes.

use ebb_core::Rng;

#[derive(Clone, Copy, Debug, Default)]
pub struct RandomArgMin {
    best: Option<(usize, f64)>,
    ties: u64,
}

impl RandomArgMin {
    /// Offers candidate `i` with `key`. Reservoir sampling over the minima:
    /// the k-th candidate to tie the minimum replaces the choice with
    /// probability 1/k, so every tied candidate ends up equally likely. One
    /// RNG draw per tie, none otherwise.
    #[inline]
    pub fn offer(&mut self, i: usize, key: f64, rng: &mut Rng) {
        match self.best {
            Some((_, b)) if key > b => {}
            Some((_, b)) if key == b => {
                self.ties += 1;
                if rng.below(self.ties) == 0 {
                    self.best = Some((i, key));
                }
            }
            _ => {
                self.best = Some((i, key));
                self.ties = 1;
            }
        }
    }

    pub fn index(&self) -> Option<usize> {
        self.best.map(|(i, _)| i)
    }
}
