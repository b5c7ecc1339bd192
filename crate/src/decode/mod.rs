//! Decoding strategies. For now the full model, greedy: the reference every early-exit
//! strategy is measured against.

use crate::error::Result;
use crate::model::T5Model;

/// What a generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Generated token ids, without the decoder start token and without the final EOS.
    pub tokens: Vec<u32>,
    /// True when the model emitted EOS; false when `max_new_tokens` ran out first.
    pub finished: bool,
}

/// Greedy decoding with all decoder blocks for every token.
pub fn greedy(model: &T5Model, input_ids: &[u32], max_new_tokens: usize) -> Result<Generation> {
    let cfg = model.config();
    let mut state = model.start_decoder(model.encode(input_ids)?);
    let blocks = 0..model.num_decoder_blocks();
    let mut last = cfg.decoder_start_token_id;
    let mut tokens = Vec::new();
    while tokens.len() < max_new_tokens {
        let h = model.decode_blocks(&mut state, blocks.clone(), model.embed(&[last])?)?;
        let next = model.logits(&h)?.argmax(1)?.to_vec1::<u32>()?[0];
        if cfg.is_eos(next) {
            return Ok(Generation { tokens, finished: true });
        }
        tokens.push(next);
        last = next;
    }
    Ok(Generation { tokens, finished: false })
}
