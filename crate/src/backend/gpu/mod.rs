//! The WebGPU backend (wgpu): natively on Vulkan (lavapipe without a GPU) and in browsers.
//! `context` owns the device and launches kernels; `model` is T5 written with them.

mod context;
mod model;
mod params;

pub use context::{live_devices, DeviceHandle, Format, Gpu, GpuCounts};
pub use model::{GpuModel, GpuRows, GpuState, Top2Readback, Top2};

use std::ops::Range;

use super::{Backend, Decision};
use crate::config::{ConfidenceMeasure, T5Config};
use crate::error::{Error, Result};

impl Backend for GpuModel {
    type Rows = GpuRows;
    type State = GpuState;
    /// The top-2 rows' readback, and the measure to apply to them.
    type Readback = (Top2Readback, Option<ConfidenceMeasure>);

    fn config(&self) -> &T5Config {
        GpuModel::config(self)
    }

    fn num_decoder_blocks(&self) -> usize {
        GpuModel::num_decoder_blocks(self)
    }

    fn weight_bytes(&self) -> Option<usize> {
        usize::try_from(GpuModel::weight_bytes(self)).ok()
    }

    fn start(&self, input_ids: &[u32]) -> Result<GpuState> {
        GpuModel::start(self, input_ids)
    }

    fn embed(&self, state: &mut GpuState, id: u32) -> Result<GpuRows> {
        GpuModel::embed(self, state, id)
    }

    fn embed_decided(&self, state: &mut GpuState, (readback, _): &Self::Readback) -> Result<GpuRows> {
        GpuModel::embed_decided(self, state, readback)
    }

    fn decode_blocks(&self, state: &mut GpuState, blocks: Range<usize>, rows: GpuRows) -> Result<GpuRows> {
        GpuModel::decode_blocks(self, state, blocks, rows)
    }

    fn copy_state(&self, state: &mut GpuState, blocks: Range<usize>, rows: &GpuRows) -> Result<()> {
        GpuModel::copy_state(self, state, blocks, *rows)
    }

    fn join(&self, parts: &[&GpuRows]) -> Result<GpuRows> {
        let first = parts.first().ok_or_else(|| Error::Compute("joining no rows".into()))?;
        let mut joined = **first;
        for p in &parts[1..] {
            if p.start != joined.start + joined.count {
                return Err(Error::Compute(format!("rows at {} do not follow rows ending at {}", p.start, joined.start + joined.count)));
            }
            joined.count += p.count;
        }
        Ok(joined)
    }

    fn row_count(&self, rows: &GpuRows) -> usize {
        rows.count
    }

    fn decide_later(&self, state: &mut GpuState, rows: &GpuRows, measure: Option<ConfidenceMeasure>) -> Result<Self::Readback> {
        Ok((self.top2_later(state, *rows), measure))
    }

    async fn collect(&self, (readback, measure): Self::Readback) -> Result<Vec<Decision>> {
        let rows = GpuModel::collect(self, readback).await?;
        Ok(rows.iter().map(|r| (r.token, measure.map(|m| r.confidence(m)))).collect())
    }

    fn waits_for_decisions(&self) -> bool {
        true
    }

    fn truncate(&self, state: &mut GpuState, len: usize) -> Result<()> {
        GpuModel::truncate(self, state, len);
        Ok(())
    }
}
