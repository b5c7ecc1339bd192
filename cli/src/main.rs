//! `free`: the native command line of free-wasm.

mod args;
mod baselines;
mod bench;
mod calibrate;
mod output;
mod trace_view;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use args::Args;
use free_wasm::backend::gpu::{Gpu, GpuModel};
use free_wasm::backend::{block_on, Backend};
use free_wasm::error::ModelFile;
use free_wasm::matrix::Dtype;
use free_wasm::pipeline::{ModelDir, Report, Timings};
use free_wasm::threshold::BmmSettings;
use free_wasm::pipeline::{strategies_where, StrategyInfo, STRATEGIES};
use free_wasm::{GenerateOptions, Pipeline, StrategyName};
use output::Output;

/// The help text; its strategy list comes from `STRATEGIES`.
fn usage() -> String {
    let strategies: Vec<String> = STRATEGIES.iter().map(|s| format!("\n         {:<10} {}", s.name.as_str(), s.summary)).collect();
    format!(
        "usage:
  free generate --model DIR [--device D] [--task T] [--strategy S] [--threshold X]
                [--max-disagreement R] [--exit-layer N] [--max-new-tokens N] [--json] TEXT
      S (default free; {adaptive} use the adaptive threshold unless --threshold):{strategies}
      Prints the text with each token coloured by the exit that emitted it (to a file or
      pipe, or with NO_COLOR: the text alone); --json prints the whole per-token trace.
      --max-disagreement R: the adaptive threshold keeps the share of exited tokens the
      deep model would have changed within R (e.g. 0.05) instead of FREE's zeta rule.
  free eval --model DIR --data FILE.jsonl [--device D] [--task T] [--limit N]
            [--strategy S] [--threshold X | --adaptive [--max-disagreement R]]
            [--max-new-tokens N] [--json]
      decodes a test set (JSONL: task, source, target) with one strategy (default full;
      --adaptive alone: free with its adaptive threshold) and reports ROUGE-1/2/L
      (summarize) or BLEU/chrF (translate) and speed. --limit N: examples per task
      (default all).
  free bench --model DIR --data FILE.jsonl [--device D] [--dtype T,T] [--task T] [--limit N]
             [--threshold X] [--max-disagreement R] [--max-new-tokens N] [--only NAME,NAME]
             [--json OUT.json]
{bench}
  free calibrate --model DIR --data FILE.jsonl [--device D] [--limit N]
                 [--max-new-tokens N] [--write]
      fits the adaptive threshold's starting data: decodes the inputs of every task (the
      first N per task, default all, in the file's order) with free and its adaptive
      threshold, as a fresh page would, and prints each class's count, mean and variance,
      their Beta fits and the threshold a fresh page then starts at; --write puts them
      into DIR/free.json as `calibration` (the other settings kept).
  free baselines --data FILE.jsonl [--task T] [--limit N] [--json]
      scores what a model must beat, without one: lead-N (the first N words of the
      source, N = 5, 8, 10, 15, 20, 30) for summarize, the source copied for translate.
  D: cpu (default) | gpu (WebGPU through wgpu: Vulkan, Metal or DX12; lavapipe where
     there is no GPU). --dtype f32 | f16 | q8 (every command with --model, on either
     device): how the weight matrices are held, q8 = 8-bit integers with a scale per row,
     quantized at load; default: as the checkpoint stores them. On the GPU, full, static and free record each step before the last
     token is read back, on the token the device chose (thrown away if it changes);
     --run-ahead off (generate, eval, bench) waits for every token instead.
  An input longer than the model takes is cut to its n_positions tokens (512 by default),
  tokenized from at most 64 bytes of text per token, with a warning. Files are written
  whole (a temporary file renamed over the old one); an output that is one of the run's
  inputs is refused.",
        adaptive = strategies_where(StrategyInfo::reads_adaptive),
        strategies = strategies.concat(),
        bench = wrap(
            &format!(
                "runs {} on the same examples, interleaved, and prints a table per task (and writes JSON); \
                 --only keeps the named ones (full stays: the ratios are against it). --limit N: examples per task (100). \
                 --dtype f16,q8: each of them with each weight format, in the same rotation (the first format's full is \
                 the reference); the MB column is what the weights take in memory (on the device).",
                bench::contender_list()
            ),
            6,
            88
        ),
    )
}

