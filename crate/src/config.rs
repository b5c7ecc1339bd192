//! Model settings: Hugging Face's `config.json` for T5 (defaults as `transformers.T5Config`)
//! and our `free.json` for the early-exit settings. A stock HF T5 folder has no `free.json`
//! and still loads: it then runs the full model only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ModelFile, Result};
use crate::threshold::{BmmConfig, ClassMoments, Moments, DEFAULT_THRESHOLD};

/// The feed-forward variant, parsed from HF's `feed_forward_proj` ("relu", "gated-gelu", ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedForward {
    pub activation: Activation,
    /// Gated (T5 v1.1): `wo(act(wi_0 x) * wi_1 x)`; plain (v1.0): `wo(act(wi x))`.
    pub gated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    /// `gelu` in HF's ACT2FN: the exact (erf) form.
    GeluErf,
    /// `gelu_new`: the tanh approximation, which HF substitutes for "gated-gelu".
    GeluTanh,
    Silu,
}

impl FeedForward {
    fn parse(spec: &str) -> Result<Self> {
        let (gated, act) = match spec.split_once('-') {
            Some(("gated", act)) => (true, act),
            None => (false, spec),
            Some(_) => return Err(bad_ff(spec)),
        };
        let activation = match (act, gated) {
            ("relu", _) => Activation::Relu,
            ("gelu", true) | ("gelu_new", _) => Activation::GeluTanh,
            ("gelu", false) => Activation::GeluErf,
            ("silu", _) | ("swish", _) => Activation::Silu,
            _ => return Err(bad_ff(spec)),
        };
        Ok(FeedForward { activation, gated })
    }
}

fn bad_ff(spec: &str) -> Error {
    Error::Malformed {
        file: ModelFile::Config,
        reason: format!(
            "feed_forward_proj `{spec}` is not supported; use relu, gelu, silu or their gated- forms"
        ),
    }
}

/// The fields of HF's T5 `config.json` the engine uses; everything else is ignored.
#[derive(Debug, Clone, Deserialize)]
struct RawT5Config {
    #[serde(default = "d::vocab_size")]
    vocab_size: usize,
    #[serde(default = "d::d_model")]
    d_model: usize,
    #[serde(default = "d::d_kv")]
    d_kv: usize,
    #[serde(default = "d::d_ff")]
    d_ff: usize,
    #[serde(default = "d::num_layers")]
    num_layers: usize,
    #[serde(default)]
    num_decoder_layers: Option<usize>,
    #[serde(default = "d::num_heads")]
    num_heads: usize,
    #[serde(default = "d::num_buckets")]
    relative_attention_num_buckets: usize,
    #[serde(default = "d::max_distance")]
    relative_attention_max_distance: usize,
    #[serde(default = "d::eps")]
    layer_norm_epsilon: f64,
    #[serde(default = "d::feed_forward_proj")]
    feed_forward_proj: String,
    #[serde(default = "d::yes")]
    tie_word_embeddings: bool,
    /// transformers >= 5 stores the output scaling separately (and then always writes
    /// `tie_word_embeddings: true`); older configs imply it by `tie_word_embeddings`.
    #[serde(default)]
    scale_decoder_outputs: Option<bool>,
    #[serde(default)]
    pad_token_id: Option<u32>,
    #[serde(default)]
    eos_token_id: Option<EosIds>,
    #[serde(default)]
    decoder_start_token_id: Option<u32>,
    #[serde(default)]
    n_positions: Option<usize>,
}

/// HF allows `eos_token_id` to be one id or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum EosIds {
    One(u32),
    Many(Vec<u32>),
}

mod d {
    pub fn vocab_size() -> usize { 32128 }
    pub fn d_model() -> usize { 512 }
    pub fn d_kv() -> usize { 64 }
    pub fn d_ff() -> usize { 2048 }
    pub fn num_layers() -> usize { 6 }
    pub fn num_heads() -> usize { 8 }
    pub fn num_buckets() -> usize { 32 }
    pub fn max_distance() -> usize { 128 }
    pub fn eps() -> f64 { 1e-6 }
    pub fn feed_forward_proj() -> String { "relu".into() }
    pub fn yes() -> bool { true }
}

