// Generated from crate/src/pipeline.rs (GenerateOptions, StrategyName) and crate/src/matrix.rs
// (Dtype) by the test `options_mirror_is_current` (`FREE_UPDATE_MIRRORS=1 cargo test --lib
// mirror` rewrites it): do not edit.

/**
 * The strategies by the names the CLI, the wasm API and the bench use.
 */
export type StrategyName = "full" | "static" | "calm" | "free" | "free-exact";

/**
 * How a loaded model holds its weight matrices (`dtype`); none: as the checkpoint stores
 * them.
 */
export type Dtype = "f32" | "f16" | "q8";

/**
 * What to generate with (by default FREE with the adaptive threshold). The npm package's
 * `EngineOptions` (js/src/options.ts) is generated from this declaration, docs included.
 */
export type EngineOptions = { 
/**
 * Default "free".
 */
strategy: StrategyName, 
/**
 * A fixed confidence threshold in [0, 1] for the strategies that take one
 * (`STRATEGIES`). Without one, free and free-exact use the adaptive threshold (FREE's
 * Beta mixture, learning across generations) and calm free.json's threshold.
 */
threshold?: number, 
/**
 * Default 64; at most the model's n_positions.
 */
maxNewTokens: number, 
/**
 * Overrides free.json's shallow exit (S); required for early exits without free.json.
 */
exitLayer?: number, 
/**
 * A task of free.json's `tasks` ("summarize", "translate"): its prefix goes before the
 * text. Without one the text is used as given.
 */
task?: string, 
/**
 * For the adaptive threshold: the largest share of exited tokens the deep model may
 * disagree with, in (0, 1), e.g. 0.05 (the error-budget rule), instead of FREE's zeta
 * rule. Without it, free.json's `bmm.max_disagreement`, else the zeta rule. What the
 * threshold learned is kept when this changes.
 */
maxDisagreement?: number, 
/**
 * Record each step before the last token is read back, on the token the device chose
 * (thrown away when it turns out otherwise), so the GPU never idles waiting for the
 * page. Default: on WebGPU, not on the CPU (where nothing waits).
 */
runAhead?: boolean, };

/** The fields of `EngineOptions`. */
export const ENGINE_OPTIONS = ["exitLayer", "maxDisagreement", "maxNewTokens", "runAhead", "strategy", "task", "threshold"] as const;
