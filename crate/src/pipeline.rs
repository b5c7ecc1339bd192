//! A loaded model folder: the T5 model, its tokenizer and its early-exit settings, from the
//! bytes of its files (browser) or a directory (native), and text-in, text-out generation.

use std::collections::BTreeMap;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::config::{default_tasks, Calibration, FreeConfig, T5Config};
use crate::decode::{Counters, DecodeSettings, Generation, Session, Strategy, Threshold, TokenTrace};
use crate::error::{Error, ModelFile, Result};
use crate::backend::Backend;
#[cfg(feature = "gpu")]
use crate::backend::gpu::{Gpu, GpuModel};
use crate::matrix::Dtype;
use crate::model::T5Model;
use crate::threshold::{AdaptiveThreshold, BmmConfig, ThresholdRule, DEFAULT_THRESHOLD};
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;

/// The strategies by the names the CLI, the wasm API and the bench use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(all(test, not(target_arch = "wasm32")), derive(ts_rs::TS))]
#[serde(rename_all = "kebab-case")]
pub enum StrategyName {
    Full,
    Static,
    Calm,
    Free,
    FreeExact,
}

/// What a strategy does with a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ThresholdUse {
    /// It has none (full, static).
    None,
    /// A fixed one (calm: given, else free.json's).
    Fixed,
    /// A fixed one, or without one the adaptive threshold, which an error budget
    /// (`max_disagreement`) may read instead of FREE's zeta rule (free, free-exact).
    FixedOrAdaptive,
}

/// One row of `STRATEGIES`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StrategyInfo {
    pub name: StrategyName,
    /// What it does, in a few words (the demo page's menu; the start of its errors).
    pub summary: &'static str,
    pub threshold: ThresholdUse,
    /// It exits early, so it has an exit layer (free.json's S, or `exit_layer`).
    pub exits_early: bool,
    /// Its output is token for token the full model's.
    pub exact: bool,
}

/// Every strategy and what it takes: the one table the options are checked against
/// (`GenerateOptions::check_applicable`), mirrored for JavaScript into js/src/strategies.ts
/// (a test keeps the mirror current), where the npm package and the demo page read it.
pub const STRATEGIES: [StrategyInfo; 5] = [
    StrategyInfo {
        name: StrategyName::Free,
        summary: "synchronized parallel decoding",
        threshold: ThresholdUse::FixedOrAdaptive,
        exits_early: true,
        exact: false,
    },
    StrategyInfo {
        name: StrategyName::FreeExact,
        summary: "verified: the same output as full",
        threshold: ThresholdUse::FixedOrAdaptive,
        exits_early: true,
        exact: true,
    },
    StrategyInfo {
        name: StrategyName::Full,
        summary: "runs every block for every token",
        threshold: ThresholdUse::None,
        exits_early: false,
        exact: true,
    },
    StrategyInfo {
        name: StrategyName::Static,
        summary: "exits every token at the shallow exit",
        threshold: ThresholdUse::None,
        exits_early: true,
        exact: false,
    },
    StrategyInfo {
        name: StrategyName::Calm,
        summary: "exits after any block once confident",
        threshold: ThresholdUse::Fixed,
        exits_early: true,
        exact: false,
    },
];

/// The names of the strategies `pick` keeps, as a list in words ("free and free-exact").
pub fn strategies_where(pick: impl Fn(&StrategyInfo) -> bool) -> String {
    let names: Vec<&str> = STRATEGIES.iter().filter(|s| pick(s)).map(|s| s.name.as_str()).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

impl StrategyInfo {
    /// It reads the adaptive threshold when given no fixed one.
    pub fn reads_adaptive(&self) -> bool {
        self.threshold == ThresholdUse::FixedOrAdaptive
    }
}

impl StrategyName {
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyName::Full => "full",
            StrategyName::Static => "static",
            StrategyName::Calm => "calm",
            StrategyName::Free => "free",
            StrategyName::FreeExact => "free-exact",
        }
    }

    pub fn info(self) -> &'static StrategyInfo {
        STRATEGIES.iter().find(|s| s.name == self).expect("every strategy has a row in STRATEGIES")
    }
}