/// `text` in lines of at most `width` columns (a longer word keeps its own line), each
/// indented by `indent` spaces.
fn wrap(text: &str, indent: usize, width: usize) -> String {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("starts with one line");
        if !line.is_empty() && indent + line.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines.iter().map(|l| format!("{:indent$}{l}", "")).collect::<Vec<_>>().join("\n")
}

/// What `out!` returns when stdout is closed before the output is written.
const STDOUT_CLOSED: &str = "stdout is closed";

/// `println!` that returns an error from the enclosing function instead of panicking when
/// writing to stdout fails (a closed pipe: `free generate ... | head -c 100`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => STDOUT_CLOSED.to_string(),
            _ => format!("cannot write the output: {e}"),
        })?
    }};
}

fn help() -> Result<(), String> {
    out!("{}", usage());
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::from_env()) {
        // `free ... | head`: the reader has what it wanted.
        Ok(()) => ExitCode::SUCCESS,
        Err(message) if message == STDOUT_CLOSED => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut args: Args) -> Result<(), String> {
    if args.wants_help() {
        return help();
    }
    match args.next_positional("the command")?.as_deref() {
        Some("generate") => generate(args),
        Some("eval") => eval(args),
        Some("bench") => bench(args),
        Some("baselines") => baselines(args),
        Some("calibrate") => calibrate(args),
        Some("help") => help(),
        None if args.is_empty() => help(),
        None => args.finish().map_err(|e| format!("{e}; give a command first\n{}", usage())),
        Some(other) => Err(format!("unknown command `{other}`\n{}", usage())),
    }
}

/// Warns that inputs were longer than the model takes, in the one wording of every command;
/// `subject` says which ("the input was", "3 of 50 summarize inputs were").
pub fn warn_cut<B: Backend>(pipeline: &Pipeline<B>, subject: &str) {
    let (tokens, bytes) = (pipeline.model().config().max_input_tokens, pipeline.max_input_bytes());
    eprintln!("warning: {subject} longer than the model takes, and cut to its first {tokens} tokens (text past {bytes} bytes is not read)");
}

/// The options shared by the commands that generate.
fn generate_options(args: &mut Args, default_strategy: StrategyName) -> Result<GenerateOptions, String> {
    let defaults = GenerateOptions::default();
    let strategy: StrategyName = match args.optional("--strategy")? {
        Some(s) => s.parse().map_err(|e: free_wasm::Error| e.to_string())?,
        None => default_strategy,
    };
    Ok(GenerateOptions {
        strategy,
        threshold: args.optional("--threshold")?.map(|t| t.parse().map_err(|_| format!("--threshold {t:?} is not a number"))).transpose()?,
        max_new_tokens: args.parsed("--max-new-tokens", defaults.max_new_tokens)?,
        exit_layer: args.optional("--exit-layer")?.map(|n| n.parse().map_err(|_| format!("--exit-layer {n:?} is not a whole number"))).transpose()?,
        task: args.optional("--task")?,
        max_disagreement: args
            .optional("--max-disagreement")?
            .map(|r| r.parse().map_err(|_| format!("--max-disagreement {r:?} is not a number")))
            .transpose()?,
        run_ahead: match args.optional("--run-ahead")?.as_deref() {
            None => None,
            Some("on") => Some(true),
            Some("off") => Some(false),
            Some(other) => return Err(format!("--run-ahead {other:?}: use on or off")),
        },
    })
}

/// Where a command runs its model, and in what precision its weights are held there
/// (None: as the checkpoint stores them).
#[derive(Clone, Copy, PartialEq)]
enum Device {
    Cpu(Option<Dtype>),
    Gpu(Option<Dtype>),
}

fn device(args: &mut Args) -> Result<Device, String> {
    let dtype = args.optional("--dtype")?;
    place(args.optional("--device")?.as_deref(), dtype.as_deref())
}

/// The bench's `--dtype`, a comma-separated list: every strategy runs with each weight format
/// (the first one's `full` is the reference of the ratios).
fn devices(args: &mut Args) -> Result<Vec<Device>, String> {
    let dtypes = args.optional("--dtype")?;
    let device = args.optional("--device")?;
    match dtypes {
        None => Ok(vec![place(device.as_deref(), None)?]),
        Some(list) => list.split(',').map(|d| place(device.as_deref(), Some(d.trim()))).collect(),
    }
}

