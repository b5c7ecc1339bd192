//! FREE's adaptive exit threshold (docs/method.md#adaptive-threshold): a two-component Beta
//! mixture fitted to the shallow confidences of tokens the deep model agreed with
//! (consistent) or not, and the lowest confidence above which "consistent" stays the likely
//! explanation. Pure: data in, threshold out, no model inside. It may start from a
//! calibration (both classes' moments on a validation split, shipped in free.json), so a
//! fresh page starts with a fitted threshold instead of waiting for enough points of its
//! own.

pub mod beta;

use std::collections::VecDeque;

use beta::BetaParams;
pub use beta::Moments;
use serde::{Deserialize, Serialize};

/// The threshold before anything is known of a model: free.json's `threshold` when it says
/// none, the fixed threshold of `calm` (and of the bench's fixed-threshold rows) without
/// free.json, and where FREE's adaptive threshold starts (0.9, as in the paper).
pub const DEFAULT_THRESHOLD: f64 = 0.9;

/// How the threshold is read off the fitted mixture.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(all(test, not(target_arch = "wasm32")), derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ThresholdRule {
    /// The reference implementation's: equal priors, the lowest of 10 points evenly spaced
    /// over [0.3, 0.9] whose posterior exceeds zeta (0.9 when none does).
    Reference,
    /// Ours: a 1e-3 grid over [0, 1]; the lowest c such that the posterior exceeds zeta at
    /// every grid point from c up, clamped to [min, max]; priors equal or from label counts.
    Fine { min: f64, max: f64, priors_from_counts: bool },
    /// Ours, by an error budget instead of zeta: the lowest c such that, under the fitted
    /// mixture with priors from the label counts, at most `rate` of the tokens with a
    /// confidence above c (those that exit) are ones the deep model would have changed —
    /// at every grid point from c up; clamped to [min, max]. Zeta says how likely the
    /// token at the threshold is to be right; this says how many exited tokens are wrong.
    Budget { rate: f64, min: f64, max: f64 },
}

impl ThresholdRule {
    /// The error-budget rule with the default settings' clamps (no lower clamp: the budget
    /// decides).
    pub fn budget(rate: f64) -> Self {
        BmmConfig::default().rule(Some(rate))
    }
}

/// Settings of the Beta-mixture threshold estimator (docs/method.md#adaptive-threshold).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BmmConfig {
    pub zeta: f64,
    pub min_points: usize,
    /// When set, the threshold keeps the share of exited tokens the deep model would have
    /// changed within this rate (the error-budget rule) instead of using zeta.
    pub max_disagreement: Option<f64>,
    /// The zeta rule's threshold stays within [min_threshold, max_threshold]; the budget
    /// rule's within [0, max_threshold] (its budget sets the floor).
    pub min_threshold: f64,
    pub max_threshold: f64,
    /// The zeta rule's class priors from the label counts instead of equal.
    pub priors_from_counts: bool,
    /// Fit only the newest this many points (a sliding window); none: every point.
    pub window: Option<usize>,
    /// Also refit after every this many synchronisations, not only when a generation starts.
    pub refit_every_syncs: Option<usize>,
}

impl Default for BmmConfig {
    fn default() -> Self {
        BmmConfig {
            zeta: 0.4,
            min_points: 50,
            max_disagreement: None,
            min_threshold: 0.05,
            max_threshold: 0.99,
            priors_from_counts: false,
            window: None,
            refit_every_syncs: None,
        }
    }
}

impl BmmConfig {
    /// What is wrong with these settings, if anything.
    pub(crate) fn problem(&self) -> Option<String> {
        if !(self.zeta > 0.0 && self.zeta < 1.0) {
            return Some(format!("bmm.zeta {} must be within (0, 1)", self.zeta));
        }
        if let Some(rate) = self.max_disagreement.filter(|r| !(*r > 0.0 && *r < 1.0)) {
            return Some(format!("bmm.max_disagreement {rate} must be within (0, 1), e.g. 0.05 for at most 5% of exited tokens"));
        }
        if !(0.0 <= self.min_threshold && self.min_threshold < self.max_threshold && self.max_threshold <= 1.0) {
            return Some(format!(
                "bmm.min_threshold {} and bmm.max_threshold {} must satisfy 0 <= min < max <= 1",
                self.min_threshold, self.max_threshold
            ));
        }
        // Both classes need min_points points before a fit, so a smaller window never fits.
        if let Some(w) = self.window.filter(|&w| w < 2 * self.min_points.max(1)) {
            return Some(format!("bmm.window {w} must hold at least 2 x bmm.min_points = {} points, or no fit can happen", 2 * self.min_points.max(1)));
        }
        if self.refit_every_syncs == Some(0) {
            return Some("bmm.refit_every_syncs must be at least 1 (leave it out to refit only when a generation starts)".into());
        }
        None
    }

