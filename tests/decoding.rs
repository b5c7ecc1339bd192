//! Decoding strategies on the fixture checkpoints: FREE's exact mode gives the full model's
//! tokens, the deep caches after every synchronisation equal the full model's, and the
//! limiting thresholds reduce FREE and CALM to the static exit and the full model.

mod common;

use common::{fixtures, max_abs_diff};
use free_wasm::config::ConfidenceMeasure;
use free_wasm::decode::{generate, DecodeSettings, Generation, Session, Strategy, Threshold};
use free_wasm::model::T5Model;
use free_wasm::threshold::{AdaptiveThreshold, BmmSettings};
use free_wasm::{GenerateOptions, ModelFiles, Pipeline, StrategyName};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const MAX_NEW: usize = 24;

/// Inputs: the fixture texts and word windows over them, ~20 per model.
fn inputs(p: &Pipeline) -> Vec<Vec<u32>> {
    let fx = &fixtures()[0];
    let words: Vec<String> = fx.expected().cases.iter().flat_map(|c| c.text.split(' ').map(String::from).collect::<Vec<_>>()).collect();
    (0..words.len().saturating_sub(4)).step_by(2).map(|i| p.tokenizer().encode(&words[i..i + 5].join(" ")).unwrap()).collect()
}

fn settings(strategy: Strategy, max_new_tokens: usize) -> DecodeSettings {
    DecodeSettings { strategy, measure: ConfidenceMeasure::Top2Gap, max_new_tokens }
}

fn run(m: &T5Model, ids: &[u32], strategy: Strategy, threshold: f64) -> Generation {
    generate(m, ids, settings(strategy, MAX_NEW), Threshold::Fixed(threshold)).unwrap()
}

fn shallow_exit(p: &Pipeline) -> usize {
    p.free_config().unwrap().shallow_exit_layer
}

#[test]
fn free_exact_equals_full_at_every_threshold() {
    let mut rollbacks = 0;
    let mut exits = 0;
    for fx in fixtures() {
        let p = fx.load();
        let exit = shallow_exit(&p);
        for ids in inputs(&p) {
            let full = run(p.model(), &ids, Strategy::Full, 0.0);
            for threshold in [0.0, 0.05, 0.2, 0.6] {
                let exact = run(p.model(), &ids, Strategy::Free { exit, exact: true }, threshold);
                assert_eq!(exact.tokens, full.tokens, "{} threshold {threshold}", fx.name);
                assert_eq!(exact.finished, full.finished);
                rollbacks += exact.counters.rollbacks;
                exits += exact.trace.iter().filter(|t| t.stacked && !t.rolled_back).count();
                // Every surviving token was checked by the deep model and agreed with it.
                for t in exact.trace.iter().filter(|t| !t.rolled_back) {
                    assert_eq!(t.deep_token, Some(t.token), "{}: token {} unverified", fx.name, t.index);
                }
            }
        }
    }
    // The random fixtures disagree often: both paths (keep and roll back) were exercised.
    assert!(rollbacks > 50 && exits > 50, "rollbacks {rollbacks}, verified exits {exits}");
}

#[test]
fn deep_caches_equal_the_full_models_after_every_synchronisation() {
    for fx in fixtures() {
        let p = fx.load();
        let m = p.model();
        let (exit, blocks) = (shallow_exit(&p), m.num_decoder_blocks());
        let mut checked = 0;
        for ids in inputs(&p).iter().take(6) {
            let enc = m.encode(ids).unwrap();
            let mut s = Session::new(m, m.start_decoder(enc), settings(Strategy::Free { exit, exact: false }, MAX_NEW), Threshold::Fixed(0.2)).unwrap();
            while s.finished().is_none() {
                let passes = s.counters().deep_passes.len();
                s.step().unwrap();
                if s.counters().deep_passes.len() == passes {
                    continue;
                }
                // The full model, teacher-forced on the same decoder inputs, in one pass.
                let synced = s.decoder_state().blocks[exit].len();
                let mut inputs = vec![m.config().decoder_start_token_id];
                inputs.extend(s.trace().iter().take(synced - 1).map(|t| t.token));
                let mut full = m.start_decoder(m.encode(ids).unwrap());
                m.decode_blocks(&mut full, 0..blocks, m.embed(&inputs).unwrap()).unwrap();
                for b in 0..blocks {
                    let (k, v) = s.decoder_state().blocks[b].self_kv().unwrap().unwrap();
                    let (k, v) = (k.narrow(1, 0, synced).unwrap(), v.narrow(1, 0, synced).unwrap());
                    let (fk, fv) = full.blocks[b].self_kv().unwrap().unwrap();
                    for (a, f) in [(k, fk), (v, fv)] {
                        let d = max_abs_diff(&flat(&a), &flat(&f));
                        assert!(d <= 1e-5, "{} block {b} after {synced} positions: caches differ by {d}", fx.name);
                    }
                }
                checked += 1;
            }
        }
        assert!(checked >= 6, "{}: only {checked} synchronisations checked", fx.name);
    }
}