/// `--device` and `--dtype` as given.
fn place(device: Option<&str>, dtype: Option<&str>) -> Result<Device, String> {
    let dtype = dtype.map(|d| d.parse::<Dtype>().map_err(|e| e.to_string())).transpose()?;
    match device {
        None | Some("cpu") => Ok(Device::Cpu(dtype)),
        Some("gpu") => Ok(Device::Gpu(dtype)),
        Some(other) => Err(format!("--device {other:?}: use cpu or gpu")),
    }
}

fn load_gpu(model_dir: &Path, dtype: Option<Dtype>) -> Result<Pipeline<GpuModel>, String> {
    let files = ModelDir::read(model_dir).map_err(|e| e.to_string())?;
    let gpu = block_on(Gpu::new()).and_then(|g| g).map_err(|e| e.to_string())?;
    eprintln!("device: {}", gpu.adapter_name());
    Pipeline::from_files_gpu_as(&files.files(), gpu, dtype).map_err(|e| e.to_string())
}

/// Runs `$run(pipeline, ...)` with the model loaded on the chosen device.
macro_rules! on_device {
    ($device:expr, $dir:expr, $run:ident($($arg:expr),*)) => {
        match $device {
            Device::Cpu(dtype) => $run(load(&$dir, dtype)?, $($arg),*),
            Device::Gpu(dtype) => $run(load_gpu(&$dir, dtype)?, $($arg),*),
        }
    };
}

fn generate(mut args: Args) -> Result<(), String> {
    let model_dir = args.required_path("--model")?;
    let device = device(&mut args)?;
    let options = generate_options(&mut args, StrategyName::Free)?;
    let json = args.flag("--json");
    let text = args.single_positional("TEXT")?;
    on_device!(device, model_dir, generate_on(options, json, text))
}

fn generate_on<B: Backend>(mut pipeline: Pipeline<B>, options: GenerateOptions, json: bool, text: String) -> Result<(), String> {
    let ms = |since: std::time::Instant| since.elapsed().as_secs_f64() * 1e3;
    let started = std::time::Instant::now();
    let mut generating = pipeline.start(&text, &options).map_err(|e| e.to_string())?;
    let (encode_ms, decoding) = (ms(started), std::time::Instant::now());
    generating.run().map_err(|e| e.to_string())?;
    let timings = Timings { encode_ms, decode_ms: ms(decoding) };
    let out = generating.finish().map_err(|e| e.to_string())?;
    if out.input_cut.is_cut() {
        warn_cut(&pipeline, "the input was");
    }
    if json {
        // the wasm API's report, the same shape
        out!("{}", serde_json::to_string(&Report::new(out, timings)).map_err(|e| e.to_string())?);
    } else {
        let blocks = pipeline.model().num_decoder_blocks();
        // Escape codes only where a terminal shows them (https://no-color.org).
        let colour = std::io::IsTerminal::is_terminal(&std::io::stdout()) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        if colour {
            out!("{}", trace_view::render(&out.generation.trace, blocks));
        } else {
            // To a file or a pipe: the text alone (--json has the whole trace).
            out!("{}", out.text);
        }
        out!("{}", trace_view::summary(&out.generation, blocks, &timings));
    }
    Ok(())
}

fn load(model_dir: &Path, dtype: Option<Dtype>) -> Result<Pipeline, String> {
    Pipeline::from_files_as(&ModelDir::read(model_dir).map_err(|e| e.to_string())?.files(), dtype).map_err(|e| e.to_string())
}

fn eval(mut args: Args) -> Result<(), String> {
    let model_dir = args.required_path("--model")?;
    let device = device(&mut args)?;
    let data = args.required_path("--data")?;
    let task = args.optional("--task")?;
    let limit = limit(&mut args, usize::MAX)?;
    let adaptive = args.flag("--adaptive");
    // --adaptive alone means FREE with its adaptive threshold.
    let options = generate_options(&mut args, if adaptive { StrategyName::Free } else { StrategyName::Full })?;
    if adaptive && options.threshold.is_some() {
        return Err("give --threshold or --adaptive, not both".into());
    }
    if adaptive && !options.strategy.info().reads_adaptive() {
        return Err(format!("--adaptive applies to {}, not {}", strategies_where(StrategyInfo::reads_adaptive), options.strategy.as_str()));
    }
    options.check_applicable().map_err(|e| e.to_string())?;
    let json = args.flag("--json");
    args.finish()?;
    on_device!(device, model_dir, eval_on(options, data, task, limit, json, device.weights()))
}