    /// The rule these settings read the fit with: the error budget (`max_disagreement`, a
    /// generation's, else these settings'), else FREE's zeta rule; with these clamps and priors.
    pub fn rule(&self, max_disagreement: Option<f64>) -> ThresholdRule {
        match max_disagreement.or(self.max_disagreement) {
            Some(rate) => ThresholdRule::Budget { rate, min: 0.0, max: self.max_threshold },
            None => ThresholdRule::Fine { min: self.min_threshold, max: self.max_threshold, priors_from_counts: self.priors_from_counts },
        }
    }

    /// The estimator's settings: these, starting at `initial_threshold` until a fit (the
    /// calibration's, when there is one) gives another.
    pub fn settings(&self, initial_threshold: f64, calibration: Option<ClassMoments>) -> BmmSettings {
        BmmSettings {
            zeta: self.zeta,
            min_points: self.min_points,
            rule: self.rule(None),
            window: self.window,
            refit_every_syncs: self.refit_every_syncs,
            initial_threshold,
            learn_without_stack: true,
            calibration,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BmmSettings {
    pub zeta: f64,
    /// A class needs this many points before it is fitted.
    pub min_points: usize,
    pub rule: ThresholdRule,
    /// Keep only the newest points (a sliding window); None keeps everything.
    pub window: Option<usize>,
    /// Also refit after every this many synchronisations, not only between sequences.
    pub refit_every_syncs: Option<usize>,
    pub initial_threshold: f64,
    /// Ours: also learn from synchronisations with nothing on the stack (the current row's
    /// confidence, and whether the deep model chose the shallow model's token). The
    /// reference learns only at synchronisations that checked stacked tokens, so a
    /// threshold above every confidence the model reaches never moves.
    pub learn_without_stack: bool,
    /// Where the data starts: free.json's calibration (`free calibrate`), both classes'
    /// moments on a validation split. The first threshold is its fit's (the initial
    /// threshold only stands in while it has too few points); online points add to it, and
    /// `reset` comes back to it.
    pub calibration: Option<ClassMoments>,
}

impl Default for BmmSettings {
    fn default() -> Self {
        BmmConfig::default().settings(DEFAULT_THRESHOLD, None)
    }
}

/// The data of both classes, summarised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(all(test, not(target_arch = "wasm32")), derive(ts_rs::TS))]
pub struct ClassMoments {
    pub consistent: Moments,
    pub inconsistent: Moments,
}

impl ClassMoments {
    /// The moments of labelled points: (confidence, whether the deep model agreed).
    pub fn of<'a>(points: impl Iterator<Item = &'a (f64, bool)> + Clone) -> Self {
        let class = |want: bool| Moments::of(points.clone().filter(move |(_, y)| *y == want).map(|(c, _)| *c));
        ClassMoments { consistent: class(true), inconsistent: class(false) }
    }

    fn merge(self, other: ClassMoments) -> Self {
        ClassMoments { consistent: self.consistent.merge(other.consistent), inconsistent: self.inconsistent.merge(other.inconsistent) }
    }

    fn scaled(self, share: f64) -> Self {
        ClassMoments { consistent: self.consistent.scaled(share), inconsistent: self.inconsistent.scaled(share) }
    }

    fn points(&self) -> f64 {
        self.consistent.points + self.inconsistent.points
    }
}

/// The last successful fit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(all(test, not(target_arch = "wasm32")), derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct Fit {
    pub consistent: BetaParamsView,
    pub inconsistent: BetaParamsView,
    /// Prior probability of the consistent class used in the posterior.
    pub prior_consistent: f64,
}

/// A fitted Beta distribution (a serializable copy of `BetaParams`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(all(test, not(target_arch = "wasm32")), derive(ts_rs::TS), ts(rename = "BetaParams"))]
pub struct BetaParamsView {
    pub alpha: f64,
    pub beta: f64,
}

impl From<BetaParams> for BetaParamsView {
    fn from(p: BetaParams) -> Self {
        BetaParamsView { alpha: p.alpha, beta: p.beta }
    }
}

impl Fit {
    fn params(&self) -> (BetaParams, BetaParams) {
        let c = BetaParams { alpha: self.consistent.alpha, beta: self.consistent.beta };
        let i = BetaParams { alpha: self.inconsistent.alpha, beta: self.inconsistent.beta };
        (c, i)
    }