#[test]
fn limiting_thresholds_reduce_to_static_and_full() {
    for fx in fixtures() {
        let p = fx.load();
        let (exit, blocks) = (shallow_exit(&p), p.model().num_decoder_blocks());
        for ids in inputs(&p).iter().take(5) {
            let full = run(p.model(), ids, Strategy::Full, 0.0);
            let stat = run(p.model(), ids, Strategy::Static { exit }, 0.0);
            assert_eq!(stat.counters.block_rows, exit * stat.trace.len());
            // Threshold 1: no confidence exceeds it, the deep model decides every token.
            let never = run(p.model(), ids, Strategy::Free { exit, exact: false }, 1.0);
            assert_eq!(never.tokens, full.tokens);
            assert!(never.counters.deep_passes.iter().all(|&rows| rows == 1));
            let calm_never = run(p.model(), ids, Strategy::Calm { min_exit: 1, threshold: 1.0 }, 0.0);
            assert_eq!(calm_never.tokens, full.tokens);
            // Threshold 0: every token with a non-zero gap exits: the static exit's output.
            let always = run(p.model(), ids, Strategy::Free { exit, exact: false }, 0.0);
            assert_eq!(always.tokens, stat.tokens);
            assert!(always.counters.deep_passes.is_empty());
            assert_eq!(full.counters.block_rows, blocks * full.trace.len());
        }
    }
}

#[test]
fn free_trace_accounts_for_every_row() {
    let fx = &fixtures()[1];
    let p = fx.load();
    let (exit, blocks) = (shallow_exit(&p), p.model().num_decoder_blocks());
    for ids in inputs(&p).iter().take(5) {
        let g = run(p.model(), ids, Strategy::Free { exit, exact: false }, 0.2);
        let stacked = g.trace.iter().filter(|t| t.stacked).count();
        let deep = g.trace.iter().filter(|t| t.exit == blocks).count();
        assert_eq!(stacked + deep, g.trace.len());
        let rows: usize = g.counters.deep_passes.iter().sum();
        assert_eq!(g.counters.block_rows, exit * g.trace.len() + (blocks - exit) * rows);
        // Each deep pass decides one token and checks the stacked ones before it.
        assert_eq!(g.counters.deep_passes.len(), deep);
        for t in &g.trace {
            assert_eq!(t.sync.is_some(), t.deep_token.is_some());
            assert!(t.threshold == Some(0.2));
        }
    }
}

#[test]
fn adaptive_threshold_learns_across_generations() {
    let fx = &fixtures()[1];
    let p = fx.load();
    let exit = shallow_exit(&p);
    let mut est = AdaptiveThreshold::new(BmmSettings { min_points: 10, initial_threshold: 0.1, ..BmmSettings::default() });
    let mut thresholds = vec![];
    for ids in inputs(&p) {
        let g = generate(p.model(), &ids, settings(Strategy::Free { exit, exact: false }, MAX_NEW), Threshold::Adaptive(&mut est)).unwrap();
        thresholds.extend(g.trace.iter().filter_map(|t| t.threshold));
    }
    let state = est.state();
    assert!(state.consistent_points > 10 && state.inconsistent_points > 10, "{state:?}");
    assert!(state.fits >= 1, "{state:?}");
    assert!(thresholds.iter().any(|&t| t != 0.1), "the threshold never moved");
}

#[test]
fn adaptive_threshold_starts_learning_even_when_nothing_exits() {
    // Initial threshold 1.0: no token can exit, so no synchronisation ever checks a stack.
    let p = fixtures()[1].load();
    let exit = shallow_exit(&p);
    let learned = |learn_without_stack: bool| {
        let mut est = AdaptiveThreshold::new(BmmSettings { min_points: 10, initial_threshold: 1.0, learn_without_stack, ..BmmSettings::default() });
        for ids in inputs(&p).iter().take(8) {
            generate(p.model(), ids, settings(Strategy::Free { exit, exact: false }, MAX_NEW), Threshold::Adaptive(&mut est)).unwrap();
        }
        est.state()
    };
    let reference = learned(false);
    assert_eq!((reference.consistent_points, reference.inconsistent_points, reference.threshold), (0, 0, 1.0));
    let ours = learned(true);
    assert!(ours.consistent_points + ours.inconsistent_points >= 8 * 4, "{ours:?}");
    assert!(ours.threshold < 1.0 && ours.fits >= 1, "the threshold never moved: {ours:?}");
}