impl std::str::FromStr for StrategyName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(s.into())).map_err(|_| {
            let names: Vec<&str> = STRATEGIES.iter().map(|s| s.name.as_str()).collect();
            let (last, rest) = names.split_last().expect("STRATEGIES is not empty");
            Error::InvalidSetting { setting: "strategy", value: s.into(), reason: format!("use {} or {last}", rest.join(", ")) }
        })
    }
}

/// What to generate with (by default FREE with the adaptive threshold). The npm package's
/// `EngineOptions` (js/src/options.ts) is generated from this declaration, docs included.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(all(test, not(target_arch = "wasm32")), derive(ts_rs::TS), ts(rename = "EngineOptions", optional_fields))]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateOptions {
    /// Default "free".
    pub strategy: StrategyName,
    /// A fixed confidence threshold in [0, 1] for the strategies that take one
    /// (`STRATEGIES`). Without one, free and free-exact use the adaptive threshold (FREE's
    /// Beta mixture, learning across generations) and calm free.json's threshold.
    pub threshold: Option<f64>,
    /// Default 64; at most the model's n_positions.
    pub max_new_tokens: usize,
    /// Overrides free.json's shallow exit (S); required for early exits without free.json.
    pub exit_layer: Option<usize>,
    /// A task of free.json's `tasks` ("summarize", "translate"): its prefix goes before the
    /// text. Without one the text is used as given.
    pub task: Option<String>,
    /// For the adaptive threshold: the largest share of exited tokens the deep model may
    /// disagree with, in (0, 1), e.g. 0.05 (the error-budget rule), instead of FREE's zeta
    /// rule. Without it, free.json's `bmm.max_disagreement`, else the zeta rule. What the
    /// threshold learned is kept when this changes.
    pub max_disagreement: Option<f64>,
    /// Record each step before the last token is read back, on the token the device chose
    /// (thrown away when it turns out otherwise), so the GPU never idles waiting for the
    /// page. Default: on WebGPU, not on the CPU (where nothing waits).
    pub run_ahead: Option<bool>,
}

impl GenerateOptions {
    /// A setting the chosen strategy has no use for is an error, not silently ignored (a
    /// threshold given to `full`, say, would suggest it changed something): read off
    /// `STRATEGIES`.
    pub fn check_applicable(&self) -> Result<()> {
        let info = self.strategy.info();
        let (name, does) = (info.name.as_str(), info.summary);
        let refuse = |setting: &'static str, value: String, reason: String| Err(Error::InvalidSetting { setting, value, reason });
        if let (ThresholdUse::None, Some(t)) = (info.threshold, self.threshold) {
            return refuse("threshold", t.to_string(), format!("{name} {does} and has no threshold; drop it"));
        }
        if let (false, Some(n)) = (info.exits_early, self.exit_layer) {
            return refuse("exit_layer", n.to_string(), format!("{name} has no early exit; drop it"));
        }
        match (info.threshold, self.max_disagreement) {
            (ThresholdUse::FixedOrAdaptive, Some(r)) if self.threshold.is_some() => refuse(
                "max_disagreement",
                r.to_string(),
                "the error budget sets the adaptive threshold; drop it or the fixed threshold".into(),
            ),
            (ThresholdUse::None | ThresholdUse::Fixed, Some(r)) => refuse(
                "max_disagreement",
                r.to_string(),
                format!(
                    "the error budget sets the adaptive threshold of {}; drop it or use one of those strategies",
                    strategies_where(StrategyInfo::reads_adaptive)
                ),
            ),
            _ => Ok(()),
        }
    }
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            strategy: StrategyName::Free,
            threshold: None,
            max_new_tokens: 64,
            exit_layer: None,
            task: None,
            max_disagreement: None,
            run_ahead: None,
        }
    }
}

