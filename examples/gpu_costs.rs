//! What the WebGPU backend's operations cost on this machine's adapter: the encoder over a
//! source of N tokens (with the first decoding step), one decoding step of the whole model,
//! a deep pass (blocks S..L, as FREE's synchronisation runs them) over 1-4 rows, a decoding
//! step when each step is read back against when only every tenth is (what keeping the
//! token ids on the device could save at most), and a `full` generation token by token with
//! and without recording each step before the last one's token is read back (`Session::
//! with_run_ahead`), alternated.
//!
//!   cargo run --release --example gpu_costs [-- MODEL_DIR [SOURCE_TOKENS [ROUNDS]]]
//!
//! Defaults: models/free-t5-mini, 200 tokens, 5 rounds; medians over the rounds, each round
//! one generation. The source ids are synthetic (costs do not depend on which tokens).

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    if let Err(e) = native::run() {
        eprintln!("gpu_costs: {e}");
        std::process::exit(1);
    }
}

// `cargo test` builds examples for wasm32 too; there is nothing to time there.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::time::Instant;

    use free_wasm::backend::gpu::{Gpu, GpuModel, GpuRows, GpuState};
    use free_wasm::backend::{block_on, Backend};
    use free_wasm::config::ConfidenceMeasure;
    use free_wasm::decode::{DecodeSettings, Session, Strategy, Threshold};
    use free_wasm::pipeline::ModelDir;
    use free_wasm::{Error, Pipeline};

    type Result<T> = std::result::Result<T, Error>;

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    fn ms_since(t: Instant) -> f64 {
        t.elapsed().as_secs_f64() * 1e3
    }

    /// Embeds a token and runs `blocks` over it, recorded but not submitted.
    fn step(m: &GpuModel, st: &mut GpuState, blocks: std::ops::Range<usize>) -> Result<GpuRows> {
        let r = m.embed(st, 7)?;
        m.decode_blocks(st, blocks, r)
    }

    fn read(m: &GpuModel, st: &mut GpuState, rows: &GpuRows) -> Result<()> {
        block_on(Backend::decide(m, st, rows, None))??;
        Ok(())
    }

    pub fn run() -> Result<()> {
        let mut args = std::env::args().skip(1);
        let dir = args.next().unwrap_or_else(|| "models/free-t5-mini".into());
        let number = |arg: Option<String>, default: usize| -> Result<usize> {
            arg.map_or(Ok(default), |s| s.parse().map_err(|_| Error::InvalidInput(format!("{s:?} is not a whole number"))))
        };
        let (source_len, rounds) = (number(args.next(), 200)?, number(args.next(), 5)?.max(1));
        let gpu = block_on(Gpu::new())??;
        println!("adapter: {} (cooperative matrix kernel: {})", gpu.adapter_name(), gpu.cooperative_kernels());
        let p = Pipeline::<GpuModel>::from_files_gpu(&ModelDir::read(&dir)?.files(), gpu)?;
        let m = p.model();
        let blocks = m.num_decoder_blocks();
        let exit = p.free_config().map_or(blocks / 3, |f| f.shallow_exit_layer).max(1);
        let vocab = m.config().vocab_size as u32;
        let ids: Vec<u32> = (0..source_len as u32).map(|i| 3 + (i * 37) % (vocab - 3)).collect();

        // Milliseconds per token of a `full` generation of up to `GENERATED` tokens after the
        // first, with and without running ahead (a step run ahead past EOS counts).
        const GENERATED: usize = 32;
        let generation = |ahead: bool| -> Result<f64> {
            let settings = DecodeSettings { strategy: Strategy::Full, measure: ConfidenceMeasure::Top2Gap, max_new_tokens: GENERATED };
            let state = m.start(&ids)?;
            let mut s = Session::new(m, state, settings, Threshold::Fixed(1.0))?.with_run_ahead(Some(ahead));
            s.step()?; // the encoder's launches go with the first step
            let t = Instant::now();
            while s.finished().is_none() {
                s.step()?;
            }
            Ok(ms_since(t) / (s.trace().len() - 1).max(1) as f64)
        };
        let (mut ahead, mut behind) = (Vec::new(), Vec::new());
        let (mut encoder, mut each, mut tenth) = (Vec::new(), Vec::new(), Vec::new());
        let mut deep = vec![Vec::new(); 4];
        for _ in 0..rounds {
            behind.push(generation(false)?);
            ahead.push(generation(true)?);
            let t = Instant::now();
            let mut st = m.start(&ids)?;
            let r = step(m, &mut st, 0..blocks)?;
            read(m, &mut st, &r)?;
            encoder.push(ms_since(t));

            let t = Instant::now();
            for _ in 0..10 {
                let r = step(m, &mut st, 0..blocks)?;
                read(m, &mut st, &r)?;
            }
            each.push(ms_since(t) / 10.0);
            let t = Instant::now();
            let mut last = None;
            for _ in 0..10 {
                last = Some(step(m, &mut st, 0..blocks)?);
            }
            read(m, &mut st, &last.expect("ten steps"))?;
            tenth.push(ms_since(t) / 10.0);

            for (g, times) in deep.iter_mut().enumerate() {
                let mut rows = Vec::new();
                for _ in 0..=g {
                    let r = step(m, &mut st, 0..exit)?;
                    read(m, &mut st, &r)?;
                    rows.push(r);
                }
                let joined = Backend::join(m, &rows.iter().collect::<Vec<_>>())?;
                let t = Instant::now();
                let r = m.decode_blocks(&mut st, exit..blocks, joined)?;
                read(m, &mut st, &r)?;
                times.push(ms_since(t));
            }
        }
        println!("encoder over {source_len} tokens + first step: {:.1} ms", median(encoder));
        println!("decoding step (blocks 0..{blocks}), read back every step: {:.2} ms", median(each));
        println!("decoding step, read back every tenth step: {:.2} ms", median(tenth));
        let deep: Vec<String> = deep.into_iter().enumerate().map(|(g, t)| format!("{} rows {:.2} ms", g + 1, median(t))).collect();
        println!("deep pass (blocks {exit}..{blocks}) with its head: {}", deep.join(", "));
        println!("full generation, per token: {:.2} ms waiting for each token, {:.2} ms running a step ahead", median(behind), median(ahead));
        Ok(())
    }
}
