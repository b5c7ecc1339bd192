//! The seam between the decoding loop and the hardware: what a strategy asks of a model
//! (run a range of decoder blocks over some rows, decide tokens from rows, roll caches
//! back), implemented by the CPU model (`cpu`: `crate::model::T5Model`, candle) and by the
//! WebGPU model (`gpu::GpuModel`). Only collecting decisions waits for the device, so only it is
//! async: in a browser a GPU readback completes from the event loop; everywhere else it is
//! ready at once.

mod cpu;
#[cfg(feature = "gpu")]
pub mod gpu;

use std::future::Future;
use std::ops::Range;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::config::{ConfidenceMeasure, T5Config};
use crate::error::{Error, Result};

/// A token decided from one row, with its confidence when a measure was asked for.
pub type Decision = (u32, Option<f64>);

#[allow(async_fn_in_trait)] // used through generics only, never as `dyn` or across threads
pub trait Backend {
    /// Hidden states of some consecutive decoder positions, on the device.
    type Rows;
    /// One generation's caches.
    type State;
    /// Decisions recorded on the device, on their way back (`decide_later`).
    type Readback;

    fn config(&self) -> &T5Config;
    fn num_decoder_blocks(&self) -> usize;
    /// Encodes the input and returns the state of a new generation.
    fn start(&self, input_ids: &[u32]) -> Result<Self::State>;
    /// The embedding of the decoder input `id` at the next position.
    fn embed(&self, state: &mut Self::State, id: u32) -> Result<Self::Rows>;
    /// The embedding at the next position of the token `readback`'s last row decided,
    /// which the device may know before the CPU does.
    fn embed_decided(&self, state: &mut Self::State, readback: &Self::Readback) -> Result<Self::Rows>;
    /// Runs `blocks` over `rows`, appending them to those blocks' caches.
    fn decode_blocks(&self, state: &mut Self::State, blocks: Range<usize>, rows: Self::Rows) -> Result<Self::Rows>;
    /// Fills the caches of `blocks`, which the rows skipped, from their exited state.
    fn copy_state(&self, state: &mut Self::State, blocks: Range<usize>, rows: &Self::Rows) -> Result<()>;
    /// Consecutive rows as one (the stacked tokens of a FREE deep pass).
    fn join(&self, parts: &[&Self::Rows]) -> Result<Self::Rows>;
    fn row_count(&self, rows: &Self::Rows) -> usize;
    /// Starts deciding the argmax of each row and, with a measure, its confidence, without
    /// waiting for the answer.
    fn decide_later(&self, state: &mut Self::State, rows: &Self::Rows, measure: Option<ConfidenceMeasure>) -> Result<Self::Readback>;
    /// The decisions of a `decide_later`.
    async fn collect(&self, readback: Self::Readback) -> Result<Vec<Decision>>;
    /// Whether waiting for a decision leaves the device idle, so that a step recorded
    /// ahead on the decided token (`embed_decided`; thrown away when the token turns out
    /// otherwise) costs less than the wait: on the GPU; not on the CPU, which decides at once.
    fn waits_for_decisions(&self) -> bool;
    /// Bytes the weights take on the device (None where they do not fit a usize).
    fn weight_bytes(&self) -> Option<usize>;
    /// Forgets every position from `len` on.
    fn truncate(&self, state: &mut Self::State, len: usize) -> Result<()>;

    /// The argmax of each row's logits and, with a measure, its confidence.
    async fn decide(&self, state: &mut Self::State, rows: &Self::Rows, measure: Option<ConfidenceMeasure>) -> Result<Vec<Decision>> {
        let readback = self.decide_later(state, rows, measure)?;
        self.collect(readback).await
    }
}

/// Runs a future that needs no event loop (the CPU backend, or the GPU backend natively,
/// where readbacks block) to completion.
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(Error::InvalidInput(
            "this generation waits on the GPU through the browser's event loop, so it cannot run to the end in one call; advance it asynchronously".into(),
        )),
    }
}
