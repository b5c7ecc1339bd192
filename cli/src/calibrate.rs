//! `free calibrate`: the adaptive threshold's starting data, gathered on a validation split
//! and shipped in free.json's `calibration`, so that a fresh page's first generation exits
//! at a fitted threshold instead of waiting at free.json's initial one until each class
//! has `bmm.min_points` points.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use free_wasm::backend::Backend;
use free_wasm::config::{Calibration, CalibrationSource, FreeConfig, T5Config};
use free_wasm::error::ModelFile;
use free_wasm::threshold::{AdaptiveThreshold, BmmSettings, ClassMoments, Fit};
use free_wasm::{GenerateOptions, Pipeline, StrategyName};
use sha2::{Digest, Sha256};

use crate::bench::{self, Example};
use crate::output::Output;

/// What to calibrate on.
pub struct Request {
    pub model_dir: PathBuf,
    pub data: PathBuf,
    /// Inputs per task, the first ones in the file.
    pub limit: usize,
    pub max_new_tokens: usize,
}

/// A calibration, the fit it gives, and how it was gathered.
pub struct Calibrated {
    pub calibration: Calibration,
    pub fit: Fit,
    /// free.json's threshold, which the run started from.
    pub initial_threshold: f64,
    pub seconds: f64,
}

/// Decodes the inputs and fits what the estimator saw.
///
/// Which threshold decides the points matters: a high one checks few stacked rows per deep
/// pass, a low one many. The points are gathered as a fresh page gathers them, so that the
/// calibration is the data the online estimator would have had: FREE (the default strategy)
/// with the adaptive threshold, starting from free.json's initial threshold, refitting
/// between inputs, over the inputs in the file's order (both tasks, as they come) — also how
/// the reference implementation collects its data, while adapting. A fixed threshold would
/// fix one mix of stacked rows that no page sees; the exact mode would, after each rollback,
/// decode a different continuation than the free strategy that pages use by default.
/// The shipped calibration is left out (the run starts empty), so a rerun gives the same
/// result, and so is free.json's window (every point is kept; a window then applies online).
pub fn run<B: Backend>(pipeline: &mut Pipeline<B>, request: &Request, progress: bool) -> Result<Calibrated, String> {
    let err = |e: free_wasm::Error| e.to_string();
    if pipeline.free_config().is_none() {
        return Err(format!("{} has no free.json: the calibration is kept in it, and FREE needs its shallow_exit_layer; add one first", request.model_dir.display()));
    }
    let examples = bench::read_examples(&request.data, None, request.limit)?;
    let settings = pipeline.adaptive().settings().clone();
    *pipeline.adaptive_mut() = AdaptiveThreshold::new(BmmSettings { calibration: None, window: None, ..settings.clone() });
    let started = Instant::now();
    let mut cut = 0;
    for (i, ex) in examples.iter().enumerate() {
        let options = GenerateOptions { strategy: StrategyName::Free, max_new_tokens: request.max_new_tokens, task: Some(ex.task.clone()), ..GenerateOptions::default() };
        cut += pipeline.generate(&ex.source, &options).map_err(err)?.input_cut.is_cut() as usize;
        if progress {
            eprint!("\rcalibrate: {}/{} inputs, threshold {:.3}", i + 1, examples.len(), pipeline.adaptive().threshold());
        }
    }
    if progress {
        eprintln!();
    }
    if cut > 0 {
        crate::warn_cut(pipeline, &format!("{cut} of {} inputs were", examples.len()));
    }
    let seconds = started.elapsed().as_secs_f64();
    let moments = pipeline.adaptive().moments();
    // The estimator as the engine will start it from this calibration (the window back).
    let start = AdaptiveThreshold::new(BmmSettings { calibration: Some(moments), ..settings });
    let Some(fit) = start.state().fit else {
        return Err(no_fit(&moments, start.settings().min_points));
    };
    let source = CalibrationSource {
        // A record for people: a path that is not UTF-8 is kept with replacement characters.
        data: request.data.to_string_lossy().into_owned(),
        data_sha256: sha256_of(&request.data)?,
        inputs_per_task: inputs_per_task(&examples),
        strategy: "free-adaptive".into(),
        max_new_tokens: request.max_new_tokens,
        weights_sha256: sha256_of(&request.model_dir.join(ModelFile::Weights.file_name()))?,
    };
    let calibration = Calibration {
        consistent: moments.consistent.into(),
        inconsistent: moments.inconsistent.into(),
        threshold: start.threshold(),
        source,
    };
    Ok(Calibrated { calibration, fit, initial_threshold: start.settings().initial_threshold, seconds })
}

fn no_fit(moments: &ClassMoments, min_points: usize) -> String {
    format!(
        "the points gathered give no fit: {} consistent and {} inconsistent (bmm.min_points: {min_points} each, and each class needs confidences that vary); decode more inputs (--limit) or longer outputs (--max-new-tokens)",
        moments.consistent.points, moments.inconsistent.points
    )
}

fn inputs_per_task(examples: &[Example]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for ex in examples {
        *counts.entry(ex.task.clone()).or_default() += 1;
    }
    counts
}

fn sha256_of(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

/// The per-class statistics, their Beta fits and the threshold, as a table.
pub fn summary(c: &Calibrated) -> String {
    let source = &c.calibration.source;
    let tasks: Vec<String> = source.inputs_per_task.iter().map(|(t, n)| format!("{t} {n}")).collect();
    let mut s = format!(
        "calibrated on {} ({}), {} from threshold {}, at most {} new tokens, in {:.1} s\n",
        source.data,
        tasks.join(", "),
        source.strategy,
        c.initial_threshold,
        source.max_new_tokens,
        c.seconds
    );
    s.push_str(&format!("{:<13} {:>8} {:>10} {:>10}   {}\n", "class", "points", "mean", "variance", "Beta fit"));
    for (name, class, beta) in [("consistent", c.calibration.consistent, c.fit.consistent), ("inconsistent", c.calibration.inconsistent, c.fit.inconsistent)] {
        s.push_str(&format!(
            "{name:<13} {:>8} {:>10.4} {:>10.4}   Beta({:.3}, {:.3})\n",
            class.points, class.mean, class.variance, beta.alpha, beta.beta
        ));
    }
    s.push_str(&format!("threshold {:.3} (the first a fresh page uses, under free.json's bmm settings)", c.calibration.threshold));
    s
}

/// Puts `calibration` into the model folder's free.json (`free_json`), keeping its other
/// settings. The result is checked the way the engine loads it before the file is replaced.
/// Keys come out in serde_json's order (sorted), so a rerun on the same model and data
/// rewrites the same bytes.
pub fn write(free_json: &Output, calibration: &Calibration, t5: &T5Config) -> Result<(), String> {
    let path = free_json.path();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut settings: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let entry = serde_json::to_value(calibration).map_err(|e| e.to_string())?;
    settings
        .as_object_mut()
        .ok_or_else(|| format!("{} is not a JSON object", path.display()))?
        .insert("calibration".into(), entry);
    let out = serde_json::to_string_pretty(&settings).map_err(|e| e.to_string())? + "\n";
    FreeConfig::from_json(out.as_bytes(), t5).map_err(|e| e.to_string())?;
    free_json.write(out.as_bytes())
}