/// A validated T5 configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_encoder_layers: usize,
    pub num_decoder_layers: usize,
    pub num_heads: usize,
    pub num_buckets: usize,
    pub max_distance: usize,
    pub eps: f64,
    pub feed_forward: FeedForward,
    /// Multiply the final hidden state by d_model^-0.5 before the LM head (T5 v1.0).
    pub scale_decoder_outputs: bool,
    pub pad_token_id: u32,
    pub eos_token_ids: Vec<u32>,
    pub decoder_start_token_id: u32,
    /// The longest input the model was trained for (HF's `n_positions`, 512 by default);
    /// T5's relative positions have no hard limit, so this only bounds input truncation.
    pub max_input_tokens: usize,
}

impl T5Config {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let raw: RawT5Config = serde_json::from_slice(bytes).map_err(|e| Error::Malformed {
            file: ModelFile::Config,
            reason: e.to_string(),
        })?;
        let eos_token_ids = match raw.eos_token_id {
            None => vec![1],
            Some(EosIds::One(id)) => vec![id],
            Some(EosIds::Many(ids)) => ids,
        };
        let pad = raw.pad_token_id.unwrap_or(0);
        let cfg = T5Config {
            vocab_size: raw.vocab_size,
            d_model: raw.d_model,
            d_kv: raw.d_kv,
            d_ff: raw.d_ff,
            num_encoder_layers: raw.num_layers,
            num_decoder_layers: raw.num_decoder_layers.unwrap_or(raw.num_layers),
            num_heads: raw.num_heads,
            num_buckets: raw.relative_attention_num_buckets,
            max_distance: raw.relative_attention_max_distance,
            eps: raw.layer_norm_epsilon,
            feed_forward: FeedForward::parse(&raw.feed_forward_proj)?,
            scale_decoder_outputs: raw.scale_decoder_outputs.unwrap_or(raw.tie_word_embeddings),
            pad_token_id: pad,
            eos_token_ids,
            decoder_start_token_id: raw.decoder_start_token_id.unwrap_or(pad),
            max_input_tokens: raw.n_positions.unwrap_or(512),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_kv", self.d_kv),
            ("d_ff", self.d_ff),
            ("num_layers", self.num_encoder_layers),
            ("num_decoder_layers", self.num_decoder_layers),
            ("num_heads", self.num_heads),
            ("n_positions", self.max_input_tokens),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::Malformed {
                    file: ModelFile::Config,
                    reason: format!("{name} is 0; it must be at least 1"),
                });
            }
        }
        if self.num_heads.checked_mul(self.d_kv).is_none() {
            return Err(Error::Malformed {
                file: ModelFile::Config,
                reason: format!("num_heads {} x d_kv {} overflows this platform's sizes; the config is not a real model's", self.num_heads, self.d_kv),
            });
        }
        // Bucketing halves the buckets (bidirectional) and halves again for the exact range.
        if self.num_buckets < 4 || self.max_distance <= self.num_buckets / 4 {
            return Err(Error::Malformed {
                file: ModelFile::Config,
                reason: format!(
                    "relative_attention_num_buckets {} / relative_attention_max_distance {} leave no logarithmic range; use at least 4 buckets and a max distance above a quarter of them",
                    self.num_buckets, self.max_distance
                ),
            });
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(Error::Malformed {
                file: ModelFile::Config,
                reason: format!("layer_norm_epsilon {} must be a positive number", self.eps),
            });
        }
        let ids = [self.pad_token_id, self.decoder_start_token_id]
            .into_iter()
            .chain(self.eos_token_ids.iter().copied());
        for id in ids {
            if id as usize >= self.vocab_size {
                return Err(Error::Malformed {
                    file: ModelFile::Config,
                    reason: format!(
                        "special token id {id} is outside the vocabulary (vocab_size {})",
                        self.vocab_size
                    ),
                });
            }
        }
        Ok(())
    }

    pub fn inner_dim(&self) -> usize {
        self.num_heads * self.d_kv
    }

    /// Every backend's check of the ids it embeds: inside the vocabulary.
    pub fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            Some(bad) => Err(Error::InvalidInput(format!(
                "token id {bad} is outside the model's vocabulary of {}; the tokenizer does not belong to this model",
                self.vocab_size
            ))),
            None => Ok(()),
        }
    }

    /// Every backend's check of a range of decoder blocks to run: non-empty, within the decoder.
    pub fn check_blocks(&self, blocks: &std::ops::Range<usize>) -> Result<()> {
        if blocks.is_empty() || blocks.end > self.num_decoder_layers {
            return Err(Error::InvalidInput(format!(
                "decoder blocks {blocks:?} are not a non-empty range within 0..{}",
                self.num_decoder_layers
            )));
        }
        Ok(())
    }

    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_token_ids.contains(&id)
    }
}

