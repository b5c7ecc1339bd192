//! The CPU backend: the candle model (`crate::model::T5Model`) behind the `Backend` seam. It
//! decides tokens as soon as it is asked, so nothing waits.

use std::ops::Range;

use candle_core::Tensor;

use super::{Backend, Decision};
use crate::confidence::{argmax, argmax_confidence};
use crate::config::{ConfidenceMeasure, T5Config};
use crate::error::{Error, Result};
use crate::model::{DecoderState, T5Model};

impl Backend for T5Model {
    type Rows = Tensor;
    type State = DecoderState;
    /// The CPU decides at once.
    type Readback = Vec<Decision>;

    fn config(&self) -> &T5Config {
        T5Model::config(self)
    }

    fn num_decoder_blocks(&self) -> usize {
        T5Model::num_decoder_blocks(self)
    }

    fn weight_bytes(&self) -> Option<usize> {
        Some(T5Model::weight_bytes(self))
    }

    fn start(&self, input_ids: &[u32]) -> Result<DecoderState> {
        Ok(self.start_decoder(self.encode(input_ids)?))
    }

    fn embed(&self, _: &mut DecoderState, id: u32) -> Result<Tensor> {
        T5Model::embed(self, &[id])
    }

    fn embed_decided(&self, state: &mut DecoderState, decided: &Vec<Decision>) -> Result<Tensor> {
        let &(id, _) = decided.last().ok_or_else(|| Error::Compute("no token was decided to embed".into()))?;
        Backend::embed(self, state, id)
    }

    fn decode_blocks(&self, state: &mut DecoderState, blocks: Range<usize>, rows: Tensor) -> Result<Tensor> {
        T5Model::decode_blocks(self, state, blocks, rows)
    }

    fn copy_state(&self, state: &mut DecoderState, blocks: Range<usize>, rows: &Tensor) -> Result<()> {
        T5Model::copy_state(self, state, blocks, rows)
    }

    fn join(&self, parts: &[&Tensor]) -> Result<Tensor> {
        Ok(Tensor::cat(parts, 0)?)
    }

    fn row_count(&self, rows: &Tensor) -> usize {
        rows.dims()[0]
    }

    fn decide_later(&self, _: &mut DecoderState, rows: &Tensor, measure: Option<ConfidenceMeasure>) -> Result<Vec<Decision>> {
        let logits: Vec<Vec<f32>> = self.logits(rows)?.to_vec2()?;
        Ok(logits
            .iter()
            .map(|row| match measure {
                Some(m) => {
                    let (token, conf) = argmax_confidence(row, m);
                    (token, Some(conf))
                }
                None => (argmax(row), None),
            })
            .collect())
    }

    async fn collect(&self, decided: Vec<Decision>) -> Result<Vec<Decision>> {
        Ok(decided)
    }

    fn waits_for_decisions(&self) -> bool {
        false
    }

    fn truncate(&self, state: &mut DecoderState, len: usize) -> Result<()> {
        state.truncate(len);
        Ok(())
    }
}
