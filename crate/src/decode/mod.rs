//! Decoding strategies (docs/method.md#decoding-strategies): the full model, a static exit,
//! CALM-style per-block exits with state copying, and FREE's synchronized parallel decoding
//! with its exact mode. All run through one loop (`Session`) and report one trace format.

mod session;
mod trace;

pub use session::Session;
pub use trace::{Counters, TokenTrace};

use crate::config::ConfidenceMeasure;
use crate::error::{Error, Result};
use crate::backend::Backend;
use crate::threshold::AdaptiveThreshold;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// All L blocks for every token.
    Full,
    /// Always exit after `exit` blocks.
    Static { exit: usize },
    /// CALM: check confidence after every block from `min_exit` on; exit above `threshold`;
    /// skipped blocks cache keys/values copied from the exited state.
    Calm { min_exit: usize, threshold: f64 },
    /// FREE: shallow exit after `exit` blocks, synchronized parallel deep passes; `exact`
    /// verifies every shallow token and rolls back at the first wrong one.
    Free { exit: usize, exact: bool },
}

impl Strategy {
    fn validate(&self, blocks: usize) -> Result<()> {
        let exit = match *self {
            Strategy::Full => return Ok(()),
            Strategy::Static { exit } | Strategy::Free { exit, .. } => exit,
            Strategy::Calm { min_exit, threshold } => {
                check_threshold(threshold)?;
                min_exit
            }
        };
        if exit == 0 || exit >= blocks {
            return Err(Error::InvalidSetting {
                setting: "exit layer",
                value: exit.to_string(),
                reason: format!("must be between 1 and {} (the decoder has {blocks} blocks)", blocks - 1),
            });
        }
        Ok(())
    }
}

/// The exit threshold of FREE: fixed, or the Beta-mixture estimator (which lives across
/// generations, so it is borrowed).
pub enum Threshold<'t> {
    Fixed(f64),
    Adaptive(&'t mut AdaptiveThreshold),
}

impl Threshold<'_> {
    pub fn value(&self) -> f64 {
        match self {
            Threshold::Fixed(t) => *t,
            Threshold::Adaptive(est) => est.threshold(),
        }
    }

    fn observe(&mut self, confidence: f64, consistent: bool) {
        if let Threshold::Adaptive(est) = self {
            est.observe(confidence, consistent);
        }
    }

    /// Whether a synchronisation that checked no stacked token still teaches the estimator.
    fn learns_without_stack(&self) -> bool {
        matches!(self, Threshold::Adaptive(est) if est.settings().learn_without_stack)
    }

    fn after_sync(&mut self) {
        if let Threshold::Adaptive(est) = self {
            est.after_sync();
        }
    }
}

/// Thresholds are confidences: within [0, 1] and not NaN.
pub fn check_threshold(t: f64) -> Result<()> {
    if (0.0..=1.0).contains(&t) {
        Ok(())
    } else {
        Err(Error::InvalidSetting {
            setting: "threshold",
            value: t.to_string(),
            reason: "a confidence threshold must be a number within [0, 1]".into(),
        })
    }
}

/// What a generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Generated token ids, without the decoder start token and without the final EOS.
    pub tokens: Vec<u32>,
    /// True when the model emitted EOS; false when `max_new_tokens` ran out first.
    pub finished: bool,
    pub trace: Vec<TokenTrace>,
    pub counters: Counters,
}

/// How to decode, apart from the threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeSettings {
    pub strategy: Strategy,
    pub measure: ConfidenceMeasure,
    pub max_new_tokens: usize,
}

/// Encodes `input_ids` and runs one generation to the end (where nothing waits on a
/// browser's event loop; see `Session::advance`).
pub fn generate<B: Backend>(model: &B, input_ids: &[u32], settings: DecodeSettings, threshold: Threshold<'_>) -> Result<Generation> {
    let mut session = Session::new(model, model.start(input_ids)?, settings, threshold)?;
    session.run()?;
    let tokens = session.tokens().to_vec();
    let finished = session.finished() == Some(true);
    let (trace, counters) = session.into_parts();
    Ok(Generation { tokens, finished, trace, counters })
}

/// Greedy decoding with all decoder blocks for every token.
pub fn greedy<B: Backend>(model: &B, input_ids: &[u32], max_new_tokens: usize) -> Result<Generation> {
    let settings = DecodeSettings { strategy: Strategy::Full, measure: ConfidenceMeasure::default(), max_new_tokens };
    generate(model, input_ids, settings, Threshold::Fixed(1.0))
}