/// How the shallow exit's confidence is measured (docs/method.md#confidence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConfidenceMeasure {
    /// p(1) - p(2) of the softmax: the default.
    #[default]
    Top2Gap,
    MaxProb,
}

/// `free.json`: the early-exit settings that travel with a checkpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreeConfig {
    /// S: the shallow model is decoder blocks 0..S-1.
    pub shallow_exit_layer: usize,
    #[serde(default)]
    pub confidence: ConfidenceMeasure,
    /// The threshold in force before the adaptive estimator's first fit (a `calibration`
    /// that fits gives the first one), and CALM's when a generation gives none.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    #[serde(default)]
    pub bmm: BmmConfig,
    /// Task name -> the prefix the model was trained with (T5's convention).
    #[serde(default = "default_tasks")]
    pub tasks: BTreeMap<String, String>,
    /// The adaptive threshold's starting data, fitted on a validation split (`free
    /// calibrate`); without it the estimator starts empty, at `threshold`.
    #[serde(default)]
    pub calibration: Option<Calibration>,
}

fn default_threshold() -> f64 {
    DEFAULT_THRESHOLD
}

/// T5's own prefixes for the two tasks of the demo model.
pub fn default_tasks() -> BTreeMap<String, String> {
    [("summarize", "summarize: "), ("translate", "translate English to French: ")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// free.json's `calibration`: the data the adaptive threshold starts from. Each class is
/// summarised by the method of moments' sufficient statistics of its clipped confidences
/// (count, mean, population variance), so points observed later combine with it exactly
/// as if all of them had been kept.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Confidences of tokens the deep model agreed with.
    pub consistent: CalibratedClass,
    /// Confidences of tokens the deep model changed.
    pub inconsistent: CalibratedClass,
    /// The threshold these statistics gave under this file's `bmm` settings when they were
    /// fitted. A record for readers: the estimator computes its start from the statistics
    /// under the rule in force, which gives this value unless `bmm` changed since.
    pub threshold: f64,
    pub source: CalibrationSource,
}

/// One class's statistics. The count is read as a signed number so that a negative one is
/// refused by name rather than by a parser's type error.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CalibratedClass {
    pub points: i64,
    pub mean: f64,
    pub variance: f64,
}

/// How a calibration was made, so a reader can tell whether it belongs to these weights and
/// redo it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationSource {
    /// The JSONL file whose inputs were decoded, as given to `free calibrate`.
    pub data: String,
    pub data_sha256: String,
    /// Inputs decoded per task, in the file's order.
    pub inputs_per_task: BTreeMap<String, usize>,
    /// The strategy that decoded them (the bench's name, e.g. free-adaptive).
    pub strategy: String,
    pub max_new_tokens: usize,
    /// SHA-256 of the model.safetensors decoded.
    pub weights_sha256: String,
}

/// What to do about a calibration that cannot be right.
const RECALIBRATE: &str = "fix it, delete `calibration`, or make it again with `free calibrate --model DIR --data FILE --write`";

