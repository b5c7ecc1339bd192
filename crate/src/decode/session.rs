//! One generation, decided token by token: the shared loop of every strategy, so traces,
//! counters and stopping rules are the same for all of them. FREE's synchronized parallel
//! decoding and its exact (verify and roll back) mode follow FREE-SPEC §4.

use candle_core::Tensor;

use super::confidence::{argmax, argmax_confidence};
use super::trace::{Counters, TokenTrace};
use super::{check_threshold, DecodeSettings, Strategy, Threshold};
use crate::config::ConfidenceMeasure;
use crate::error::{Error, Result};
use crate::model::{DecoderState, T5Model};

/// A token the shallow model emitted, waiting for the next deep pass.
struct Pending {
    /// h_S of its row, (1, d_model).
    hidden: Tensor,
    /// Its output index (= decoder position of the row that predicted it).
    index: usize,
    confidence: f64,
}

pub struct Session<'m, 't> {
    model: &'m T5Model,
    strategy: Strategy,
    measure: ConfidenceMeasure,
    threshold: Threshold<'t>,
    max_new_tokens: usize,
    state: DecoderState,
    /// Emitted tokens (in exact mode, possibly not yet verified).
    out: Vec<u32>,
    /// out[i]'s entry in `trace`.
    out_trace: Vec<usize>,
    stack: Vec<Pending>,
    trace: Vec<TokenTrace>,
    counters: Counters,
    finished: Option<bool>,
    /// The lowest trace entry added or modified during the current step.
    first_touched: usize,
}

impl<'m, 't> Session<'m, 't> {
    /// A generation from the encoder's output (`T5Model::encode`), so callers can time
    /// the encoder and the decoder apart.
    pub fn new(
        model: &'m T5Model,
        encoder_output: Tensor,
        settings: DecodeSettings,
        mut threshold: Threshold<'t>,
    ) -> Result<Self> {
        let DecodeSettings { strategy, measure, max_new_tokens } = settings;
        strategy.validate(model.num_decoder_blocks())?;
        // A bound, so a mistyped limit cannot keep a page busy for hours.
        let limit = model.config().max_input_tokens;
        if max_new_tokens > limit {
            return Err(Error::InvalidSetting {
                setting: "max_new_tokens",
                value: max_new_tokens.to_string(),
                reason: format!("this model generates at most {limit} tokens (n_positions in its config.json); ask for fewer"),
            });
        }
        match &mut threshold {
            Threshold::Fixed(t) => check_threshold(*t)?,
            Threshold::Adaptive(est) => est.start_sequence(),
        }
        Ok(Session {
            model,
            strategy,
            measure,
            threshold,
            max_new_tokens,
            state: model.start_decoder(encoder_output),
            out: Vec::new(),
            out_trace: Vec::new(),
            stack: Vec::new(),
            trace: Vec::new(),
            counters: Counters::default(),
            finished: if max_new_tokens == 0 { Some(false) } else { None },
            first_touched: 0,
        })
    }

    /// None while generating; then whether the model ended with EOS.
    pub fn finished(&self) -> Option<bool> {
        self.finished
    }

    /// The accepted output so far, without EOS.
    pub fn tokens(&self) -> &[u32] {
        let eos = self.finished == Some(true);
        &self.out[..self.out.len() - eos as usize]
    }