/// A finished generation as it is reported: the CLI's `--json` and the wasm API's
/// `generate` (the npm package's `Generation`) are this one shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(all(test, not(target_arch = "wasm32")), derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub text: String,
    /// Generated token ids, without the final end-of-sequence token.
    pub tokens: Vec<u32>,
    /// True when the model ended the text itself (EOS), false when `maxNewTokens` ran out.
    pub finished: bool,
    /// Input tokens dropped because the input was longer than the model accepts.
    pub truncated_input_tokens: usize,
    /// Bytes of input text past 64 per input token the model takes (32768 for 512
    /// positions), not tokenized at all (their tokens are not in `truncatedInputTokens`).
    pub truncated_input_bytes: usize,
    /// Every decided token in order, rolled-back ones included.
    pub trace: Vec<TokenTrace>,
    /// What the run that produced the result cost (after a device change, the CPU's replay).
    pub counters: Counters,
    /// Of the run that produced the result (after a device change, the CPU's replay).
    pub timings: Timings,
}

/// Wall-clock time of a generation's two phases, in milliseconds (measured by the caller:
/// std has no clock on wasm32).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(all(test, not(target_arch = "wasm32")), derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// Tokenizing the input and running the encoder. On WebGPU the encoder's work is
    /// submitted with the first decoder step, so there it counts in `decodeMs`.
    pub encode_ms: f64,
    /// The decoder steps, with whatever the caller did between them (in the browser,
    /// `onToken` and the event loop's turns).
    pub decode_ms: f64,
}

impl Report {
    pub fn new(out: TextGeneration, timings: Timings) -> Self {
        Report {
            text: out.text,
            tokens: out.generation.tokens,
            finished: out.generation.finished,
            truncated_input_tokens: out.input_cut.tokens,
            truncated_input_bytes: out.input_cut.bytes,
            trace: out.generation.trace,
            counters: out.generation.counters,
            timings,
        }
    }
}

/// The files of an HF model folder, as bytes.
pub struct ModelFiles<'a> {
    pub config: &'a [u8],
    pub weights: &'a [u8],
    pub tokenizer: &'a [u8],
    /// `free.json`; absent for a stock HF T5 checkpoint (then only the full model runs).
    pub free: Option<&'a [u8]>,
}

/// A model on some backend (`T5Model` on the CPU by default, `GpuModel` on WebGPU) with
/// its tokenizer and early-exit settings.
pub struct Pipeline<B: Backend = T5Model> {
    model: B,
    tokenizer: Tokenizer,
    free: Option<FreeConfig>,
    /// FREE's Beta-mixture threshold, learning across generations (from free.json's
    /// calibration when it has one). Every generation with the adaptive threshold reads
    /// it, whatever its strategy or rule.
    adaptive: AdaptiveThreshold,
    /// Task name -> prefix (free.json's, or T5's own two).
    tasks: BTreeMap<String, String>,
}

/// The result of generating from text.
#[derive(Debug, Clone, PartialEq)]
pub struct TextGeneration {
    pub text: String,
    pub generation: Generation,
    /// What of the input the model did not see, because it was longer than the model takes.
    pub input_cut: InputCut,
}

/// Bytes of input text tokenized per input token the model takes (`max_input_tokens`). A
/// SentencePiece piece holds at most 16 characters (its default `max_piece_length`), 64
/// bytes of UTF-8, and text averages about 4 bytes per token, so only text padded with what
/// the normalizer removes (runs of spaces) gives the model fewer tokens than its limit.
/// Leaving the rest untokenized bounds what a long input costs: the tokenizer takes about
/// 130 bytes of memory per byte of text (1.4 GB for a 10 MB source).
pub const INPUT_BYTES_PER_TOKEN: usize = 64;

/// What of an input text the model does not see (`Pipeline::encode_input`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InputCut {
    /// Tokens dropped past the model's input limit, of the text tokenized.
    pub tokens: usize,
    /// Bytes of text past `Pipeline::max_input_bytes`, not tokenized at all.
    pub bytes: usize,
}

impl InputCut {
    pub fn is_cut(&self) -> bool {
        self.tokens > 0 || self.bytes > 0
    }
}

impl Pipeline {
    /// A pipeline on the CPU, its weights as stored.
    pub fn from_files(files: &ModelFiles<'_>) -> Result<Self> {
        Pipeline::from_files_as(files, None)
    }

