//! `free`: the native command line of free-wasm.

mod args;
mod trace_view;

use std::process::ExitCode;

use args::Args;
use free_wasm::{GenerateOptions, Pipeline, StrategyName};

const USAGE: &str = "usage:
  free generate --model DIR [--strategy S] [--threshold X] [--exit-layer N]
                [--max-new-tokens N] [--json] TEXT
      S: full | static | calm | free (default; adaptive threshold unless --threshold)
         | free-exact. Prints the text with each token coloured by the exit that emitted
         it; --json prints the whole per-token trace.";

fn main() -> ExitCode {
    let mut args = Args::from_env();
    let result = match args.next_positional().as_deref() {
        Some("generate") => generate(args),
        Some("help") | Some("--help") | Some("-h") | None => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The options shared by the commands that generate.
fn generate_options(args: &mut Args) -> Result<GenerateOptions, String> {
    let defaults = GenerateOptions::default();
    let strategy: StrategyName = match args.optional("--strategy")? {
        Some(s) => s.parse().map_err(|e: free_wasm::Error| e.to_string())?,
        None => defaults.strategy,
    };
    Ok(GenerateOptions {
        strategy,
        threshold: args.optional("--threshold")?.map(|t| t.parse().map_err(|_| format!("--threshold {t:?} is not a number"))).transpose()?,
        max_new_tokens: args.parsed("--max-new-tokens", defaults.max_new_tokens)?,
        exit_layer: args.optional("--exit-layer")?.map(|n| n.parse().map_err(|_| format!("--exit-layer {n:?} is not a whole number"))).transpose()?,
    })
}

fn generate(mut args: Args) -> Result<(), String> {
    let model_dir = args.required("--model")?;
    let options = generate_options(&mut args)?;
    let json = args.flag("--json");
    let text = args.single_positional("TEXT")?;

    let mut pipeline = Pipeline::from_dir(&model_dir).map_err(|e| e.to_string())?;
    let start = std::time::Instant::now();
    let out = pipeline.generate(&text, &options).map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    if out.truncated_input_tokens > 0 {
        eprintln!("warning: the input was cut by {} tokens to the model's limit", out.truncated_input_tokens);
    }
    if json {
        let value = serde_json::json!({
            "text": out.text,
            "tokens": out.generation.tokens,
            "finished": out.generation.finished,
            "truncatedInputTokens": out.truncated_input_tokens,
            "trace": out.generation.trace,
            "counters": out.generation.counters,
            "seconds": seconds,
        });
        println!("{value}");
    } else {
        let blocks = pipeline.model.num_decoder_blocks();
        println!("{}", trace_view::render(&out.generation.trace, blocks));
        println!("{}", trace_view::summary(&out.generation, blocks, seconds));
    }
    Ok(())
}
