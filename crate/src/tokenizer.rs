//! `tokenizer.json` through Hugging Face's `tokenizers` crate (pure-Rust regex backend, so
//! the same code runs in the browser). Inputs are encoded with the tokenizer's own
//! post-processor, which appends T5's `</s>`.

use crate::error::{Error, ModelFile, Result};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

/// tokenizers 0.23 trusts that every special token a `TemplateProcessing` template names is
/// in its `special_tokens` and panics while encoding when one is not (found by
/// fuzz/tokenizer), so that is checked here, in the post-processor and in any `Sequence`.
/// Whatever the `type` tags say: tokenizers also loads a processor whose tag is misspelt when
/// its shape fits (found by fuzz/tokenizer too), so every object with templates is checked.
fn check_templates(processor: &serde_json::Value) -> std::result::Result<(), String> {
    use serde_json::Value;
    for inner in processor.get("processors").and_then(Value::as_array).into_iter().flatten() {
        check_templates(inner)?;
    }
    let known = processor.get("special_tokens").and_then(Value::as_object);
    for template in ["single", "pair"] {
        for piece in processor.get(template).and_then(Value::as_array).into_iter().flatten() {
            let Some(id) = piece.pointer("/SpecialToken/id").and_then(Value::as_str) else { continue };
            if !known.is_some_and(|k| k.contains_key(id)) {
                return Err(format!(
                    "its post_processor's {template} template uses the special token {id:?}, which its special_tokens do not define"
                ));
            }
        }
    }
    Ok(())
}

impl Tokenizer {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let malformed = |e: serde_json::Error| Error::Malformed {
            file: ModelFile::Tokenizer,
            reason: format!("{e}; expected a Hugging Face tokenizers JSON file"),
        };
        // JSON syntax is checked first: tokenizers 0.23 panics, instead of returning an
        // error, on a syntax error inside the decoder section (found by fuzz/tokenizer).
        let json: serde_json::Value = serde_json::from_slice(bytes).map_err(malformed)?;
        if let Some(processor) = json.get("post_processor") {
            check_templates(processor).map_err(|reason| Error::Malformed { file: ModelFile::Tokenizer, reason })?;
        }
        let inner = serde_json::from_value(json).map_err(malformed)?;
        Ok(Tokenizer { inner })
    }

    /// Token ids of `text`, with the special tokens the tokenizer adds (T5: a final `</s>`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::InvalidInput(format!("the tokenizer could not encode the text: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::InvalidInput(format!("the tokenizer could not decode ids {ids:?}: {e}")))
    }

    /// The text of one token as it appears in running text (for per-token traces): the
    /// SentencePiece word marker becomes a space.
    pub fn token_text(&self, id: u32) -> String {
        self.inner.id_to_token(id).unwrap_or_default().replace('\u{2581}', " ")
    }

    /// One past the largest id the tokenizer can produce, special tokens included: its
    /// vocabulary's size, counting the gaps a vocabulary with explicit ids (BPE, WordLevel)
    /// may have.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab(true).into_values().max().map_or(0, |id| id as usize + 1)
    }
}