    /// P(consistent | confidence c), computed in log space so tiny densities do not vanish.
    pub fn posterior(&self, c: f64) -> f64 {
        let (cons, incons) = self.params();
        let l1 = cons.ln_pdf(c) + self.prior_consistent.ln();
        let l0 = incons.ln_pdf(c) + (1.0 - self.prior_consistent).ln();
        1.0 / (1.0 + (l0 - l1).exp())
    }
}

/// The adaptive threshold's state (the wasm API's `adaptiveState`, the demo's charts).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(all(test, not(target_arch = "wasm32")), derive(ts_rs::TS), ts(rename = "AdaptiveState"))]
#[serde(rename_all = "camelCase")]
pub struct BmmState {
    pub threshold: f64,
    /// How the threshold is read off the fit: FREE's zeta rule (`fine`: the lowest
    /// confidence from which up P(consistent | c) > zeta; `reference`: the reference code's
    /// 10-point grid) or the error budget (`budget`: at most `rate` of exiting tokens
    /// inconsistent).
    pub rule: ThresholdRule,
    pub zeta: f64,
    /// The last fit of the two-component Beta mixture, once there were enough points: from
    /// the start with a model whose free.json ships a calibration.
    pub fit: Option<Fit>,
    /// Shallow confidences this model's generations gave that the deep model agreed with,
    /// in the estimator's window.
    pub consistent_points: usize,
    /// ... and those it disagreed with.
    pub inconsistent_points: usize,
    /// The data free.json's calibration ships (confidences on a validation split), as the
    /// fit counts it now; the online points above add to it. None (null) for a model
    /// without one. (With free.json's `bmm.window`, online points take its place as they
    /// fill the window.)
    pub calibration: Option<ClassMoments>,
    /// How many times the mixture was fitted since the estimator started or was reset
    /// (`resetAdaptive`), the calibration's own fit not counted.
    pub fits: usize,
}

/// Clone is a snapshot: the wasm layer keeps one while a WebGPU generation runs, so a
/// generation the device loss ends teaches the estimator nothing (its replay on the CPU does).
#[derive(Clone)]
pub struct AdaptiveThreshold {
    settings: BmmSettings,
    /// Online points, newest last (at most `window` of them).
    points: VecDeque<(f64, bool)>,
    threshold: f64,
    fit: Option<Fit>,
    fits: usize,
    syncs_since_fit: usize,
    /// No point has arrived since the last refit (nor has the rule changed).
    fitted_all: bool,
}

impl AdaptiveThreshold {
    /// An estimator at its start: the calibration's fit and threshold when there is a
    /// calibration that fits, else the initial threshold.
    pub fn new(settings: BmmSettings) -> Self {
        let threshold = settings.initial_threshold;
        let mut est = AdaptiveThreshold { settings, points: VecDeque::new(), threshold, fit: None, fits: 0, syncs_since_fit: 0, fitted_all: true };
        if let Some(fit) = est.fit_data() {
            est.adopt(fit);
        }
        est
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    pub fn settings(&self) -> &BmmSettings {
        &self.settings
    }

    /// One data point: the shallow confidence of a token and whether the deep model
    /// chose the same token. A confidence that is not a number (NaN logits, say an f16
    /// overflow on a GPU) is not data: kept, it would make every later fit of its class
    /// NaN and freeze the threshold for good.
    pub fn observe(&mut self, confidence: f64, consistent: bool) {
        if !confidence.is_finite() {
            return;
        }
        self.fitted_all = false;
        self.points.push_back((confidence, consistent));
        if let Some(w) = self.settings.window {
            while self.points.len() > w {
                self.points.pop_front();
            }
        }
    }

    /// Called at the start of every sequence: refit on all data so far, unless the last
    /// fit already saw it all under the current rule (a generation that changed the rule
    /// refitted in `set_rule` just before).
    pub fn start_sequence(&mut self) {
        if !self.fitted_all {
            self.refit();
        }
    }

    /// Called after every synchronisation: refit when the cadence asks for it.
    pub fn after_sync(&mut self) {
        self.syncs_since_fit += 1;
        if self.settings.refit_every_syncs.is_some_and(|n| self.syncs_since_fit >= n) {
            self.refit();
        }
    }

    /// Fits both classes and moves the threshold; keeps the previous threshold when a class
    /// has too few points or no valid Beta fit.
    pub fn refit(&mut self) {
        self.syncs_since_fit = 0;
        self.fitted_all = true;
        if let Some(fit) = self.fit_data() {
            self.adopt(fit);
            self.fits += 1;
        }
    }

    /// The mixture all data gives (calibration and online points), if both classes have
    /// enough points and moments a Beta can have.
    fn fit_data(&self) -> Option<Fit> {
        let ClassMoments { consistent, inconsistent } = self.moments();
        let min = self.settings.min_points as f64;
        if consistent.points < min || inconsistent.points < min {
            return None;
        }
        let (c, i) = (BetaParams::from_moments(consistent)?, BetaParams::from_moments(inconsistent)?);
        let prior_consistent = match self.settings.rule {
            ThresholdRule::Fine { priors_from_counts: true, .. } | ThresholdRule::Budget { .. } => {
                consistent.points / (consistent.points + inconsistent.points)
            }
            _ => 0.5,
        };
        Some(Fit { consistent: c.into(), inconsistent: i.into(), prior_consistent })
    }

    fn adopt(&mut self, fit: Fit) {
        self.threshold = threshold_for(&fit, self.settings.zeta, self.settings.rule);
        self.fit = Some(fit);
    }

    /// The data the next fit uses: the calibration as it counts now and the online points.
    pub fn moments(&self) -> ClassMoments {
        let online = ClassMoments::of(self.points.iter());
        match self.calibration_now() {
            Some(calibration) => calibration.merge(online),
            None => online,
        }
    }

    /// The calibration as the fit counts it now. A window keeps the newest `window` points
    /// and the calibration counts as older than every online point, so it fills what online
    /// points leave of the window: its share shrinks as they arrive, both classes in
    /// proportion (the order of its points is not known), until the window holds online
    /// points only. Without a window all of it always counts.
    fn calibration_now(&self) -> Option<ClassMoments> {
        let calibration = self.settings.calibration?;
        let share = match self.settings.window {
            None => 1.0,
            Some(w) => (w.saturating_sub(self.points.len()) as f64 / calibration.points().max(1.0)).min(1.0),
        };
        Some(calibration.scaled(share))
    }

    pub fn state(&self) -> BmmState {
        let consistent_points = self.points.iter().filter(|(_, y)| *y).count();
        BmmState {
            threshold: self.threshold,
            rule: self.settings.rule,
            zeta: self.settings.zeta,
            fit: self.fit,
            consistent_points,
            inconsistent_points: self.points.len() - consistent_points,
            calibration: self.calibration_now(),
            fits: self.fits,
        }
    }

    /// Reads the threshold off the data with another rule (the data does not depend on the
    /// rule, so nothing learned is lost). Refits at once when the rule changes.
    pub fn set_rule(&mut self, rule: ThresholdRule) {
        if self.settings.rule != rule {
            self.settings.rule = rule;
            self.refit();
        }
    }

    /// Forgets the online points and their fits: back to the calibration's fit and
    /// threshold (the initial threshold without one).
    pub fn reset(&mut self) {
        *self = AdaptiveThreshold::new(self.settings.clone());
    }
}

/// The threshold a fitted mixture implies under `rule`.
pub fn threshold_for(fit: &Fit, zeta: f64, rule: ThresholdRule) -> f64 {
    match rule {
        ThresholdRule::Reference => (0..10)
            .map(|i| 0.3 + 0.6 * i as f64 / 9.0)
            .find(|&c| fit.posterior(c) > zeta)
            .unwrap_or(DEFAULT_THRESHOLD),
        ThresholdRule::Fine { min, max, .. } => highest_run(|c| fit.posterior(c) > zeta).unwrap_or(max).clamp(min, max),
        ThresholdRule::Budget { rate, min, max } => {
            let (cons, incons) = fit.params();
            let p = fit.prior_consistent;
            let lowest = highest_run(|c| {
                let wrong = (1.0 - p) * incons.sf(c);
                let exits = wrong + p * cons.sf(c);
                // Where nothing would exit, nothing exits wrongly.
                exits <= 0.0 || wrong / exits <= rate
            });
            lowest.unwrap_or(max).clamp(min, max)
        }
    }
}

/// The lowest point of a 1e-3 grid over [0, 1] from which `holds` is true at every grid
/// point up to 1 (walking down from 1); None when it fails at 1 already.
fn highest_run(holds: impl Fn(f64) -> bool) -> Option<f64> {
    const STEPS: usize = 1000;
    let mut lowest = None;
    for i in (0..=STEPS).rev() {
        let c = i as f64 / STEPS as f64;
        if !holds(c) {
            break;
        }
        lowest = Some(c);
    }
    lowest
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;
    use super::*;

    #[derive(serde::Deserialize)]
    struct Vectors {
        zeta: f64,
        min: f64,
        max: f64,
        budget: f64,
        cases: Vec<Case>,
    }

    #[derive(serde::Deserialize)]
    struct Case {
        consistent: Vec<f64>,
        inconsistent: Vec<f64>,
        fit_consistent: (f64, f64),
        fit_inconsistent: (f64, f64),
        probes: Vec<f64>,
        ln_pdf_consistent: Vec<f64>,
        posterior_equal_priors: Vec<f64>,
        threshold_reference: f64,
        threshold_fine: f64,
        threshold_fine_priors: f64,
        sf_consistent: Vec<f64>,
        sf_inconsistent: Vec<f64>,
        threshold_budget: f64,
    }

    /// Made by tools/make_bmm_vectors.py with scipy.stats.beta.
    fn vectors() -> Vectors {
        serde_json::from_str(include_str!("../../../tests/fixtures/bmm_vectors.json")).unwrap()
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1.0)
    }