    pub fn trace(&self) -> &[TokenTrace] {
        &self.trace
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn decoder_state(&self) -> &DecoderState {
        &self.state
    }

    pub fn into_parts(self) -> (Vec<TokenTrace>, Counters) {
        (self.trace, self.counters)
    }

    /// Decides the next token (or, in exact mode, possibly corrects an earlier one).
    /// Returns the index in `trace()` from which entries are new or changed (a deep pass
    /// fills in what it thought of stacked tokens, and a rollback marks tokens dropped).
    pub fn step(&mut self) -> Result<usize> {
        self.first_touched = self.trace.len();
        if self.finished.is_some() {
            return Ok(self.first_touched);
        }
        let position = self.out.len();
        let input = match position {
            0 => self.model.config().decoder_start_token_id,
            p => self.out[p - 1],
        };
        let h = self.model.embed(&[input])?;
        let blocks = self.model.num_decoder_blocks();
        match self.strategy {
            Strategy::Full => {
                let h = self.run_blocks(0..blocks, h)?;
                let token = argmax(&self.head(&h)?[0]);
                self.emit(token, blocks, None, None, false);
            }
            Strategy::Static { exit } => {
                let h = self.run_blocks(0..exit, h)?;
                let (token, conf) = argmax_confidence(&self.head(&h)?[0], self.measure);
                self.emit(token, exit, Some(conf), None, false);
            }
            Strategy::Calm { min_exit, threshold } => self.calm_step(h, min_exit, threshold)?,
            Strategy::Free { exit, exact } => self.free_step(h, exit, exact)?,
        }
        self.check_end()?;
        Ok(self.first_touched)
    }

    /// Runs to the end.
    pub fn run(&mut self) -> Result<()> {
        while self.finished.is_none() {
            self.step()?;
        }
        Ok(())
    }

    fn run_blocks(&mut self, blocks: std::ops::Range<usize>, h: Tensor) -> Result<Tensor> {
        self.counters.block_rows += blocks.len() * h.dim(0)?;
        self.model.decode_blocks(&mut self.state, blocks, h)
    }

    /// Logits rows of hidden states `h`.
    fn head(&mut self, h: &Tensor) -> Result<Vec<Vec<f32>>> {
        self.counters.head_rows += h.dim(0)?;
        Ok(self.model.logits(h)?.to_vec2()?)
    }

    fn emit(&mut self, token: u32, exit: usize, confidence: Option<f64>, threshold: Option<f64>, stacked: bool) {
        self.out_trace.push(self.trace.len());
        self.trace.push(TokenTrace {
            index: self.out.len(),
            token,
            text: String::new(),
            exit,
            confidence,
            threshold,
            stacked,
            sync: None,
            deep_token: None,
            rolled_back: false,
        });
        self.out.push(token);
    }

    /// Ends at EOS or the token limit. Exact mode first verifies what waits on the stack.
    fn check_end(&mut self) -> Result<()> {
        let Some(&last) = self.out.last() else { return Ok(()) };
        let eos = self.model.config().is_eos(last);
        if !eos && self.out.len() < self.max_new_tokens {
            return Ok(());
        }
        if matches!(self.strategy, Strategy::Free { exact: true, .. }) && !self.stack.is_empty() && self.synchronize(None, true)? {
            // Generation goes on from the corrected token, unless that ends it.
            return self.check_end();
        }
        self.finished = Some(eos);
        Ok(())
    }

    fn calm_step(&mut self, mut h: Tensor, min_exit: usize, threshold: f64) -> Result<()> {
        let blocks = self.model.num_decoder_blocks();
        h = self.run_blocks(0..min_exit, h)?;
        for exit in min_exit..blocks {
            let (token, conf) = argmax_confidence(&self.head(&h)?[0], self.measure);
            if conf > threshold {
                self.model.copy_state(&mut self.state, exit..blocks, &h)?;
                self.emit(token, exit, Some(conf), Some(threshold), false);
                return Ok(());
            }
            h = self.run_blocks(exit..exit + 1, h)?;
        }
        let token = argmax(&self.head(&h)?[0]);
        self.emit(token, blocks, None, Some(threshold), false);
        Ok(())
    }

    /// One FREE step: emit the shallow token, or synchronize.
    fn free_step(&mut self, h: Tensor, exit: usize, exact: bool) -> Result<()> {
        let h = self.run_blocks(0..exit, h)?;
        let (token, conf) = argmax_confidence(&self.head(&h)?[0], self.measure);
        let threshold = self.threshold.value();
        if conf > threshold {
            self.stack.push(Pending { hidden: h, index: self.out.len(), confidence: conf });
            self.emit(token, exit, Some(conf), Some(threshold), true);
            return Ok(());
        }
        self.synchronize(Some((h, token, conf, threshold)), exact)?;
        Ok(())
    }

    /// The deep pass: blocks S..L over the stacked rows and, if given, the current row, in
    /// one multi-row pass at their true positions. Records what the deep model thinks of
    /// each stacked token (calibration data), emits the deep token for the current row,
    /// and in exact mode rolls back at the first stacked token the deep model disagrees
    /// with. Returns whether it corrected a token.
    fn synchronize(&mut self, current: Option<(Tensor, u32, f64, f64)>, exact: bool) -> Result<bool> {
        let Strategy::Free { exit, .. } = self.strategy else {
            return Err(Error::Compute("synchronize outside FREE".into()));
        };
        let blocks = self.model.num_decoder_blocks();
        let mut rows: Vec<&Tensor> = self.stack.iter().map(|p| &p.hidden).collect();
        if let Some((h, ..)) = &current {
            rows.push(h);
        }
        let rows = Tensor::cat(&rows, 0)?;
        let n = rows.dim(0)?;
        let deep_h = self.run_blocks(exit..blocks, rows)?;
        let deep: Vec<u32> = self.head(&deep_h)?.iter().map(|r| argmax(r)).collect();
        let sync = self.counters.deep_passes.len();
        self.counters.deep_passes.push(n);

        let stack = std::mem::take(&mut self.stack);
        let calibrate = !stack.is_empty() || self.threshold.learns_without_stack();
        let mut wrong = None;
        if let Some(first) = stack.first() {
            self.first_touched = self.first_touched.min(self.out_trace[first.index]);
        }
        for (p, &d) in stack.iter().zip(&deep) {
            let entry = &mut self.trace[self.out_trace[p.index]];
            entry.sync = Some(sync);
            entry.deep_token = Some(d);
            let agrees = entry.token == d;
            self.threshold.observe(p.confidence, agrees);
            if !agrees && wrong.is_none() {
                wrong = Some((p.index, d));
            }
        }
        if let Some((_, shallow_token, conf, _)) = &current {
            if calibrate {
                self.threshold.observe(*conf, *shallow_token == deep[n - 1]);
            }
        }
        self.threshold.after_sync();

        if exact {
            if let Some((index, token)) = wrong {
                self.roll_back(index)?;
                self.emit(token, blocks, None, None, false);
                let entry = self.trace.last_mut().expect("just emitted");
                entry.sync = Some(sync);
                entry.deep_token = Some(token);
                return Ok(true);
            }
        }
        if let Some((_, _, conf, threshold)) = current {
            let token = deep[n - 1];
            self.emit(token, blocks, Some(conf), Some(threshold), false);
            let entry = self.trace.last_mut().expect("just emitted");
            entry.sync = Some(sync);
            entry.deep_token = Some(token);
        }
        Ok(false)
    }

    /// Exact mode: forget output `index` and everything after it, in the output and in
    /// every block's cache (the row at position `index` itself stays: its input was right).
    fn roll_back(&mut self, index: usize) -> Result<()> {
        self.counters.rollbacks += 1;
        self.first_touched = self.first_touched.min(self.out_trace[index]);
        for &t in &self.out_trace[index..] {
            self.trace[t].rolled_back = true;
        }
        self.out.truncate(index);
        self.out_trace.truncate(index);
        self.state.truncate(index + 1)
    }
}
