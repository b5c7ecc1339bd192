//! Hostile inputs to generation: every one is either generated from or refused with the
//! error kind that names it; nothing panics or runs unbounded. Native and in the browser.

mod common;

use common::fixtures;
use free_wasm::threshold::{BmmSettings, ThresholdRule};
use free_wasm::{Error, GenerateOptions, StrategyName};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

fn options(strategy: StrategyName, threshold: Option<f64>, max_new_tokens: usize) -> GenerateOptions {
    GenerateOptions { strategy, threshold, max_new_tokens, ..GenerateOptions::default() }
}

#[test]
fn control_characters_and_every_unicode_plane_generate() {
    let mut p = fixtures()[1].load();
    let texts = [
        "\u{0}\u{1}\u{7}\u{8}\u{1b}[31m\u{7f}\u{85}\u{200b}\u{feff}",
        "tabs\tand\r\nnewlines\u{2028}\u{2029}",
        // Planes 0 (Latin, Greek, CJK, RTL), 1 (emoji, maths), 2 and 3 (CJK extensions),
        // 14 (tags) and 15/16 (private use), and a combining sequence.
        "é ελληνικά 中文 עברית 😀🏳️‍🌈 𝔘 \u{20000}\u{30000} \u{E0041}\u{F0000}\u{10FFFD} e\u{301}\u{302}",
        &"\u{FFFD}".repeat(300),
    ];
    for text in texts {
        for (strategy, threshold) in [(StrategyName::Full, None), (StrategyName::Free, Some(0.1)), (StrategyName::FreeExact, Some(0.0))] {
            let out = p.generate(text, &options(strategy, threshold, 6)).unwrap_or_else(|e| panic!("{text:?} {strategy:?}: {e}"));
            assert!(out.generation.tokens.len() <= 6);
        }
    }
}

#[test]
fn token_limits_of_zero_and_of_a_million() {
    let mut p = fixtures()[0].load();
    let none = p.generate("a library", &options(StrategyName::Free, Some(0.5), 0)).unwrap();
    assert!(none.generation.tokens.is_empty() && none.generation.trace.is_empty() && !none.generation.finished);
    let err = p.generate("a library", &options(StrategyName::Free, Some(0.5), 1_000_000)).unwrap_err();
    assert!(matches!(&err, Error::InvalidSetting { setting: "max_new_tokens", .. }), "{err}");
    assert!(err.to_string().contains("at most 512"), "{err}");
}

#[test]
fn error_budgets_outside_zero_one_are_refused_and_a_valid_one_sets_the_rule() {
    let mut p = fixtures()[0].load();
    for rate in [f64::NAN, 0.0, 1.0, -0.1, f64::INFINITY] {
        let o = GenerateOptions { max_disagreement: Some(rate), ..options(StrategyName::Free, None, 4) };
        let err = p.generate("a library", &o).unwrap_err();
        assert!(matches!(&err, Error::InvalidSetting { setting: "max_disagreement", .. }), "{rate}: {err}");
    }
    let o = GenerateOptions { max_disagreement: Some(0.1), ..options(StrategyName::Free, None, 4) };
    p.generate("a library", &o).unwrap();
    assert_eq!(p.adaptive().settings().rule, ThresholdRule::budget(0.1));
    // Without the option, the model's own rule (FREE's zeta rule here) again.
    p.generate("a library", &options(StrategyName::Free, None, 4)).unwrap();
    assert_eq!(p.adaptive().settings().rule, BmmSettings::default().rule);
}

#[test]
fn thresholds_outside_zero_one_or_nan_are_refused() {
    let mut p = fixtures()[0].load();
    for t in [f64::NAN, -0.1, 1.5, f64::INFINITY] {
        for strategy in [StrategyName::Free, StrategyName::FreeExact, StrategyName::Calm] {
            let err = p.generate("a library", &options(strategy, Some(t), 4)).unwrap_err();
            assert!(matches!(&err, Error::InvalidSetting { setting: "threshold", .. }), "{strategy:?} {t}: {err}");
        }
    }
}