    fn fitted(case: &Case, rule: ThresholdRule) -> AdaptiveThreshold {
        let mut est = AdaptiveThreshold::new(BmmSettings { rule, ..BmmSettings::default() });
        for &c in &case.consistent {
            est.observe(c, true);
        }
        for &c in &case.inconsistent {
            est.observe(c, false);
        }
        est.start_sequence();
        est
    }

    #[test]
    fn fits_densities_posteriors_and_thresholds_equal_scipy() {
        let v = vectors();
        for (n, case) in v.cases.iter().enumerate() {
            let fine = ThresholdRule::Fine { min: v.min, max: v.max, priors_from_counts: false };
            let est = fitted(case, fine);
            let fit = est.state().fit.expect("both classes have enough points");
            let (c, i) = fit.params();
            // scipy solves the moment equations numerically (to about 1e-5 relative); ours
            // is the closed form.
            assert!(close(c.alpha, case.fit_consistent.0, 1e-4) && close(c.beta, case.fit_consistent.1, 1e-4), "case {n}: {c:?}");
            assert!(close(i.alpha, case.fit_inconsistent.0, 1e-4) && close(i.beta, case.fit_inconsistent.1, 1e-4), "case {n}: {i:?}");
            let scipy_fit = Fit {
                consistent: BetaParamsView { alpha: case.fit_consistent.0, beta: case.fit_consistent.1 },
                inconsistent: BetaParamsView { alpha: case.fit_inconsistent.0, beta: case.fit_inconsistent.1 },
                prior_consistent: 0.5,
            };
            let (sc, _) = scipy_fit.params();
            for (k, &p) in case.probes.iter().enumerate() {
                assert!(close(sc.ln_pdf(p), case.ln_pdf_consistent[k], 1e-10), "case {n} probe {p}");
                assert!(close(scipy_fit.posterior(p), case.posterior_equal_priors[k], 1e-10), "case {n} probe {p}");
            }
            assert_eq!(est.threshold(), case.threshold_fine, "case {n}: fine rule");
            assert!(close(fitted(case, ThresholdRule::Reference).threshold(), case.threshold_reference, 1e-12), "case {n}: reference rule");
            let priors = ThresholdRule::Fine { min: v.min, max: v.max, priors_from_counts: true };
            assert_eq!(fitted(case, priors).threshold(), case.threshold_fine_priors, "case {n}: priors");
            assert_eq!(v.zeta, est.settings().zeta);

            let si = BetaParams { alpha: case.fit_inconsistent.0, beta: case.fit_inconsistent.1 };
            for (k, &p) in case.probes.iter().enumerate() {
                let (want_c, want_i) = (case.sf_consistent[k], case.sf_inconsistent[k]);
                assert!((sc.sf(p) - want_c).abs() <= 1e-12 + 1e-9 * want_c, "case {n}: consistent tail at {p}: {} vs {want_c}", sc.sf(p));
                assert!((si.sf(p) - want_i).abs() <= 1e-12 + 1e-9 * want_i, "case {n}: inconsistent tail at {p}: {} vs {want_i}", si.sf(p));
            }
            assert_eq!(fitted(case, ThresholdRule::budget(v.budget)).threshold(), case.threshold_budget, "case {n}: budget");
        }
    }

