//! One generation, decided token by token: the shared loop of every strategy, so traces,
//! counters and stopping rules are the same for all of them. FREE's synchronized parallel
//! decoding and its exact (verify and roll back) mode are described in
//! docs/method.md#synchronized-parallel-decoding and docs/method.md#exact-mode.

use std::ops::Range;

use super::trace::{Counters, TokenTrace};
use super::{check_threshold, DecodeSettings, Strategy, Threshold};
use crate::backend::{block_on, Backend};
use crate::config::ConfidenceMeasure;
use crate::error::{Error, Result};
use crate::model::T5Model;

/// A token the shallow model emitted, waiting on the stack for the next deep pass.
struct Stacked<R> {
    /// h_S of its row.
    hidden: R,
    /// Its output index (= decoder position of the row that predicted it).
    index: usize,
    confidence: f64,
}

/// The current row at a synchronisation.
struct Current<R> {
    /// h_S of the row.
    hidden: R,
    /// The shallow model's token for it, which the deep model may confirm.
    shallow_token: u32,
    confidence: f64,
    /// The threshold its confidence did not pass.
    threshold: f64,
}

/// A step recorded before its input token was read back (see `Session::with_run_ahead`):
/// the first part of the strategy run at `position` on the token the device decided for the
/// row before it, which the CPU learns (`fed`) when that decision arrives.
struct Ahead<B: Backend> {
    position: usize,
    rows: B::Rows,
    readback: B::Readback,
    fed: Option<u32>,
}

pub struct Session<'m, 't, B: Backend = T5Model> {
    model: &'m B,
    strategy: Strategy,
    measure: ConfidenceMeasure,
    threshold: Threshold<'t>,
    max_new_tokens: usize,
    state: B::State,
    /// Emitted tokens (in exact mode, possibly not yet verified).
    out: Vec<u32>,
    /// out[i]'s entry in `trace`.
    out_trace: Vec<usize>,
    stack: Vec<Stacked<B::Rows>>,
    run_ahead: bool,
    ahead: Option<Ahead<B>>,
    trace: Vec<TokenTrace>,
    counters: Counters,
    finished: Option<bool>,
    /// The lowest trace entry added or modified during the current step.
    first_touched: usize,
}

