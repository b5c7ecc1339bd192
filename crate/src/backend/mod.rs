//! The seam between the decoding loop and the hardware: what a strategy asks of a model
//! (run a range of decoder blocks over some rows, decide tokens from rows, roll caches
//! back), implemented by the CPU model (`crate::model::T5Model`, candle) and by the WebGPU
//! model (`gpu::GpuModel`). Only collecting decisions waits for the device, so only it is
//! async: in a browser a GPU readback completes from the event loop; everywhere else it is
//! ready at once.

#[cfg(feature = "gpu")]
pub mod gpu;

use std::future::Future;
use std::ops::Range;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use candle_core::Tensor;

use crate::config::{ConfidenceMeasure, T5Config};
use crate::decode::{argmax, argmax_confidence};
use crate::error::{Error, Result};
use crate::model::{DecoderState, T5Model};

/// A token decided from one row, with its confidence when a measure was asked for.
pub type Decision = (u32, Option<f64>);

#[allow(async_fn_in_trait)] // used through generics only, never as `dyn` or across threads
pub trait Backend {
    /// Hidden states of some consecutive decoder positions, on the device.
    type Rows;
    /// One generation's caches.
    type State;
    /// Decisions recorded on the device, on their way back (`decide_later`).
    type Pending;

    fn config(&self) -> &T5Config;
    fn num_decoder_blocks(&self) -> usize;
    /// Encodes the input and returns the state of a new generation.
    fn start(&self, input_ids: &[u32]) -> Result<Self::State>;
    /// The embedding of the decoder input `id` at the next position.
    fn embed(&self, state: &mut Self::State, id: u32) -> Result<Self::Rows>;
    /// The embedding at the next position of the token `pending`'s last row decided,
    /// which the device may know before the CPU does.
    fn embed_decided(&self, state: &mut Self::State, pending: &Self::Pending) -> Result<Self::Rows>;
    /// Runs `blocks` over `rows`, appending them to those blocks' caches.
    fn decode_blocks(&self, state: &mut Self::State, blocks: Range<usize>, rows: Self::Rows) -> Result<Self::Rows>;
    /// Fills the caches of `blocks`, which the rows skipped, from their exited state.
    fn copy_state(&self, state: &mut Self::State, blocks: Range<usize>, rows: &Self::Rows) -> Result<()>;
    /// Consecutive rows as one (the stacked tokens of a FREE deep pass).
    fn join(&self, parts: &[&Self::Rows]) -> Result<Self::Rows>;
    fn row_count(&self, rows: &Self::Rows) -> usize;
    /// Starts deciding the argmax of each row and, with a measure, its confidence, without
    /// waiting for the answer.
    fn decide_later(&self, state: &mut Self::State, rows: &Self::Rows, measure: Option<ConfidenceMeasure>) -> Result<Self::Pending>;
    /// The decisions of a `decide_later`.
    async fn collect(&self, pending: Self::Pending) -> Result<Vec<Decision>>;
    /// Whether waiting for a decision leaves the device idle, so that a step recorded
    /// ahead on the decided token (`embed_decided`; thrown away when the token turns out
    /// otherwise) costs less than the wait: on the GPU; not on the CPU, which decides at once.
    fn waits_for_decisions(&self) -> bool;
    /// Forgets every position from `len` on.
    fn truncate(&self, state: &mut Self::State, len: usize) -> Result<()>;

    /// The argmax of each row's logits and, with a measure, its confidence.
    async fn decide(&self, state: &mut Self::State, rows: &Self::Rows, measure: Option<ConfidenceMeasure>) -> Result<Vec<Decision>> {
        let pending = self.decide_later(state, rows, measure)?;
        self.collect(pending).await
    }
}

impl Backend for T5Model {
    type Rows = Tensor;
    type State = DecoderState;
    /// The CPU decides at once.
    type Pending = Vec<Decision>;

    fn config(&self) -> &T5Config {
        T5Model::config(self)
    }

    fn num_decoder_blocks(&self) -> usize {
        T5Model::num_decoder_blocks(self)
    }

    fn start(&self, input_ids: &[u32]) -> Result<DecoderState> {
        Ok(self.start_decoder(self.encode(input_ids)?))
    }

    fn embed(&self, _: &mut DecoderState, id: u32) -> Result<Tensor> {
        T5Model::embed(self, &[id])
    }

    fn embed_decided(&self, state: &mut DecoderState, pending: &Vec<Decision>) -> Result<Tensor> {
        let &(id, _) = pending.last().ok_or_else(|| Error::Compute("no token was decided to embed".into()))?;
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

    async fn collect(&self, pending: Vec<Decision>) -> Result<Vec<Decision>> {
        Ok(pending)
    }

    fn waits_for_decisions(&self) -> bool {
        false
    }

    fn truncate(&self, state: &mut DecoderState, len: usize) -> Result<()> {
        state.truncate(len);
        Ok(())
    }
}

/// Runs a future that needs no event loop (the CPU backend, or the GPU backend natively,
/// where readbacks block) to completion.
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(Error::InvalidInput(
            "this generation waits on the GPU through the browser's event loop; use the async API (generateStreaming)".into(),
        )),
    }
}