    /// The budget rule keeps its promise on the data it was fitted to: of the points above
    /// its threshold, about `rate` are inconsistent (the Beta fits are only approximate).
    /// Where no threshold meets the budget it falls back to its upper clamp.
    #[test]
    fn the_budget_rule_bounds_the_share_of_wrong_exits() {
        for (n, case) in vectors().cases.iter().enumerate() {
            for rate in [0.02, 0.05, 0.1] {
                let t = fitted(case, ThresholdRule::budget(rate)).threshold();
                // Case 1's inconsistent class is spread up to 0.99 and outnumbers the
                // consistent one 200 to 80: no threshold meets these budgets.
                assert_eq!(t == 0.99, n == 1, "case {n} rate {rate}: threshold {t}");
                if n == 1 {
                    continue;
                }
                let wrong = case.inconsistent.iter().filter(|&&c| c > t).count() as f64;
                let exits = wrong + case.consistent.iter().filter(|&&c| c > t).count() as f64;
                assert!(exits > 0.0, "rate {rate}: threshold {t} lets nothing exit");
                assert!(wrong / exits <= 2.0 * rate, "rate {rate}: threshold {t}, {wrong} of {exits} exits wrong");
            }
        }
    }

    #[test]
    fn changing_the_rule_keeps_the_data_and_refits() {
        let case = &vectors().cases[0];
        let mut est = fitted(case, BmmSettings::default().rule);
        let (zeta_rule, points) = (est.threshold(), est.state().consistent_points);
        est.set_rule(ThresholdRule::budget(0.01));
        assert_eq!(est.state().consistent_points, points);
        assert_eq!(est.state().fits, 2);
        // A generation starting right after, with no new data, has nothing to refit.
        est.start_sequence();
        assert_eq!(est.state().fits, 2);
        assert!(est.threshold() > zeta_rule, "a 1% budget is stricter here: {} vs {zeta_rule}", est.threshold());
    }