/// A model whose free.json ships a calibration starts every adaptive generation from it,
/// whatever the strategy or rule, and `reset` comes back to it. The calibration: consistent
/// 400 points with mean 0.6 and variance 0.04 (Beta(3, 2)), inconsistent 300 with mean 0.2
/// and variance 0.02 (Beta(1.4, 5.6)); thresholds by scipy with tools/make_bmm_vectors.py's
/// rules: 0.333 by the zeta rule, 0.474 by a 5% error budget (priors 4:3).
#[test]
fn a_calibrated_model_starts_every_adaptive_generation_calibrated() {
    let fx = &fixtures()[1];
    let mut free: serde_json::Value = serde_json::from_slice(fx.free).unwrap();
    free["calibration"] = serde_json::json!({
        "consistent": {"points": 400, "mean": 0.6, "variance": 0.04},
        "inconsistent": {"points": 300, "mean": 0.2, "variance": 0.02},
        "threshold": 0.333,
        "source": {"data": "made up", "data_sha256": "", "inputs_per_task": {}, "strategy": "free-adaptive", "max_new_tokens": 8, "weights_sha256": ""}
    });
    let free = serde_json::to_vec(&free).unwrap();
    let mut p = Pipeline::from_files(&ModelFiles { free: Some(&free), ..fx.files() }).unwrap();
    let fit = p.adaptive().state().fit.expect("the calibration fits");
    let near = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(near(fit.consistent.alpha, 3.0) && near(fit.consistent.beta, 2.0), "{fit:?}");
    assert!(near(fit.inconsistent.alpha, 1.4) && near(fit.inconsistent.beta, 5.6), "{fit:?}");
    let mut first_threshold = |strategy, max_disagreement| {
        p.adaptive_mut().reset();
        let options = GenerateOptions { strategy, max_disagreement, max_new_tokens: 8, ..GenerateOptions::default() };
        p.generate("a library for reading and writing archives", &options).unwrap().generation.trace[0].threshold
    };
    for strategy in [StrategyName::Free, StrategyName::FreeExact] {
        assert_eq!(first_threshold(strategy, None), Some(0.333), "{strategy:?}");
        assert_eq!(first_threshold(strategy, Some(0.05)), Some(0.474), "{strategy:?} with an error budget");
    }
}

#[test]
fn bad_strategies_are_refused() {
    let p = fixtures()[0].load();
    let ids = p.tokenizer().encode("hello").unwrap();
    for (strategy, threshold) in [
        (Strategy::Free { exit: 0, exact: false }, 0.5),
        (Strategy::Static { exit: 4 }, 0.5),
        (Strategy::Free { exit: 1, exact: false }, f64::NAN),
        (Strategy::Free { exit: 1, exact: false }, 1.5),
        (Strategy::Calm { min_exit: 1, threshold: -0.1 }, 0.5),
    ] {
        let err = generate(p.model(), &ids, settings(strategy, 4), Threshold::Fixed(threshold)).unwrap_err();
        assert!(matches!(err, free_wasm::Error::InvalidSetting { .. }), "{strategy:?} {threshold}: {err}");
    }
    let g = run(p.model(), &ids, Strategy::Full, 0.0);
    assert!(g.tokens.len() <= MAX_NEW);
    let none = generate(p.model(), &ids, settings(Strategy::Full, 0), Threshold::Fixed(0.5)).unwrap();
    assert!(none.tokens.is_empty() && !none.finished);
}