fn eval_on<B: Backend>(pipeline: Pipeline<B>, options: GenerateOptions, data: PathBuf, task: Option<String>, limit: usize, json: bool, weights: String) -> Result<(), String> {
    let bmm = BmmSettings { rule: pipeline.threshold_rule(&options).map_err(|e| e.to_string())?, ..pipeline.adaptive().settings().clone() };
    let name = options.strategy.as_str();
    for (task, examples) in bench::load_examples(&data, task.as_deref(), limit)? {
        let mut one = vec![bench::Contender {
            name: "eval",
            model: 0,
            note: "",
            options: GenerateOptions { task: Some(task.clone()), ..options.clone() },
            // Only FREE without a fixed threshold reads the estimator.
            adaptive: (options.threshold.is_none() && options.strategy.info().reads_adaptive())
                .then(|| free_wasm::threshold::AdaptiveThreshold::new(bmm.clone())),
        }];
        let models = [bench::Model { pipeline: &pipeline, weights: weights.clone() }];
        let report = bench::run_task(&models, &task, &examples, &mut one, !json)?;
        let mut row = report["strategies"][0].clone();
        row["strategy"] = serde_json::json!(name);
        row["task"] = serde_json::json!(task);
        row["examples"] = report["examples"].clone();
        row["truncated_inputs"] = report["truncated_inputs"].clone();
        if json {
            out!("{row}");
        } else {
            out!("{}", bench::table(&serde_json::json!({"task": task, "examples": report["examples"], "strategies": [row]})));
        }
    }
    Ok(())
}

/// `--limit N` (examples per task): at least 1.
fn limit(args: &mut Args, default: usize) -> Result<usize, String> {
    match args.parsed("--limit", default)? {
        0 => Err("--limit 0 leaves nothing to score; give at least 1 (examples per task)".into()),
        n => Ok(n),
    }
}

fn calibrate(mut args: Args) -> Result<(), String> {
    let request = calibrate::Request {
        model_dir: args.required_path("--model")?,
        data: args.required_path("--data")?,
        limit: limit(&mut args, usize::MAX)?,
        max_new_tokens: args.parsed("--max-new-tokens", GenerateOptions::default().max_new_tokens)?,
    };
    let device = device(&mut args)?;
    let write = args.flag("--write");
    args.finish()?;
    let free_json = request.model_dir.join(ModelFile::FreeSettings.file_name());
    let write = write.then(|| Output::new("--write", free_json.clone(), &[("--data".into(), request.data.clone())])).transpose()?;
    on_device!(device, request.model_dir, calibrate_on(&request, write, &free_json))
}

fn calibrate_on<B: Backend>(mut pipeline: Pipeline<B>, request: &calibrate::Request, write: Option<Output>, free_json: &Path) -> Result<(), String> {
    let calibrated = calibrate::run(&mut pipeline, request, true)?;
    out!("{}", calibrate::summary(&calibrated));
    if let Some(output) = write {
        calibrate::write(&output, &calibrated.calibration, pipeline.model().config())?;
        out!("wrote {}", output.path().display());
    } else {
        let entry = serde_json::to_string_pretty(&calibrated.calibration).map_err(|e| e.to_string())?;
        out!("\"calibration\": {entry}\n(--write puts it into {})", free_json.display());
    }
    Ok(())
}

fn baselines(mut args: Args) -> Result<(), String> {
    let data = args.required_path("--data")?;
    let task = args.optional("--task")?;
    let limit = limit(&mut args, usize::MAX)?;
    let json = args.flag("--json");
    args.finish()?;
    for report in baselines::run(&data, task.as_deref(), limit)? {
        if json {
            out!("{report}");
        } else {
            out!("{}", baselines::table(&report).trim_end_matches('\n'));
        }
    }
    Ok(())
}

