//! `free`: the native command line of free-wasm.
//!
//!   free generate --model DIR [--max-new-tokens N] [--json] TEXT

mod args;

use std::process::ExitCode;

use args::Args;
use free_wasm::Pipeline;

const USAGE: &str = "usage:
  free generate --model DIR [--max-new-tokens N] [--json] TEXT
      greedy generation with the full model; --json prints text, token ids and timing";

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

fn generate(mut args: Args) -> Result<(), String> {
    let model_dir = args.required("--model")?;
    let max_new_tokens = args.parsed("--max-new-tokens", 64usize)?;
    let json = args.flag("--json");
    let text = args.single_positional("TEXT")?;

    let pipeline = Pipeline::from_dir(&model_dir).map_err(|e| e.to_string())?;
    let start = std::time::Instant::now();
    let out = pipeline.generate(&text, max_new_tokens).map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    if out.truncated_input_tokens > 0 {
        eprintln!("warning: the input was cut by {} tokens to the model's limit", out.truncated_input_tokens);
    }
    if json {
        let value = serde_json::json!({
            "text": out.text,
            "tokens": out.generation.tokens,
            "finished": out.generation.finished,
            "truncated_input_tokens": out.truncated_input_tokens,
            "seconds": seconds,
        });
        println!("{value}");
    } else {
        println!("{}", out.text);
    }
    Ok(())
}
