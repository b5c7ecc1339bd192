// Generated from crate/src/pipeline.rs `STRATEGIES` by its test `strategies_mirror_is_current`
// (`FREE_UPDATE_MIRRORS=1 cargo test --lib mirror` rewrites it): do not edit.

/** Every decoding strategy and what it takes (crate/src/pipeline.rs `StrategyInfo`). */
export const STRATEGIES = [
  {"name":"free","summary":"synchronized parallel decoding","threshold":"fixedOrAdaptive","exitsEarly":true,"exact":false},
  {"name":"free-exact","summary":"verified: the same output as full","threshold":"fixedOrAdaptive","exitsEarly":true,"exact":true},
  {"name":"full","summary":"runs every block for every token","threshold":"none","exitsEarly":false,"exact":true},
  {"name":"static","summary":"exits every token at the shallow exit","threshold":"none","exitsEarly":true,"exact":false},
  {"name":"calm","summary":"exits after any block once confident","threshold":"fixed","exitsEarly":true,"exact":false},
] as const;