    /// A pipeline on the CPU, its weight matrices held as `dtype` (None: as stored).
    pub fn from_files_as(files: &ModelFiles<'_>, dtype: Option<Dtype>) -> Result<Self> {
        let device = Device::Cpu;
        Pipeline::assemble(files, |config, weights| T5Model::load_as(config, weights, &device, dtype))
    }

    /// Loads `config.json`, `model.safetensors`, `tokenizer.json` and, if present,
    /// `free.json` from a folder, onto the CPU.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: impl AsRef<std::path::Path>) -> Result<Self> {
        Self::from_files(&ModelDir::read(dir)?.files())
    }
}

#[cfg(feature = "gpu")]
impl Pipeline<GpuModel> {
    /// A pipeline on a WebGPU device, its weights as stored (f16 kept packed).
    pub fn from_files_gpu(files: &ModelFiles<'_>, gpu: Gpu) -> Result<Self> {
        Pipeline::from_files_gpu_as(files, gpu, None)
    }

    /// A pipeline on a WebGPU device, its weight matrices held as `dtype` (None: as stored).
    pub fn from_files_gpu_as(files: &ModelFiles<'_>, gpu: Gpu, dtype: Option<Dtype>) -> Result<Self> {
        Pipeline::assemble(files, |config, weights| GpuModel::load(config, weights, gpu, dtype))
    }
}

/// The files of a model folder, read into memory.
#[cfg(not(target_arch = "wasm32"))]
pub struct ModelDir {
    config: Vec<u8>,
    weights: Vec<u8>,
    tokenizer: Vec<u8>,
    free: Option<Vec<u8>>,
}

#[cfg(not(target_arch = "wasm32"))]
impl ModelDir {
    pub fn read(dir: impl AsRef<std::path::Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let read = |file: ModelFile| {
            let path = dir.join(file.file_name());
            std::fs::read(&path).map_err(|source| Error::Io { file, path: path.display().to_string(), source })
        };
        let free_path = dir.join(ModelFile::FreeSettings.file_name());
        let free = if free_path.exists() { Some(read(ModelFile::FreeSettings)?) } else { None };
        Ok(ModelDir { config: read(ModelFile::Config)?, weights: read(ModelFile::Weights)?, tokenizer: read(ModelFile::Tokenizer)?, free })
    }

    pub fn files(&self) -> ModelFiles<'_> {
        ModelFiles { config: &self.config, weights: &self.weights, tokenizer: &self.tokenizer, free: self.free.as_deref() }
    }
}