    #[test]
    fn too_little_or_degenerate_data_keeps_the_previous_threshold() {
        let mut est = AdaptiveThreshold::new(BmmSettings { min_points: 3, ..BmmSettings::default() });
        // One class empty.
        for c in [0.9, 0.8, 0.95, 0.7] {
            est.observe(c, true);
        }
        est.start_sequence();
        assert_eq!((est.threshold(), est.state().fits), (0.9, 0));
        // Zero variance in the other class: all confidences equal.
        for _ in 0..5 {
            est.observe(0.3, false);
        }
        est.start_sequence();
        assert_eq!((est.threshold(), est.state().fits), (0.9, 0));
        assert_eq!(est.state().inconsistent_points, 5);
    }

    #[test]
    fn a_confidence_that_is_not_a_number_is_ignored() {
        let case = &vectors().cases[0];
        let clean = fitted(case, BmmSettings::default().rule);
        let mut est = AdaptiveThreshold::new(BmmSettings::default());
        est.observe(f64::NAN, true);
        est.observe(f64::INFINITY, false);
        for &c in &case.consistent {
            est.observe(c, true);
        }
        for &c in &case.inconsistent {
            est.observe(c, false);
        }
        est.start_sequence();
        assert_eq!(est.state(), clean.state());
    }

    /// Both classes' points of a case, as a calibration.
    fn calibration_of(case: &Case) -> ClassMoments {
        let points: Vec<(f64, bool)> = case.consistent.iter().map(|&c| (c, true)).chain(case.inconsistent.iter().map(|&c| (c, false))).collect();
        ClassMoments::of(points.iter())
    }