impl CalibratedClass {
    /// What is wrong with the statistics of class `name`, if anything.
    fn problem(&self, name: &str) -> Option<String> {
        let CalibratedClass { points, mean, variance } = *self;
        let setting = format!("calibration.{name}");
        if points < 0 {
            return Some(format!("{setting}.points {points} must be 0 or more (it counts confidences); {RECALIBRATE}"));
        }
        if points == 0 {
            return (mean != 0.0 || variance != 0.0)
                .then(|| format!("{setting} has 0 points, so its mean ({mean}) and variance ({variance}) must be 0; {RECALIBRATE}"));
        }
        if !(0.0..=1.0).contains(&mean) {
            return Some(format!("{setting}.mean {mean} must be within [0, 1]: it is a mean of confidences; {RECALIBRATE}"));
        }
        // Values in [0, 1] with mean m vary the most when they sit at 0 and 1: m (1 - m).
        let most = mean * (1.0 - mean);
        if !(0.0..=most + 1e-12).contains(&variance) {
            return Some(format!(
                "{setting}.variance {variance} must be within [0, mean x (1 - mean)] = [0, {most}]: no confidences with mean {mean} vary that much; {RECALIBRATE}"
            ));
        }
        None
    }

    fn moments(&self) -> Moments {
        Moments { points: self.points as f64, mean: self.mean, variance: self.variance }
    }
}

impl From<Moments> for CalibratedClass {
    /// A class gathered by decoding: its count is whole.
    fn from(m: Moments) -> Self {
        CalibratedClass { points: m.points.round() as i64, mean: m.mean, variance: m.variance }
    }
}

impl Calibration {
    fn problem(&self) -> Option<String> {
        if !(0.0..=1.0).contains(&self.threshold) {
            return Some(format!("calibration.threshold {} must be within [0, 1]; {RECALIBRATE}", self.threshold));
        }
        self.consistent.problem("consistent").or_else(|| self.inconsistent.problem("inconsistent"))
    }

    /// Both classes' statistics, as the estimator takes them.
    pub fn moments(&self) -> ClassMoments {
        ClassMoments { consistent: self.consistent.moments(), inconsistent: self.inconsistent.moments() }
    }
}