impl<B: Backend> Pipeline<B> {
    /// Parses the settings and the tokenizer, checks they fit the config, and builds the
    /// model from the weights with `load`.
    fn assemble(files: &ModelFiles<'_>, load: impl FnOnce(T5Config, Weights) -> Result<B>) -> Result<Self> {
        let config = T5Config::from_json(files.config)?;
        let free = files.free.map(|b| FreeConfig::from_json(b, &config)).transpose()?;
        let tokenizer = Tokenizer::from_bytes(files.tokenizer)?;
        // Before the weights load: a tokenizer with more ids is another model's, whatever
        // the weights say.
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(vocabulary_mismatch(tokenizer.vocab_size(), config.vocab_size));
        }
        let model = load(config, Weights::from_bytes(files.weights, &Device::Cpu)?)?;
        // After: the weights have confirmed config.json's vocab_size (a config that
        // disagrees with them is the first thing to fix).
        let model_vocab = model.config().vocab_size;
        if model_vocab.saturating_sub(tokenizer.vocab_size()) >= PADDING_ROWS {
            return Err(vocabulary_mismatch(tokenizer.vocab_size(), model_vocab));
        }
        let adaptive = AdaptiveThreshold::new(match &free {
            Some(f) => f.bmm.settings(f.threshold, f.calibration.as_ref().map(Calibration::moments)),
            None => BmmConfig::default().settings(DEFAULT_THRESHOLD, None),
        });
        let tasks = free.as_ref().map_or_else(default_tasks, |f| f.tasks.clone());
        Ok(Pipeline { model, tokenizer, free, adaptive, tasks })
    }

    pub fn model(&self) -> &B {
        &self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// free.json's settings; None for a stock HF checkpoint.
    pub fn free_config(&self) -> Option<&FreeConfig> {
        self.free.as_ref()
    }

    /// The pipeline's adaptive threshold, as generations left it.
    pub fn adaptive(&self) -> &AdaptiveThreshold {
        &self.adaptive
    }

    /// For what carries the estimator across pipelines or rolls it back (a device change,
    /// a calibration run that starts it empty).
    pub fn adaptive_mut(&mut self) -> &mut AdaptiveThreshold {
        &mut self.adaptive
    }

    /// The names of the tasks this model knows (`GenerateOptions::task`).
    pub fn task_names(&self) -> impl Iterator<Item = &str> {
        self.tasks.keys().map(String::as_str)
    }

    /// The most bytes of an input text that are tokenized (`INPUT_BYTES_PER_TOKEN` per token
    /// the model takes).
    pub fn max_input_bytes(&self) -> usize {
        self.model.config().max_input_tokens.saturating_mul(INPUT_BYTES_PER_TOKEN)
    }

    /// Token ids of `text` (after `task`'s prefix), cut to the model's input limit (keeping
    /// the final `</s>`); of a longer text only the first `max_input_bytes` are tokenized.
    /// Returns the ids and what was cut.
    pub fn encode_input(&self, text: &str, task: Option<&str>) -> Result<(Vec<u32>, InputCut)> {
        if text.trim().is_empty() {
            return Err(Error::InvalidInput("the input text is empty; give some text to generate from".into()));
        }
        let prefix = match task {
            None => String::new(),
            Some(task) => self.tasks.get(task).cloned().ok_or_else(|| Error::InvalidSetting {
                setting: "task",
                value: task.into(),
                reason: format!("this model knows the tasks {:?}", self.tasks.keys().collect::<Vec<_>>()),
            })?,
        };
        let (head, bytes) = head(text, self.max_input_bytes());
        let mut ids = self.tokenizer.encode(&format!("{prefix}{head}"))?;
        let limit = self.model.config().max_input_tokens;
        let tokens = ids.len().saturating_sub(limit);
        if tokens > 0 {
            let last = *ids.last().expect("ids longer than a positive limit");
            ids.truncate(limit);
            if self.model.config().is_eos(last) {
                *ids.last_mut().expect("limit is positive") = last;
            }
        }
        Ok((ids, InputCut { tokens, bytes }))
    }

    /// The decoder settings `options` ask for.
    fn settings(&self, options: &GenerateOptions) -> Result<DecodeSettings> {
        let free = self.free.as_ref();
        let exit = || {
            options.exit_layer.or(free.map(|f| f.shallow_exit_layer)).ok_or_else(|| Error::InvalidSetting {
                setting: "strategy",
                value: format!("{:?}", options.strategy),
                reason: "this model has no free.json, so its shallow exit is unknown: add free.json or give an exit layer".into(),
            })
        };
        let strategy = match options.strategy {
            StrategyName::Full => Strategy::Full,
            StrategyName::Static => Strategy::Static { exit: exit()? },
            StrategyName::Calm => Strategy::Calm {
                min_exit: exit()?,
                threshold: self.fixed_threshold(options),
            },
            StrategyName::Free => Strategy::Free { exit: exit()?, exact: false },
            StrategyName::FreeExact => Strategy::Free { exit: exit()?, exact: true },
        };
        let measure = free.map(|f| f.confidence).unwrap_or_default();
        Ok(DecodeSettings { strategy, measure, max_new_tokens: options.max_new_tokens })
    }

    /// The fixed threshold `options` give, else free.json's, else `DEFAULT_THRESHOLD`: what
    /// `calm` exits at, and the bench's fixed-threshold rows.
    pub fn fixed_threshold(&self, options: &GenerateOptions) -> f64 {
        options.threshold.unwrap_or(self.free.as_ref().map_or(DEFAULT_THRESHOLD, |f| f.threshold))
    }

    /// The rule the adaptive threshold reads the fit with for `options`: their error budget,
    /// else free.json's, else FREE's zeta rule.
    pub fn threshold_rule(&self, options: &GenerateOptions) -> Result<ThresholdRule> {
        match options.max_disagreement {
            Some(rate) if !(rate > 0.0 && rate < 1.0) => Err(Error::InvalidSetting {
                setting: "max_disagreement",
                value: rate.to_string(),
                reason: "it is the largest share of exited tokens the deep model may disagree with: give a number in (0, 1), e.g. 0.05".into(),
            }),
            rate => Ok(self.free.as_ref().map_or(&BmmConfig::default(), |f| &f.bmm).rule(rate)),
        }
    }

    /// Starts a generation from text, to be decided step by step (streaming callers) or
    /// run to the end (`generate`).
    /// The pipeline's own adaptive threshold, carried from one generation to the next, reads
    /// its fit with the rule `options` ask for.
    pub fn start(&mut self, text: &str, options: &GenerateOptions) -> Result<Generating<'_, B>> {
        let prepared = self.prepare(text, options)?;
        let rule = self.threshold_rule(options)?;
        self.adaptive.set_rule(rule);
        launch(&self.model, &self.tokenizer, prepared, Some(&mut self.adaptive))
    }

    /// `start` with an adaptive threshold the caller keeps (the bench gives each strategy
    /// its own), which keeps its own rule; `None` where the strategy reads no adaptive
    /// threshold (a fixed one, or full, static and calm).
    pub fn start_with<'a>(
        &'a self,
        text: &str,
        options: &GenerateOptions,
        adaptive: Option<&'a mut AdaptiveThreshold>,
    ) -> Result<Generating<'a, B>> {
        launch(&self.model, &self.tokenizer, self.prepare(text, options)?, adaptive)
    }

    /// What a generation needs before its model runs: checked options, the input's ids,
    /// the decoder settings.
    fn prepare(&self, text: &str, options: &GenerateOptions) -> Result<Prepared> {
        options.check_applicable()?;
        let (ids, input_cut) = self.encode_input(text, options.task.as_deref())?;
        Ok(Prepared {
            ids,
            input_cut,
            settings: self.settings(options)?,
            fixed: options.threshold,
            reads_adaptive: options.strategy.info().reads_adaptive(),
            run_ahead: options.run_ahead,
        })
    }

    /// Generates from text in one call.
    pub fn generate(&mut self, text: &str, options: &GenerateOptions) -> Result<TextGeneration> {
        let mut generating = self.start(text, options)?;
        generating.run()?;
        generating.finish()
    }
}

