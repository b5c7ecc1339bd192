//! A loaded model folder: the T5 model, its tokenizer and its early-exit settings, from the
//! bytes of its files (browser) or a directory (native), and text-in, text-out generation.

use std::collections::BTreeMap;

use candle_core::Device;
use serde::Deserialize;

use crate::config::{default_tasks, FreeConfig, T5Config};
use crate::decode::{self, DecodeSettings, Generation, Strategy, Threshold};
use crate::error::{Error, ModelFile, Result};
use crate::model::T5Model;
use crate::threshold::{AdaptiveThreshold, BmmSettings};
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;

/// The strategies by the names the CLI, the wasm API and the bench use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyName {
    Full,
    Static,
    Calm,
    Free,
    FreeExact,
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
}

impl std::str::FromStr for StrategyName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(s.into())).map_err(|_| Error::InvalidSetting {
            setting: "strategy",
            value: s.into(),
            reason: "use full, static, calm, free or free-exact".into(),
        })
    }
}

/// What to generate with; `Default` is FREE with the adaptive threshold.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateOptions {
    pub strategy: StrategyName,
    /// A fixed threshold for free, free-exact and calm. Without one, FREE uses the adaptive
    /// threshold and CALM free.json's threshold.
    pub threshold: Option<f64>,
    pub max_new_tokens: usize,
    /// Overrides free.json's shallow exit (S); required for early exits without free.json.
    pub exit_layer: Option<usize>,
    /// A task of free.json's `tasks` ("summarize", "translate"): its prefix goes before the
    /// text. Without one the text is used as given.
    pub task: Option<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { strategy: StrategyName::Free, threshold: None, max_new_tokens: 64, exit_layer: None, task: None }
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

pub struct Pipeline {
    pub model: T5Model,
    pub tokenizer: Tokenizer,
    pub free: Option<FreeConfig>,
    /// FREE's Beta-mixture threshold, learning across generations.
    pub adaptive: AdaptiveThreshold,
    /// Task name -> prefix (free.json's, or T5's own two).
    pub tasks: BTreeMap<String, String>,
}

/// The result of generating from text.
#[derive(Debug, Clone, PartialEq)]
pub struct TextGeneration {
    pub text: String,
    pub generation: Generation,
    /// Input tokens dropped because the input was longer than the model accepts.
    pub truncated_input_tokens: usize,
}

impl Pipeline {
    pub fn from_files(files: &ModelFiles<'_>) -> Result<Self> {
        let config = T5Config::from_json(files.config)?;
        let free = files.free.map(|b| FreeConfig::from_json(b, &config)).transpose()?;
        let tokenizer = Tokenizer::from_bytes(files.tokenizer)?;
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(Error::Malformed {
                file: ModelFile::Tokenizer,
                reason: format!(
                    "it has {} tokens but the model's vocabulary (config.json vocab_size) is {}; the tokenizer belongs to another model",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            });
        }
        let device = Device::Cpu;
        let weights = Weights::from_bytes(files.weights, &device)?;
        let model = T5Model::load(config, weights, &device)?;
        let adaptive = AdaptiveThreshold::new(match &free {
            Some(f) => BmmSettings {
                zeta: f.bmm.zeta,
                min_points: f.bmm.min_points,
                initial_threshold: f.threshold,
                ..BmmSettings::default()
            },
            None => BmmSettings::default(),
        });
        let tasks = free.as_ref().map_or_else(default_tasks, |f| f.tasks.clone());
        Ok(Pipeline { model, tokenizer, free, adaptive, tasks })
    }

    /// Loads `config.json`, `model.safetensors`, `tokenizer.json` and, if present,
    /// `free.json` from a folder.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: impl AsRef<std::path::Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let read = |file: ModelFile| {
            let path = dir.join(file.file_name());
            std::fs::read(&path).map_err(|source| Error::Io { file, path: path.display().to_string(), source })
        };
        let free_path = dir.join(ModelFile::FreeSettings.file_name());
        let free = if free_path.exists() { Some(read(ModelFile::FreeSettings)?) } else { None };
        let (config, weights, tokenizer) =
            (read(ModelFile::Config)?, read(ModelFile::Weights)?, read(ModelFile::Tokenizer)?);
        Self::from_files(&ModelFiles {
            config: &config,
            weights: &weights,
            tokenizer: &tokenizer,
            free: free.as_deref(),
        })
    }

    /// Token ids of `text` (after `task`'s prefix), cut to the model's input limit (keeping
    /// the final `</s>`). Returns the ids and how many were dropped.
    pub fn encode_input(&self, text: &str, task: Option<&str>) -> Result<(Vec<u32>, usize)> {
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
        let mut ids = self.tokenizer.encode(&format!("{prefix}{text}"))?;
        let limit = self.model.config().max_input_tokens;
        let dropped = ids.len().saturating_sub(limit);
        if dropped > 0 {
            let last = *ids.last().expect("ids longer than a positive limit");
            ids.truncate(limit);
            if self.model.config().is_eos(last) {
                *ids.last_mut().expect("limit is positive") = last;
            }
        }
        Ok((ids, dropped))
    }

    /// The decoder settings `options` ask for, and the fixed threshold if there is one
    /// (None: the adaptive estimator).
    pub fn settings(&self, options: &GenerateOptions) -> Result<(DecodeSettings, Option<f64>)> {
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
                threshold: options.threshold.unwrap_or(free.map_or(0.9, |f| f.threshold)),
            },
            StrategyName::Free => Strategy::Free { exit: exit()?, exact: false },
            StrategyName::FreeExact => Strategy::Free { exit: exit()?, exact: true },
        };
        let measure = free.map(|f| f.confidence).unwrap_or_default();
        let settings = DecodeSettings { strategy, measure, max_new_tokens: options.max_new_tokens };
        Ok((settings, options.threshold))
    }

    /// Generates from text; fills in each trace entry's token text.
    pub fn generate(&mut self, text: &str, options: &GenerateOptions) -> Result<TextGeneration> {
        let (ids, truncated_input_tokens) = self.encode_input(text, options.task.as_deref())?;
        let (settings, fixed) = self.settings(options)?;
        let threshold = match fixed {
            Some(t) => Threshold::Fixed(t),
            None => Threshold::Adaptive(&mut self.adaptive),
        };
        let mut generation = decode::generate(&self.model, &ids, settings, threshold)?;
        for entry in &mut generation.trace {
            entry.text = self.tokenizer.token_text(entry.token);
        }
        let text = self.tokenizer.decode(&generation.tokens)?;
        Ok(TextGeneration { text, generation, truncated_input_tokens })
    }
}