impl<'m, 't, B: Backend> Session<'m, 't, B> {
    /// A generation from a started state (`Backend::start`, which runs the encoder), so
    /// callers can time the encoder and the decoder apart.
    pub fn new(
        model: &'m B,
        state: B::State,
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
            state,
            out: Vec::new(),
            out_trace: Vec::new(),
            stack: Vec::new(),
            run_ahead: model.waits_for_decisions(),
            ahead: None,
            trace: Vec::new(),
            counters: Counters::default(),
            finished: if max_new_tokens == 0 { Some(false) } else { None },
            first_touched: 0,
        })
    }

    /// Whether full, static and FREE record the next step before the current token is read
    /// back, on the token the device decided (the step is thrown away when the token turns
    /// out otherwise: a FREE deep pass disagreed, or the generation ended). None keeps the
    /// default: on where waiting for a decision idles the device (`Backend::
    /// waits_for_decisions`).
    pub fn with_run_ahead(mut self, on: Option<bool>) -> Self {
        self.run_ahead = on.unwrap_or(self.run_ahead);
        self
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

    pub fn decoder_state(&self) -> &B::State {
        &self.state
    }

    pub fn into_parts(self) -> (Vec<TokenTrace>, Counters) {
        (self.trace, self.counters)
    }

    /// Decides the next token (or, in exact mode, possibly corrects an earlier one).
    /// Returns the index in `trace()` from which entries are new or changed (a deep pass
    /// fills in what it thought of stacked tokens, and a rollback marks tokens dropped).
    pub async fn advance(&mut self) -> Result<usize> {
        self.first_touched = self.trace.len();
        if self.finished.is_some() {
            return Ok(self.first_touched);
        }
        let position = self.out.len();
        let blocks = self.model.num_decoder_blocks();
        // The blocks run before the first decision, and whether it needs a confidence.
        let (first, measure) = match self.strategy {
            Strategy::Calm { min_exit, threshold } => {
                let h = self.embed_next()?;
                self.calm_step(h, min_exit, threshold).await?;
                return self.end_step().await;
            }
            Strategy::Full => (blocks, None),
            Strategy::Static { exit } | Strategy::Free { exit, .. } => (exit, Some(self.measure)),
        };
        let (h, readback) = match self.take_ahead(position)? {
            Some(ahead) => (ahead.rows, ahead.readback),
            None => {
                let h = self.embed_next()?;
                self.first_part(h, first, measure)?
            }
        };
        if self.run_ahead && position + 1 < self.max_new_tokens {
            let next = self.model.embed_decided(&mut self.state, &readback)?;
            let (rows, next_readback) = self.first_part(next, first, measure)?;
            self.counters.ahead_steps += 1;
            self.ahead = Some(Ahead { position: position + 1, rows, readback: next_readback, fed: None });
        }
        let decisions = self.model.collect(readback).await?;
        let Some(&(token, conf)) = decisions.last() else {
            return Err(Error::Compute("the backend decided no token".into()));
        };
        if let Some(ahead) = self.ahead.as_mut().filter(|a| a.position == position + 1) {
            ahead.fed = Some(token);
        }
        match (self.strategy, conf) {
            (Strategy::Full, _) => self.emit(token, blocks, None, None, false),
            (Strategy::Static { exit }, Some(conf)) => self.emit(token, exit, Some(conf), None, false),
            (Strategy::Free { exit, exact }, Some(conf)) => self.free_step(h, exit, token, conf, exact).await?,
            _ => return Err(Error::Compute("the backend decided no confidence".into())),
        }
        self.end_step().await
    }

    /// The decoder input at the next position: the start token, then the last output.
    fn embed_next(&mut self) -> Result<B::Rows> {
        let input = match self.out.last() {
            None => self.model.config().decoder_start_token_id,
            Some(&t) => t,
        };
        self.model.embed(&mut self.state, input)
    }

    /// Runs `blocks` from the first over a new row and starts deciding its token.
    fn first_part(&mut self, h: B::Rows, blocks: usize, measure: Option<ConfidenceMeasure>) -> Result<(B::Rows, B::Readback)> {
        let h = self.run_blocks(0..blocks, h)?;
        self.counters.head_rows += self.model.row_count(&h);
        let readback = self.model.decide_later(&mut self.state, &h, measure)?;
        Ok((h, readback))
    }

    /// The step recorded ahead for `position`, if it was fed the token that was emitted
    /// before it; otherwise it is thrown away with what it appended to the caches.
    fn take_ahead(&mut self, position: usize) -> Result<Option<Ahead<B>>> {
        let Some(ahead) = self.ahead.take() else { return Ok(None) };
        if ahead.position == position && ahead.fed.is_some_and(|t| self.out.last() == Some(&t)) {
            return Ok(Some(ahead));
        }
        self.counters.ahead_discarded += 1;
        self.model.truncate(&mut self.state, position)?;
        Ok(None)
    }

    /// Checks for the end; a generation that ended forgets the step recorded ahead.
    async fn end_step(&mut self) -> Result<usize> {
        self.check_end().await?;
        if self.finished.is_some() && self.ahead.take().is_some() {
            self.counters.ahead_discarded += 1;
            self.model.truncate(&mut self.state, self.out.len())?;
        }
        Ok(self.first_touched)
    }

    /// `advance` where nothing waits on a browser's event loop (the CPU backend; the GPU
    /// backend natively).
    pub fn step(&mut self) -> Result<usize> {
        block_on(self.advance())?
    }

    /// Runs to the end.
    pub async fn run_async(&mut self) -> Result<()> {
        while self.finished.is_none() {
            self.advance().await?;
        }
        Ok(())
    }

    /// `run_async` where nothing waits on a browser's event loop.
    pub fn run(&mut self) -> Result<()> {
        block_on(self.run_async())?
    }

    fn run_blocks(&mut self, blocks: Range<usize>, h: B::Rows) -> Result<B::Rows> {
        self.counters.block_rows += blocks.len() * self.model.row_count(&h);
        self.model.decode_blocks(&mut self.state, blocks, h)
    }

    /// The argmax token of each row (through the LM head).
    async fn tokens_of(&mut self, h: &B::Rows) -> Result<Vec<u32>> {
        self.counters.head_rows += self.model.row_count(h);
        Ok(self.model.decide(&mut self.state, h, None).await?.into_iter().map(|(t, _)| t).collect())
    }

    /// The argmax token of a one-row `h` and its confidence.
    async fn confident(&mut self, h: &B::Rows) -> Result<(u32, f64)> {
        self.counters.head_rows += self.model.row_count(h);
        match self.model.decide(&mut self.state, h, Some(self.measure)).await?.first() {
            Some(&(token, Some(conf))) => Ok((token, conf)),
            _ => Err(Error::Compute("the backend decided no confident token".into())),
        }
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
            deep_text: None,
            rolled_back: false,
        });
        self.out.push(token);
    }

    /// Ends at EOS or the token limit. Exact mode first verifies what waits on the stack.
    async fn check_end(&mut self) -> Result<()> {
        let Some(&last) = self.out.last() else { return Ok(()) };
        let eos = self.model.config().is_eos(last);
        if !eos && self.out.len() < self.max_new_tokens {
            return Ok(());
        }
        if matches!(self.strategy, Strategy::Free { exact: true, .. }) && !self.stack.is_empty() && self.synchronize(None, true).await? {
            // Generation goes on from the corrected token, unless that ends it.
            return Box::pin(self.check_end()).await;
        }
        self.finished = Some(eos);
        Ok(())
    }

    async fn calm_step(&mut self, mut h: B::Rows, min_exit: usize, threshold: f64) -> Result<()> {
        let blocks = self.model.num_decoder_blocks();
        h = self.run_blocks(0..min_exit, h)?;
        for exit in min_exit..blocks {
            let (token, conf) = self.confident(&h).await?;
            if conf > threshold {
                self.model.copy_state(&mut self.state, exit..blocks, &h)?;
                self.emit(token, exit, Some(conf), Some(threshold), false);
                return Ok(());
            }
            h = self.run_blocks(exit..exit + 1, h)?;
        }
        let token = self.tokens_of(&h).await?[0];
        self.emit(token, blocks, None, Some(threshold), false);
        Ok(())
    }

    /// One FREE step, given the shallow exit's row, token and confidence: emit the shallow
    /// token, or synchronize.
    async fn free_step(&mut self, h: B::Rows, exit: usize, token: u32, conf: f64, exact: bool) -> Result<()> {
        let threshold = self.threshold.value();
        if conf > threshold {
            self.stack.push(Stacked { hidden: h, index: self.out.len(), confidence: conf });
            self.emit(token, exit, Some(conf), Some(threshold), true);
            return Ok(());
        }
        self.synchronize(Some(Current { hidden: h, shallow_token: token, confidence: conf, threshold }), exact).await?;
        Ok(())
    }

    /// The deep pass: blocks S..L over the stacked rows and, if given, the current row, in
    /// one multi-row pass at their true positions. Records what the deep model thinks of
    /// each stacked token (calibration data), emits the deep token for the current row,
    /// and in exact mode rolls back at the first stacked token the deep model disagrees
    /// with. Returns whether it corrected a token.
    async fn synchronize(&mut self, current: Option<Current<B::Rows>>, exact: bool) -> Result<bool> {
        let Strategy::Free { exit, .. } = self.strategy else {
            return Err(Error::Compute("synchronize outside FREE".into()));
        };
        let blocks = self.model.num_decoder_blocks();
        let mut rows: Vec<&B::Rows> = self.stack.iter().map(|p| &p.hidden).collect();
        if let Some(c) = &current {
            rows.push(&c.hidden);
        }
        let rows = self.model.join(&rows)?;
        let n = self.model.row_count(&rows);
        let deep_h = self.run_blocks(exit..blocks, rows)?;
        let deep = self.tokens_of(&deep_h).await?;
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
        if let Some(c) = current.as_ref().filter(|_| calibrate) {
            self.threshold.observe(c.confidence, c.shallow_token == deep[n - 1]);
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
        if let Some(c) = current {
            let token = deep[n - 1];
            self.emit(token, blocks, Some(c.confidence), Some(c.threshold), false);
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
        self.model.truncate(&mut self.state, index + 1)
    }
}