fn bench(mut args: Args) -> Result<(), String> {
    let model_dir = args.required_path("--model")?;
    let devices = devices(&mut args)?;
    let data = args.required_path("--data")?;
    let task = args.optional("--task")?;
    let limit = limit(&mut args, 100)?;
    let out = args.optional_path("--json")?;
    let only = args.optional("--only")?;
    if args.optional("--strategy")?.is_some() {
        return Err("bench runs every strategy; keep some with --only NAME,NAME".into());
    }
    let options = generate_options(&mut args, StrategyName::Free)?;
    args.finish()?;
    let out = out.map(|path| Output::new("--json", path, &output::inputs(&model_dir, &data))).transpose()?;
    let request = BenchRequest { options, data, task, limit, only, out };
    // Every entry names the same device (`devices`): one model per dtype there.
    if let Some(Device::Gpu(_)) = devices.first() {
        let each = devices.iter().map(|d| Ok((d.weights(), load_gpu(&model_dir, d.dtype())?)));
        return bench_on(each.collect::<Result<Vec<_>, String>>()?, request);
    }
    let each = devices.iter().map(|d| Ok((d.weights(), load(&model_dir, d.dtype())?)));
    bench_on(each.collect::<Result<Vec<_>, String>>()?, request)
}

/// What `free bench` was asked besides its models.
struct BenchRequest {
    options: GenerateOptions,
    data: PathBuf,
    task: Option<String>,
    limit: usize,
    only: Option<String>,
    out: Option<Output>,
}

impl Device {
    /// How the model holds its weight matrices, as the bench's table names it.
    fn weights(&self) -> String {
        match self.dtype() {
            Some(dtype) => serde_json::to_value(dtype).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            None => "stored".into(),
        }
    }

    fn dtype(&self) -> Option<Dtype> {
        match self {
            Device::Cpu(dtype) | Device::Gpu(dtype) => *dtype,
        }
    }
}

/// The bench over `pipelines` (each with its weight format's name), the first the reference.
fn bench_on<B: Backend>(pipelines: Vec<(String, Pipeline<B>)>, request: BenchRequest) -> Result<(), String> {
    let BenchRequest { options, data, task, limit, only, out } = request;
    let pipeline = &pipelines[0].1;
    let models: Vec<bench::Model<B>> = pipelines.iter().map(|(weights, p)| bench::Model { pipeline: p, weights: weights.clone() }).collect();
    // The budget is checked as generate checks it (a rate outside (0, 1) is refused).
    pipeline.threshold_rule(&options).map_err(|e| e.to_string())?;
    let fixed = pipeline.fixed_threshold(&options);
    let bmm = pipeline.adaptive().settings().clone();
    let budget = options.max_disagreement.unwrap_or(bench::DEFAULT_BUDGET);
    let mut reports = Vec::new();
    for (task, examples) in bench::load_examples(&data, task.as_deref(), limit)? {
        let base = GenerateOptions { task: Some(task.clone()), ..options.clone() };
        // Every model runs every strategy, each adaptive one with its own estimator.
        let mut contenders: Vec<bench::Contender> = (0..models.len())
            .flat_map(|model| bench::contenders(&base, fixed, &bmm, budget).into_iter().map(move |c| bench::Contender { model, ..c }))
            .collect();
        if let Some(names) = &only {
            let names: Vec<&str> = names.split(',').map(str::trim).collect();
            if let Some(bad) = names.iter().find(|n| !contenders.iter().any(|c| c.name == **n)) {
                let known: Vec<&str> = contenders.iter().map(|c| c.name).collect();
                return Err(format!("--only: no strategy {bad:?}; the bench knows {}", known.join(", ")));
            }
            contenders.retain(|c| c.name == "full" || names.contains(&c.name));
        }
        let report = bench::run_task(&models, &task, &examples, &mut contenders, true)?;
        out!("{}", bench::table(&report));
        reports.push(report);
        // Rewritten after each task, so a later failure keeps what was measured.
        if let Some(out) = &out {
            out.write(serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?.as_bytes())?;
        }
    }
    if let Some(out) = out {
        eprintln!("wrote {}", out.path().display());
    }
    Ok(())
}
