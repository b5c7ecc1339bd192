//! The trace in a terminal: tokens coloured by the exit that emitted them, rolled-back
//! tokens struck through, and a one-line summary.

use free_wasm::decode::{Generation, TokenTrace};
use free_wasm::pipeline::Timings;

const RESET: &str = "\x1b[0m";

fn style(t: &TokenTrace, blocks: usize) -> &'static str {
    if t.rolled_back {
        "\x1b[9;2m" // struck through, dim
    } else if t.exit == blocks {
        "\x1b[1;34m" // the deep model: bold blue
    } else if t.stacked {
        "\x1b[32m" // shallow exit, waited on the stack: green
    } else {
        "\x1b[33m" // any other early exit (static, CALM): yellow
    }
}

pub fn render(trace: &[TokenTrace], blocks: usize) -> String {
    let mut s: String = trace.iter().map(|t| format!("{}{}{RESET}", style(t, blocks), t.text)).collect();
    s.push_str(&format!(
        "\n\x1b[2mlegend:{RESET} \x1b[32mshallow exit{RESET} \x1b[33mother early exit{RESET} \x1b[1;34mdeep model{RESET} \x1b[9;2mrolled back{RESET}"
    ));
    s
}

pub fn summary(g: &Generation, blocks: usize, timings: &Timings) -> String {
    let live: Vec<&TokenTrace> = g.trace.iter().filter(|t| !t.rolled_back).collect();
    let n = live.len().max(1) as f64;
    let early = live.iter().filter(|t| t.exit < blocks).count();
    format!(
        "{} tokens in {:.1} ms; early exits {:.0}%; decoder blocks per token {:.2} (of {blocks}); deep passes {} (rows {:?}); rollbacks {}",
        live.len(),
        timings.encode_ms + timings.decode_ms,
        100.0 * early as f64 / n,
        g.counters.block_rows as f64 / n,
        g.counters.deep_passes.len(),
        g.counters.deep_passes,
        g.counters.rollbacks,
    )
}