    fn calibrated(calibration: ClassMoments, rule: ThresholdRule) -> AdaptiveThreshold {
        AdaptiveThreshold::new(BmmSettings { rule, calibration: Some(calibration), ..BmmSettings::default() })
    }

    /// A calibration summarising points starts where observing those points leads: the same
    /// fit, and scipy's thresholds (tests/fixtures/bmm_vectors.json) from the first token on.
    #[test]
    fn a_calibration_starts_where_its_points_lead() {
        let v = vectors();
        for (n, case) in v.cases.iter().enumerate() {
            let fine = ThresholdRule::Fine { min: v.min, max: v.max, priors_from_counts: false };
            let est = calibrated(calibration_of(case), fine);
            let observed = fitted(case, fine);
            assert_eq!(est.state().fit, observed.state().fit, "case {n}");
            assert_eq!(est.threshold(), case.threshold_fine, "case {n}");
            assert_eq!(est.threshold(), threshold_for(&est.state().fit.unwrap(), v.zeta, fine), "case {n}");
            assert_eq!((est.state().fits, est.state().consistent_points, est.state().inconsistent_points), (0, 0, 0));
            let counted = est.state().calibration.unwrap();
            assert_eq!((counted.consistent.points, counted.inconsistent.points), (case.consistent.len() as f64, case.inconsistent.len() as f64));
            let priors = ThresholdRule::Fine { min: v.min, max: v.max, priors_from_counts: true };
            assert_eq!(calibrated(calibration_of(case), priors).threshold(), case.threshold_fine_priors, "case {n}: priors");
            assert_eq!(calibrated(calibration_of(case), ThresholdRule::budget(v.budget)).threshold(), case.threshold_budget, "case {n}: budget");
        }
    }

    /// Points observed online add to the calibration's: half of each class calibrated, the
    /// other half observed, fits as all of them observed (to rounding) and gives scipy's
    /// thresholds, class priors from the combined counts included.
    #[test]
    fn online_points_add_to_the_calibration() {
        let v = vectors();
        for (n, case) in v.cases.iter().enumerate() {
            let (c_half, i_half) = (case.consistent.len() / 2, case.inconsistent.len() / 2);
            let first: Vec<(f64, bool)> = case.consistent[..c_half].iter().map(|&c| (c, true)).chain(case.inconsistent[..i_half].iter().map(|&c| (c, false))).collect();
            for priors_from_counts in [false, true] {
                let rule = ThresholdRule::Fine { min: v.min, max: v.max, priors_from_counts };
                let mut est = calibrated(ClassMoments::of(first.iter()), rule);
                for &c in &case.consistent[c_half..] {
                    est.observe(c, true);
                }
                for &c in &case.inconsistent[i_half..] {
                    est.observe(c, false);
                }
                est.start_sequence();
                let want = if priors_from_counts { case.threshold_fine_priors } else { case.threshold_fine };
                assert_eq!(est.threshold(), want, "case {n}, priors from counts {priors_from_counts}");
                let (got, all) = (est.state().fit.unwrap(), fitted(case, rule).state().fit.unwrap());
                for (a, b) in [(got.consistent, all.consistent), (got.inconsistent, all.inconsistent)] {
                    assert!(close(a.alpha, b.alpha, 1e-12) && close(a.beta, b.beta, 1e-12), "case {n}: {a:?} vs {b:?}");
                }
                assert!(close(got.prior_consistent, all.prior_consistent, 1e-15), "case {n}");
                assert_eq!(est.state().fits, 1);
            }
        }
    }

    #[test]
    fn reset_returns_to_the_calibration() {
        let case = &vectors().cases[0];
        let rule = BmmSettings::default().rule;
        let fresh = calibrated(calibration_of(case), rule);
        let mut est = calibrated(calibration_of(case), rule);
        for c in [0.95, 0.97, 0.99] {
            est.observe(c, false);
        }
        est.refit();
        assert_ne!(est.state(), fresh.state());
        est.reset();
        assert_eq!(est.state(), fresh.state());
    }