struct Prepared {
    ids: Vec<u32>,
    input_cut: InputCut,
    settings: DecodeSettings,
    /// The fixed threshold, if any (else the adaptive estimator, where the strategy reads one).
    fixed: Option<f64>,
    reads_adaptive: bool,
    run_ahead: Option<bool>,
}

/// Encodes the input and opens the session: the one place a generation starts.
fn launch<'a, B: Backend>(
    model: &'a B,
    tokenizer: &'a Tokenizer,
    p: Prepared,
    adaptive: Option<&'a mut AdaptiveThreshold>,
) -> Result<Generating<'a, B>> {
    let threshold = match (p.fixed, adaptive) {
        (Some(t), _) => Threshold::Fixed(t),
        (None, Some(est)) => Threshold::Adaptive(est),
        (None, None) if p.reads_adaptive => {
            return Err(Error::InvalidSetting {
                setting: "threshold",
                value: String::new(),
                reason: format!(
                    "{} need a fixed threshold or an adaptive estimator to start with",
                    strategies_where(StrategyInfo::reads_adaptive)
                ),
            })
        }
        // the others never read it (calm's is in its strategy)
        (None, None) => Threshold::Fixed(DEFAULT_THRESHOLD),
    };
    let session = Session::new(model, model.start(&p.ids)?, p.settings, threshold)?.with_run_ahead(p.run_ahead);
    Ok(Generating { session, tokenizer, input_cut: p.input_cut })
}

/// `text` cut to at most `max` bytes, at a character boundary, and the bytes cut off.
fn head(text: &str, max: usize) -> (&str, usize) {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], text.len() - end)
}

/// Rows of a model's vocabulary past its tokenizer's ids that are padding: Hugging Face's
/// T5 checkpoints round 32100 tokens up to 32128 rows (a multiple of 128), rows a trained
/// model does not emit. More rows than that mean the tokenizer is another model's, and the
/// ids it lacks would decode to nothing.
const PADDING_ROWS: usize = 128;