impl FreeConfig {
    pub fn from_json(bytes: &[u8], t5: &T5Config) -> Result<Self> {
        let cfg: FreeConfig = serde_json::from_slice(bytes).map_err(|e| Error::Malformed {
            file: ModelFile::FreeSettings,
            reason: e.to_string(),
        })?;
        let layers = t5.num_decoder_layers;
        if cfg.shallow_exit_layer == 0 || cfg.shallow_exit_layer >= layers {
            return Err(Error::Malformed {
                file: ModelFile::FreeSettings,
                reason: format!(
                    "shallow_exit_layer {} must be between 1 and {} (the decoder has {layers} blocks)",
                    cfg.shallow_exit_layer,
                    layers - 1
                ),
            });
        }
        if !(0.0..=1.0).contains(&cfg.threshold) {
            return Err(Error::Malformed {
                file: ModelFile::FreeSettings,
                reason: format!("threshold {} must be within [0, 1]", cfg.threshold),
            });
        }
        if let Some(reason) = cfg.bmm.problem().or_else(|| cfg.calibration.as_ref().and_then(Calibration::problem)) {
            return Err(Error::Malformed { file: ModelFile::FreeSettings, reason });
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;
    use super::*;

    #[test]
    fn stock_t5_small_config_takes_hf_defaults() {
        let cfg = T5Config::from_json(br#"{"d_model": 512, "num_layers": 6}"#).unwrap();
        assert_eq!(cfg.num_decoder_layers, 6);
        assert_eq!(cfg.vocab_size, 32128);
        assert_eq!(cfg.feed_forward, FeedForward { activation: Activation::Relu, gated: false });
        assert_eq!(cfg.eos_token_ids, vec![1]);
        assert_eq!(cfg.decoder_start_token_id, 0);
        assert!(cfg.scale_decoder_outputs);
    }

    #[test]
    fn v11_layout_parses_gated_gelu_and_unequal_depths() {
        let cfg = T5Config::from_json(
            br#"{"feed_forward_proj": "gated-gelu", "num_layers": 2, "num_decoder_layers": 4,
                 "tie_word_embeddings": false, "eos_token_id": [1, 5]}"#,
        )
        .unwrap();
        assert_eq!(cfg.feed_forward, FeedForward { activation: Activation::GeluTanh, gated: true });
        assert_eq!((cfg.num_encoder_layers, cfg.num_decoder_layers), (2, 4));
        assert!(cfg.is_eos(5) && cfg.is_eos(1) && !cfg.is_eos(0));
        assert!(!cfg.scale_decoder_outputs);
        // transformers 5 writes both keys; its explicit flag wins.
        let cfg = T5Config::from_json(br#"{"tie_word_embeddings": true, "scale_decoder_outputs": false}"#)
            .unwrap();
        assert!(!cfg.scale_decoder_outputs);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let err = T5Config::from_json(br#"{"feed_forward_proj": "gated-mish"}"#).unwrap_err();
        assert!(err.to_string().contains("gated-mish"), "{err}");
        let err = T5Config::from_json(br#"{"num_heads": 0}"#).unwrap_err();
        assert!(err.to_string().contains("num_heads is 0"), "{err}");
        let err = T5Config::from_json(b"{not json").unwrap_err();
        assert!(matches!(err, Error::Malformed { file: ModelFile::Config, .. }), "{err}");
    }

    #[test]
    fn free_json_checks_the_exit_layer_and_unknown_fields() {
        let t5 = T5Config::from_json(br#"{"num_layers": 2, "num_decoder_layers": 6}"#).unwrap();
        let cfg = FreeConfig::from_json(br#"{"shallow_exit_layer": 2}"#, &t5).unwrap();
        assert_eq!(cfg.confidence, ConfidenceMeasure::Top2Gap);
        assert_eq!(cfg.threshold, 0.9);
        for bad in [r#"{"shallow_exit_layer": 6}"#, r#"{"shallow_exit_layer": 0}"#] {
            let err = FreeConfig::from_json(bad.as_bytes(), &t5).unwrap_err();
            assert!(err.to_string().contains("between 1 and 5"), "{err}");
        }
        let err = FreeConfig::from_json(br#"{"shallow_exit_layer": 2, "shallow": 1}"#, &t5)
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `shallow`"), "{err}");
    }

    const SOURCE: &str = r#""source": {"data": "data/validation.jsonl", "data_sha256": "ab", "inputs_per_task": {"summarize": 2},
        "strategy": "free-adaptive", "max_new_tokens": 64, "weights_sha256": "cd"}"#;

    /// free.json with a calibration whose parts are `consistent`, `inconsistent` and `rest`.
    fn with_calibration(consistent: &str, inconsistent: &str, rest: &str) -> String {
        format!(r#"{{"shallow_exit_layer": 2, "calibration": {{"consistent": {consistent}, "inconsistent": {inconsistent}, {rest}}}}}"#)
    }

    #[test]
    fn free_json_carries_a_calibration() {
        let t5 = T5Config::from_json(br#"{"num_layers": 2, "num_decoder_layers": 6}"#).unwrap();
        assert_eq!(FreeConfig::from_json(br#"{"shallow_exit_layer": 2}"#, &t5).unwrap().calibration, None);
        let json = with_calibration(
            r#"{"points": 400, "mean": 0.6, "variance": 0.04}"#,
            r#"{"points": 0, "mean": 0, "variance": 0}"#,
            &format!(r#""threshold": 0.333, {SOURCE}"#),
        );
        let calibration = FreeConfig::from_json(json.as_bytes(), &t5).unwrap().calibration.unwrap();
        assert_eq!(calibration.threshold, 0.333);
        assert_eq!(calibration.source.inputs_per_task, BTreeMap::from([("summarize".to_string(), 2)]));
        let moments = calibration.moments();
        assert_eq!(moments.consistent, Moments { points: 400.0, mean: 0.6, variance: 0.04 });
        assert_eq!(moments.inconsistent, Moments::EMPTY);
        // What the CLI writes reads back the same.
        let written = serde_json::to_string(&calibration).unwrap();
        assert_eq!(serde_json::from_str::<Calibration>(&written).unwrap(), calibration);
    }

    #[test]
    fn free_json_refuses_a_calibration_no_data_can_give() {
        let t5 = T5Config::from_json(br#"{"num_layers": 2, "num_decoder_layers": 6}"#).unwrap();
        let good = r#"{"points": 10, "mean": 0.5, "variance": 0.1}"#;
        let rest: &str = &format!(r#""threshold": 0.4, {SOURCE}"#);
        let (high, unknown): (&str, &str) = (&format!(r#""threshold": 1.2, {SOURCE}"#), &format!(r#""threshold": 0.4, "fitted": true, {SOURCE}"#));
        for (consistent, inconsistent, rest, says) in [
            (r#"{"points": -3, "mean": 0.5, "variance": 0.1}"#, good, rest, "calibration.consistent.points -3 must be 0 or more"),
            (good, r#"{"points": 10, "mean": 1.5, "variance": 0.1}"#, rest, "calibration.inconsistent.mean 1.5 must be within [0, 1]"),
            (good, r#"{"points": 10, "mean": 0.5, "variance": 0.3}"#, rest, "calibration.inconsistent.variance 0.3 must be within [0, mean x (1 - mean)] = [0, 0.25]"),
            (good, r#"{"points": 10, "mean": 0.5, "variance": -0.1}"#, rest, "calibration.inconsistent.variance -0.1 must be within"),
            (r#"{"points": 0, "mean": 0.5, "variance": 0}"#, good, rest, "calibration.consistent has 0 points, so its mean (0.5) and variance (0) must be 0"),
            (good, good, high, "calibration.threshold 1.2 must be within [0, 1]"),
            (r#"{"points": 10, "mean": 0.5, "variance": 0.1, "alpha": 1}"#, good, rest, "unknown field `alpha`"),
            (good, good, unknown, "unknown field `fitted`"),
            (good, good, r#""threshold": 0.4"#, "missing field `source`"),
            (r#"{"points": 10, "mean": NaN, "variance": 0.1}"#, good, rest, "expected value"),
        ] {
            let json = with_calibration(consistent, inconsistent, rest);
            let err = FreeConfig::from_json(json.as_bytes(), &t5).unwrap_err();
            assert!(matches!(err, Error::Malformed { file: ModelFile::FreeSettings, .. }), "{err}");
            assert!(err.to_string().contains(says), "{json}: {err}");
            if !says.starts_with("unknown") && !says.starts_with("missing") && !says.starts_with("expected") {
                assert!(err.to_string().contains("free calibrate --model DIR --data FILE --write"), "says what to do: {err}");
            }
        }
    }

    #[test]
    fn free_json_sets_every_estimator_setting_and_refuses_impossible_ones() {
        let t5 = T5Config::from_json(br#"{"num_layers": 2, "num_decoder_layers": 6}"#).unwrap();
        let cfg = FreeConfig::from_json(
            br#"{"shallow_exit_layer": 2, "bmm": {"min_points": 10, "min_threshold": 0.2, "max_threshold": 0.8,
                 "priors_from_counts": true, "window": 400, "refit_every_syncs": 16}}"#,
            &t5,
        )
        .unwrap();
        let want = BmmConfig {
            min_points: 10,
            min_threshold: 0.2,
            max_threshold: 0.8,
            priors_from_counts: true,
            window: Some(400),
            refit_every_syncs: Some(16),
            ..BmmConfig::default()
        };
        assert_eq!(cfg.bmm, want);
        for (bmm, says) in [
            (r#"{"zeta": 1.0}"#, "bmm.zeta 1 must be within (0, 1)"),
            (r#"{"max_disagreement": 0}"#, "bmm.max_disagreement 0 must be within (0, 1)"),
            (r#"{"min_threshold": 0.9, "max_threshold": 0.5}"#, "must satisfy 0 <= min < max <= 1"),
            (r#"{"max_threshold": 1.5}"#, "must satisfy 0 <= min < max <= 1"),
            (r#"{"window": 60}"#, "bmm.window 60 must hold at least 2 x bmm.min_points = 100 points"),
            (r#"{"refit_every_syncs": 0}"#, "bmm.refit_every_syncs must be at least 1"),
        ] {
            let json = format!(r#"{{"shallow_exit_layer": 2, "bmm": {bmm}}}"#);
            let err = FreeConfig::from_json(json.as_bytes(), &t5).unwrap_err();
            assert!(matches!(err, Error::Malformed { file: ModelFile::FreeSettings, .. }), "{err}");
            assert!(err.to_string().contains(says), "{bmm}: {err}");
        }
    }
}
