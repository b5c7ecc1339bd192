"""Seeds for the safetensors fuzz target: a tiny random T5 checkpoint, small enough for
libFuzzer's input cap, saved by Hugging Face transformers in each dtype the engine reads, so
that mutated inputs start from weights that load and the target's "weights that load must
also run" path is exercised (the parity fixtures are ~1 MB, far over the cap).

Run by hand (needs torch and transformers; see scripts/setup-train.sh for a venv):
    python tools/make_fuzz_seeds.py

Writes fuzz/seeds/tiny/config.json (the config the target loads every input with) and
fuzz/corpus/safetensors/seed-tiny-{f32,f16,bf16} (model.safetensors as save_pretrained
writes it), and seed-tiny-q8: the f32 seed in the 8-bit layout, as `python -m free_train.export
--dtype q8` writes it (docs/usage.md#8-bit-checkpoints). tests/fuzz_regressions.rs checks that
each seed loads and generates, and that seed-tiny-q8 runs bit for bit as seed-tiny-f32
quantized at load.
"""

import shutil
import sys
import tempfile
from pathlib import Path

import torch
from transformers import T5Config, T5ForConditionalGeneration

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "train"))
from free_train.export import store_q8  # noqa: E402
CONFIG = dict(
    # v1.1 style (gated GELU, untied head) with heads x d_kv != d_model, to keep those paths in play.
    vocab_size=16, d_model=8, d_kv=2, num_heads=2, d_ff=8, num_layers=1, num_decoder_layers=2,
    relative_attention_num_buckets=4, relative_attention_max_distance=8,
    feed_forward_proj="gated-gelu", tie_word_embeddings=False,
    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, dropout_rate=0.0,
)
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def main():
    torch.manual_seed(7)
    model = T5ForConditionalGeneration(T5Config(**CONFIG)).eval()
    seeds = ROOT / "fuzz" / "seeds" / "tiny"
    corpus = ROOT / "fuzz" / "corpus" / "safetensors"
    seeds.mkdir(parents=True, exist_ok=True)
    corpus.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, dtype in DTYPES.items():
            out = Path(tmp) / name
            model.to(dtype).save_pretrained(out)
            shutil.copyfile(out / "model.safetensors", corpus / f"seed-tiny-{name}")
            if name == "f32":
                shutil.copyfile(out / "config.json", seeds / "config.json")
                store_q8(str(out / "model.safetensors"))
                shutil.copyfile(out / "model.safetensors", corpus / "seed-tiny-q8")
        for name in [*DTYPES, "q8"]:
            print(f"seed-tiny-{name}: {(corpus / f'seed-tiny-{name}').stat().st_size} bytes")


if __name__ == "__main__":
    main()