fn vocabulary_mismatch(tokenizer: usize, model: usize) -> Error {
    let consequence = if tokenizer > model {
        format!("the model cannot read its ids {model} and up")
    } else {
        format!("the model can emit {} ids it cannot decode (at most {} unused rows are padding)", model - tokenizer, PADDING_ROWS - 1)
    };
    Error::Malformed {
        file: ModelFile::Tokenizer,
        reason: format!(
            "it has {tokenizer} ids but the model's vocabulary (config.json vocab_size) is {model}: {consequence}; the tokenizer belongs to another model"
        ),
    }
}

/// A generation in progress (`Pipeline::start`): a decoding session and the tokenizer that
/// gives its tokens their text.
pub struct Generating<'p, B: Backend = T5Model> {
    session: Session<'p, 'p, B>,
    tokenizer: &'p Tokenizer,
    input_cut: InputCut,
}

impl<B: Backend> Generating<'_, B> {
    pub fn is_done(&self) -> bool {
        self.session.finished().is_some()
    }

    /// Decides the next token; returns the trace index from which entries are new or
    /// changed (see `Session::advance`).
    pub async fn advance(&mut self) -> Result<usize> {
        self.session.advance().await
    }

    /// `advance` where nothing waits on a browser's event loop.
    pub fn step(&mut self) -> Result<usize> {
        self.session.step()
    }

    /// Steps to the end of the generation.
    pub fn run(&mut self) -> Result<()> {
        self.session.run()
    }

    /// The trace from entry `from` on, with each token's text.
    pub fn entries_from(&self, from: usize) -> Vec<TokenTrace> {
        self.session.trace()[from..].iter().map(|e| with_text(self.tokenizer, e.clone())).collect()
    }

    /// The finished generation: its text, tokens, and the trace with token texts.
    pub fn finish(self) -> Result<TextGeneration> {
        let tokens = self.session.tokens().to_vec();
        let finished = self.session.finished() == Some(true);
        let text = self.tokenizer.decode(&tokens)?;
        let (tokenizer, input_cut) = (self.tokenizer, self.input_cut);
        let (trace, counters) = self.session.into_parts();
        let trace = trace.into_iter().map(|e| with_text(tokenizer, e)).collect();
        let generation = Generation { tokens, finished, trace, counters };
        Ok(TextGeneration { text, generation, input_cut })
    }
}