fn flat(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn step_reports_where_the_trace_changed() {
    let fx = &fixtures()[1];
    let p = fx.load();
    let m = p.model();
    let exit = shallow_exit(&p);
    let mut corrections = 0;
    for ids in inputs(&p).iter().take(4) {
        let mut s = Session::new(m, m.start_decoder(m.encode(ids).unwrap()), settings(Strategy::Free { exit, exact: true }, MAX_NEW), Threshold::Fixed(0.05)).unwrap();
        while s.finished().is_none() {
            let before = s.trace().to_vec();
            let changed = s.step().unwrap();
            // Streaming consumers redraw from `changed` on; everything before it is as it was.
            assert!(s.trace()[..changed] == before[..changed], "an entry before {changed} changed");
            assert!(changed <= before.len());
            corrections += s.trace()[changed..].iter().any(|t| t.rolled_back) as usize;
        }
    }
    assert!(corrections > 0, "no step rolled back: the test saw no correction");
}

/// Runs a generation to the end, with or without recording each step before the token it
/// starts from is known (what the GPU backend does by default), and returns it with the
/// final caches.
fn run_ahead_or_not(m: &T5Model, ids: &[u32], strategy: Strategy, threshold: Threshold<'_>, ahead: bool) -> (Generation, Vec<(usize, Vec<f32>)>) {
    let state = m.start_decoder(m.encode(ids).unwrap());
    let mut s = Session::new(m, state, settings(strategy, MAX_NEW), threshold).unwrap().with_run_ahead(Some(ahead));
    s.run().unwrap();
    let caches = s.decoder_state().blocks.iter().map(|b| (b.len(), b.self_kv().unwrap().map_or(Vec::new(), |(k, v)| [flat(&k), flat(&v)].concat()))).collect();
    let (tokens, finished) = (s.tokens().to_vec(), s.finished() == Some(true));
    let (trace, counters) = s.into_parts();
    (Generation { tokens, finished, trace, counters }, caches)
}

#[test]
fn running_a_step_ahead_decides_the_same_and_leaves_the_same_caches() {
    let (mut generations, mut ahead_used, mut discarded_midway) = (0, 0, 0);
    for fx in fixtures() {
        let p = fx.load();
        let m = p.model();
        let exit = shallow_exit(&p);
        let strategies = [
            (Strategy::Full, 0.0),
            (Strategy::Static { exit }, 0.0),
            (Strategy::Free { exit, exact: false }, 0.05),
            (Strategy::Free { exit, exact: false }, 0.2),
            (Strategy::Free { exit, exact: true }, 0.05),
        ];
        let (mut learn_waiting, mut learn_ahead) = (AdaptiveThreshold::new(BmmSettings::default()), AdaptiveThreshold::new(BmmSettings::default()));
        for ids in inputs(&p).iter().take(8) {
            let mut cases: Vec<_> = strategies
                .iter()
                .map(|&(strategy, t)| {
                    let waiting = run_ahead_or_not(m, ids, strategy, Threshold::Fixed(t), false);
                    (strategy, waiting, run_ahead_or_not(m, ids, strategy, Threshold::Fixed(t), true))
                })
                .collect();
            let adaptive = Strategy::Free { exit, exact: false };
            let waiting = run_ahead_or_not(m, ids, adaptive, Threshold::Adaptive(&mut learn_waiting), false);
            cases.push((adaptive, waiting, run_ahead_or_not(m, ids, adaptive, Threshold::Adaptive(&mut learn_ahead), true)));
            for (strategy, (want, want_caches), (got, got_caches)) in cases {
                let name = format!("{} {strategy:?}", fx.name);
                assert_eq!(got.tokens, want.tokens, "{name}: tokens");
                assert_eq!(got.finished, want.finished, "{name}: finished");
                assert_eq!(got.trace, want.trace, "{name}: trace");
                assert_eq!(got.counters.deep_passes, want.counters.deep_passes, "{name}: deep passes");
                assert_eq!(got.counters.rollbacks, want.counters.rollbacks, "{name}: rollbacks");
                assert_eq!(want.counters.ahead_steps, 0, "{name}: waiting ran ahead");
                for (b, ((wl, wkv), (gl, gkv))) in want_caches.iter().zip(&got_caches).enumerate() {
                    assert_eq!(gl, wl, "{name}: block {b} caches {gl} positions, not {wl}");
                    assert!(max_abs_diff(gkv, wkv) <= 1e-6, "{name}: block {b}'s cache differs");
                }
                let c = &got.counters;
                let len = got.trace.len();
                if strategy == Strategy::Full || matches!(strategy, Strategy::Static { .. }) {
                    // One step ahead from every token but the last allowed; the one past the
                    // end is thrown away, unless the limit ended the generation.
                    assert_eq!(c.ahead_steps, len - (len == MAX_NEW) as usize, "{name}: steps run ahead");
                    assert_eq!(c.ahead_discarded, (len < MAX_NEW) as usize, "{name}: steps thrown away");
                }
                // Blocks run ahead and thrown away are paid for.
                assert!(c.block_rows >= want.counters.block_rows, "{name}: fewer blocks than waiting");
                ahead_used += c.ahead_steps - c.ahead_discarded;
                discarded_midway += c.ahead_discarded.saturating_sub(1);
                generations += 1;
            }
        }
        assert!((learn_waiting.threshold() - learn_ahead.threshold()).abs() < 1e-12, "{}: the adaptive thresholds differ", fx.name);
    }
    // Both paths were taken: steps used as run, and steps thrown away before the end (a
    // deep pass or a rollback changed the token they started from).
    assert!(ahead_used > 10 * generations && discarded_midway > 20, "used {ahead_used}, thrown away midway {discarded_midway}");
}