    /// With too few points for `min_points`, a calibration fits nothing yet: the initial
    /// threshold holds, and its points still count towards the first fit.
    #[test]
    fn a_calibration_too_small_to_fit_waits_for_online_points() {
        let small = ClassMoments::of([(0.9, true), (0.8, true), (0.2, false), (0.3, false)].iter());
        let mut est = AdaptiveThreshold::new(BmmSettings { min_points: 3, calibration: Some(small), ..BmmSettings::default() });
        assert_eq!((est.threshold(), est.state().fit), (0.9, None));
        est.observe(0.7, true);
        est.observe(0.1, false);
        est.start_sequence();
        assert_eq!(est.state().fits, 1);
        let all = ClassMoments::of([(0.9, true), (0.8, true), (0.7, true), (0.2, false), (0.3, false), (0.1, false)].iter());
        assert_eq!(est.moments().consistent.points, 3.0);
        assert!(close(est.moments().consistent.variance, all.consistent.variance, 1e-15));
    }

    /// A window counts the calibration as its oldest points: online points take their place
    /// (both classes in proportion) until the window holds online points only.
    #[test]
    fn a_window_lets_online_points_replace_the_calibration() {
        // 100 consistent points with mean 0.8 and variance 0.01; 50 inconsistent, 0.3 and 0.02.
        let calibration = ClassMoments {
            consistent: Moments { points: 100.0, mean: 0.8, variance: 0.01 },
            inconsistent: Moments { points: 50.0, mean: 0.3, variance: 0.02 },
        };
        let settings = BmmSettings { min_points: 2, window: Some(120), calibration: Some(calibration), ..BmmSettings::default() };
        let mut est = AdaptiveThreshold::new(settings);
        let counted = |est: &AdaptiveThreshold| {
            let c = est.state().calibration.unwrap();
            (c.consistent.points, c.inconsistent.points)
        };
        // 150 calibrated points in a window of 120: 4/5 of each class count.
        let (c, i) = counted(&est);
        assert!(close(c, 80.0, 1e-15) && close(i, 40.0, 1e-15), "{c} {i}");
        for _ in 0..30 {
            est.observe(0.9, true);
            est.observe(0.1, false);
        }
        // 60 online points leave room for 60 of the calibration's: 40 and 20.
        let (c, i) = counted(&est);
        assert!(close(c, 40.0, 1e-15) && close(i, 20.0, 1e-15), "{c} {i}");
        // Consistent: 40 points (mean 0.8, variance 0.01) and 30 at 0.9 give 70 with mean
        // 59/70 and variance (40 x 0.01 + 0.1^2 x 40 x 30 / 70) / 70 = 0.4/70 + 12/4900.
        let m = est.moments().consistent;
        assert!(close(m.points, 70.0, 1e-15) && close(m.mean, 59.0 / 70.0, 1e-15), "{m:?}");
        assert!(close(m.variance, 0.4 / 70.0 + 12.0 / 4900.0, 1e-15), "{m:?}");
        for _ in 0..30 {
            est.observe(0.85, true);
            est.observe(0.15, false);
        }
        assert_eq!(counted(&est), (0.0, 0.0));
        assert_eq!(est.moments(), ClassMoments::of(est.points.iter()));
    }

    #[test]
    fn sliding_window_and_sync_cadence_refit_within_a_sequence() {
        let settings = BmmSettings { min_points: 2, window: Some(6), refit_every_syncs: Some(2), ..BmmSettings::default() };
        let mut est = AdaptiveThreshold::new(settings);
        for (c, y) in [(0.9, true), (0.8, true), (0.95, true), (0.2, false), (0.3, false), (0.1, false), (0.99, true)] {
            est.observe(c, y);
        }
        assert_eq!(est.state().consistent_points + est.state().inconsistent_points, 6, "window keeps 6");
        est.after_sync();
        assert_eq!(est.state().fits, 0);
        est.after_sync();
        assert_eq!(est.state().fits, 1);
        assert!(est.threshold() < 0.9 && est.threshold() > 0.3, "{}", est.threshold());
        est.reset();
        assert_eq!((est.threshold(), est.state().fits, est.state().consistent_points), (0.9, 0, 0));
    }
}