fn with_text(tokenizer: &Tokenizer, entry: TokenTrace) -> TokenTrace {
    TokenTrace { text: tokenizer.token_text(entry.token), deep_text: entry.deep_token.map(|d| tokenizer.token_text(d)), ..entry }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;
    use super::*;

    /// js/src/strategies.ts as `STRATEGIES` makes it.
    #[cfg(not(target_arch = "wasm32"))]
    fn strategies_mirror() -> String {
        let rows: Vec<String> = STRATEGIES.iter().map(|s| format!("  {},\n", serde_json::to_string(s).unwrap())).collect();
        format!(
            "// Generated from crate/src/pipeline.rs `STRATEGIES` by its test `strategies_mirror_is_current`\n\
             // (`FREE_UPDATE_MIRRORS=1 cargo test --lib mirror` rewrites it): do not edit.\n\n\
             /** Every decoding strategy and what it takes (crate/src/pipeline.rs `StrategyInfo`). */\n\
             export const STRATEGIES = [\n{}] as const;\n",
            rows.concat()
        )
    }

    /// A TypeScript declaration, exported, with its docs.
    #[cfg(not(target_arch = "wasm32"))]
    fn decl<T: ts_rs::TS>() -> String {
        format!("{}export {}\n", T::docs().unwrap_or_default(), T::decl(&ts_rs::Config::new()))
    }

    /// js/src/report.ts: the TypeScript declarations of what the engine reports.
    #[cfg(not(target_arch = "wasm32"))]
    fn report_mirror() -> String {
        use crate::threshold::{beta::Moments, BetaParamsView, BmmState, ClassMoments, Fit, ThresholdRule};
        let decls = [
            decl::<TokenTrace>(),
            decl::<Counters>(),
            decl::<Timings>(),
            decl::<Report>(),
            decl::<BmmState>(),
            decl::<ThresholdRule>(),
            decl::<Fit>(),
            decl::<BetaParamsView>(),
            decl::<ClassMoments>(),
            decl::<Moments>(),
        ];
        format!(
            "// Generated from crate/src/decode/trace.rs (TokenTrace, Counters), crate/src/pipeline.rs\n\
             // (Timings, Report) and crate/src/threshold (AdaptiveState and its parts) by the test\n\
             // `report_mirror_is_current` (`FREE_UPDATE_MIRRORS=1 cargo test --lib mirror` rewrites it):\n\
             // do not edit.\n\n{}",
            decls.join("\n")
        )
    }

    /// js/src/options.ts: the TypeScript declaration of what a generation takes, and the
    /// option names (which the package checks a caller's options against).
    #[cfg(not(target_arch = "wasm32"))]
    fn options_mirror() -> String {
        let serde_json::Value::Object(fields) = serde_json::to_value(GenerateOptions::default()).unwrap() else { unreachable!() };
        let names: Vec<String> = fields.keys().map(|k| format!("{k:?}")).collect();
        format!(
            "// Generated from crate/src/pipeline.rs (GenerateOptions, StrategyName) and crate/src/matrix.rs\n\
             // (Dtype) by the test `options_mirror_is_current` (`FREE_UPDATE_MIRRORS=1 cargo test --lib\n\
             // mirror` rewrites it): do not edit.\n\n{}\n{}\n{}\n/** The fields of `EngineOptions`. */\nexport const ENGINE_OPTIONS = [{}] as const;\n",
            decl::<StrategyName>(),
            decl::<crate::matrix::Dtype>(),
            decl::<GenerateOptions>(),
            names.join(", ")
        )
    }

    /// A committed mirror equals what the Rust types make (FREE_UPDATE_MIRRORS=1 rewrites it).
    #[cfg(not(target_arch = "wasm32"))]
    fn check_mirror(file: &str, want: String) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        if std::env::var_os("FREE_UPDATE_MIRRORS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(have == want, "{file} is not what the Rust types make; run FREE_UPDATE_MIRRORS=1 cargo test --lib mirror");
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn report_mirror_is_current() {
        check_mirror("js/src/report.ts", report_mirror());
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn options_mirror_is_current() {
        check_mirror("js/src/options.ts", options_mirror());
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn strategies_mirror_is_current() {
        check_mirror("js/src/strategies.ts", strategies_mirror());
    }

    #[test]
    fn every_strategy_has_one_row_and_the_options_follow_it() {
        use StrategyName::*;
        let all = [Full, Static, Calm, Free, FreeExact];
        for name in all {
            assert_eq!(STRATEGIES.iter().filter(|s| s.name == name).count(), 1, "{name:?}");
            assert_eq!(name.info().name, name);
            assert_eq!(name.as_str().parse::<StrategyName>().unwrap(), name);
        }
        let with = |strategy, threshold: Option<f64>, exit_layer: Option<usize>, budget: Option<f64>| GenerateOptions {
            strategy,
            threshold,
            exit_layer,
            max_disagreement: budget,
            ..GenerateOptions::default()
        };
        for info in &STRATEGIES {
            let n = info.name;
            assert_eq!(with(n, Some(0.5), None, None).check_applicable().is_ok(), info.threshold != ThresholdUse::None, "{n:?}");
            assert_eq!(with(n, None, Some(1), None).check_applicable().is_ok(), info.exits_early, "{n:?}");
            assert_eq!(
                with(n, None, None, Some(0.05)).check_applicable().is_ok(),
                info.threshold == ThresholdUse::FixedOrAdaptive,
                "{n:?}"
            );
            assert!(with(n, Some(0.5), None, Some(0.05)).check_applicable().is_err(), "{n:?}: a budget with a fixed threshold");
            assert!(with(n, None, None, None).check_applicable().is_ok());
        }
        let err = "fast".parse::<StrategyName>().unwrap_err().to_string();
        assert!(err.contains("use free, free-exact, full, static or calm"), "{err}");
    }
}
