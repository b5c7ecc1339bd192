//! The library's one error type. Every message names what was wrong and, where there is
//! one, what to do about it; the wasm shell turns these into `JsError`s unchanged.

use std::fmt;

/// Which of a model folder's files an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFile {
    Config,
    Weights,
    Tokenizer,
    FreeSettings,
}

impl ModelFile {
    pub fn file_name(self) -> &'static str {
        match self {
            ModelFile::Config => "config.json",
            ModelFile::Weights => "model.safetensors",
            ModelFile::Tokenizer => "tokenizer.json",
            ModelFile::FreeSettings => "free.json",
        }
    }
}

impl fmt::Display for ModelFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read at all (missing, permissions).
    #[error("cannot read {file} at {path}: {source}; check that the model folder holds config.json, model.safetensors and tokenizer.json")]
    Io {
        file: ModelFile,
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A file was read but its contents are not what the format requires.
    #[error("{file} is malformed: {reason}")]
    Malformed { file: ModelFile, reason: String },

    /// A tensor the configuration requires is not in the weights.
    #[error("model.safetensors has no tensor `{name}` (config.json asks for it); the weights and config.json are from different models, or the checkpoint is not a T5ForConditionalGeneration")]
    MissingTensor { name: String },

    /// A tensor has a different shape than config.json implies.
    #[error("tensor `{name}` in model.safetensors has shape {found:?} but config.json implies {expected:?}; the weights and config.json are from different models")]
    TensorShape { name: String, expected: Vec<usize>, found: Vec<usize> },

    /// A tensor is stored in a dtype the engine does not read.
    #[error("tensor `{name}` in model.safetensors is {dtype}; only f32, f16 and bf16 weights are supported (and I8 weight matrices with their scales, docs/usage.md#8-bit-checkpoints): convert the checkpoint (e.g. `model.half().save_pretrained(...)`)")]
    UnsupportedDtype { name: String, dtype: String },

    /// An 8-bit weight matrix or its scales break the layout of docs/usage.md#8-bit-checkpoints.
    #[error("tensor `{name}` in model.safetensors is not a valid 8-bit weight: {reason}; export the checkpoint again (`python -m free_train.export ... --dtype q8`, docs/usage.md#8-bit-checkpoints)")]
    Q8Tensor { name: String, reason: String },

    /// The weights hold tensors the configuration does not account for.
    #[error("model.safetensors has tensors config.json does not account for (e.g. `{example}`, {count} in all); the weights and config.json are from different models")]
    UnexpectedTensors { example: String, count: usize },

    /// A setting is out of its valid range.
    #[error("invalid setting {setting} = {value}: {reason}")]
    InvalidSetting { setting: &'static str, value: String, reason: String },

    /// A generation request that cannot be served as given.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The WebGPU backend is unavailable or failed (no adapter, a validation or memory
    /// error, a model too large for the adapter's limits).
    #[error("WebGPU: {0}")]
    Gpu(String),

    /// The WebGPU device went away (a driver reset, the GPU removed, `Gpu::destroy`), and
    /// the model's buffers with it: the model must be loaded again.
    #[error("WebGPU: the GPU device was lost ({0}); load the model again, or use the CPU backend (device \"cpu\")")]
    DeviceLost(String),

    /// A tensor operation failed inside the compute backend: a bug, not a user error.
    #[error("internal compute error (please report): {0}")]
    Compute(String),
}

/// Declares `Error::KINDS` and `Error::kind` from one list of the variants: `kind`'s match
/// is exhaustive, so a new variant must join the list, and docs/errors.md is checked
/// against the list (a test below), so the errors table cannot drift from the enum.
macro_rules! kinds {
    ($($variant:ident),* $(,)?) => {
        impl Error {
            /// Every variant's name, in declaration order: the rows of docs/errors.md.
            pub const KINDS: &'static [&'static str] = &[$(stringify!($variant)),*];

            /// The variant's name (e.g. "TensorShape"), for callers that tell errors apart.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Error::$variant { .. } => stringify!($variant),)*
                }
            }
        }
    };
}

kinds!(Io, Malformed, MissingTensor, TensorShape, UnsupportedDtype, Q8Tensor, UnexpectedTensors, InvalidSetting, InvalidInput, Gpu, DeviceLost, Compute);

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Compute(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;
    use super::Error;

    /// The library table of docs/errors.md: its rows' first cells, `` `Kind` ``.
    fn documented_kinds() -> Vec<String> {
        let doc = include_str!("../../docs/errors.md");
        let table = doc.split("## Library errors").nth(1).expect("docs/errors.md has a \"## Library errors\" section");
        let table = table.split("\n## ").next().unwrap_or(table);
        table
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`').map(|(kind, _)| kind.to_string()))
            .collect()
    }

    #[test]
    fn the_errors_table_has_one_row_per_kind_in_order() {
        assert_eq!(documented_kinds(), Error::KINDS, "docs/errors.md's library table must list Error's variants, in order");
    }

    #[test]
    fn kind_names_the_variant() {
        let e = Error::TensorShape { name: "shared.weight".into(), expected: vec![4, 2], found: vec![2, 4] };
        assert_eq!(e.kind(), "TensorShape");
        assert_eq!(Error::DeviceLost("gone".into()).kind(), "DeviceLost");
        assert_eq!(Error::InvalidInput("x".into()).kind(), "InvalidInput");
    }
}
