//! A loaded model folder: the T5 model, its tokenizer and its early-exit settings, from the
//! bytes of its files (browser) or a directory (native), and text-in, text-out generation.

use candle_core::Device;

use crate::config::{FreeConfig, T5Config};
use crate::decode::{self, Generation};
use crate::error::{Error, ModelFile, Result};
use crate::model::T5Model;
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;

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
        Ok(Pipeline { model, tokenizer, free })
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

    /// Token ids of `text`, cut to the model's input limit (keeping the final `</s>`).
    /// Returns the ids and how many were dropped.
    pub fn encode_input(&self, text: &str) -> Result<(Vec<u32>, usize)> {
        if text.trim().is_empty() {
            return Err(Error::InvalidInput("the input text is empty; give some text to generate from".into()));
        }
        let mut ids = self.tokenizer.encode(text)?;
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

    /// Greedy generation with the full model.
    pub fn generate(&self, text: &str, max_new_tokens: usize) -> Result<TextGeneration> {
        let (ids, truncated_input_tokens) = self.encode_input(text)?;
        let generation = decode::greedy(&self.model, &ids, max_new_tokens)?;
        let text = self.tokenizer.decode(&generation.tokens)?;
        Ok(TextGeneration { text, generation, truncated_input_tokens })
    }
}
