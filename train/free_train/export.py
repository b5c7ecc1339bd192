"""Export a training run as the model folder the Rust engine and transformers load.

    python -m free_train.export RUN_DIR OUT_DIR [--which best|checkpoint] [--dtype f16|f32|bf16|q8]
                                [--shallow-exit-layer S] [--threshold 0.9]

Writes config.json, model.safetensors (tied weights stored once, as transformers does),
generation_config.json, tokenizer.json, free.json and checksums.json (the weights' size and
SHA-256, which the npm package checks downloads against). Each replaces its namesake in OUT_DIR
whole (written beside it first, see atomic.py); OUT_DIR's other files (a model card, logs) stay.
An OUT_DIR that is, holds or lies inside what the export reads (the run's model, tokenizer,
args.json) is refused: exporting a run into its own folder would write into it.

RUN_DIR may also be a model folder itself (config.json, model.safetensors, tokenizer.json):
`export models/free-t5-mini OUT --dtype q8` converts the shipped model, keeping its free.json
(calibration included) unless --shallow-exit-layer is given.

--dtype q8 stores every weight matrix in 8 bits (docs/usage.md#8-bit-checkpoints): a linear
layer's weight X (rows, cols) as I8 with X_scale, one f32 per row, quantized exactly as the
engine's `--dtype q8` quantizes at load; norms and position bias tables stay f32.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil

import torch

from .atomic import refuse_overwriting_inputs, replacing_files, write_text

DTYPES = {"f16": torch.float16, "f32": torch.float32, "bf16": torch.bfloat16}
# The 8-bit layout's names: X's scales are X + Q8_SCALE_SUFFIX (crate/src/weights.rs reads them).
Q8_SCALE_SUFFIX = "_scale"
Q8_METADATA = {"format": "pt", "free_wasm.weights": "q8"}


def free_settings(shallow_exit_layer: int, threshold: float = 0.9, confidence: str = "top2_gap",
                  zeta: float = 0.4, min_points: int = 50) -> dict:
    return {"shallow_exit_layer": shallow_exit_layer, "confidence": confidence,
            "threshold": threshold, "bmm": {"zeta": zeta, "min_points": min_points}}


def resolve_source(run_dir: str, which: str) -> str:
    for cand in ([which] if which != "auto" else ["best", "checkpoint"]):
        p = os.path.join(run_dir, cand)
        if os.path.exists(os.path.join(p, "config.json")):
            return p
    if os.path.exists(os.path.join(run_dir, "config.json")):
        return run_dir
    raise SystemExit(f"no model found in {run_dir} (looked for {which})")


def export(run_dir: str, out_dir: str, which: str = "auto", dtype: str = "f16",
           shallow_exit_layer: int | None = None, threshold: float = 0.9) -> str:
    from transformers import T5ForConditionalGeneration
    src = resolve_source(run_dir, which)
    args_path = os.path.join(run_dir, "args.json")
    tok_src = os.path.join(src, "tokenizer.json")
    if not os.path.exists(tok_src):
        tok_src = os.path.join(run_dir, "tokenizer.json")
    refuse_overwriting_inputs([("OUT_DIR", out_dir)], [("the model", src), ("the tokenizer", tok_src),
                                                       ("the run's settings", args_path)])
    # A model folder's own free.json travels with it, unless the exit is set anew.
    free_src = os.path.join(src, "free.json")
    free_src = free_src if shallow_exit_layer is None and not os.path.exists(args_path) and os.path.exists(free_src) else None
    if free_src:
        with open(free_src) as f:
            shallow_exit_layer = json.load(f).get("shallow_exit_layer")
    if shallow_exit_layer is None:
        if os.path.exists(args_path):
            with open(args_path) as f:
                shallow_exit_layer = json.load(f).get("shallow_exit_layer")
        if shallow_exit_layer is None:
            raise SystemExit("--shallow-exit-layer is required (no args.json in the run folder)")
    model = T5ForConditionalGeneration.from_pretrained(src, dtype=torch.float32)
    L = model.config.num_decoder_layers
    if not 1 <= shallow_exit_layer < L:
        raise SystemExit(f"shallow exit layer {shallow_exit_layer} is not in 1..{L - 1}")
    # q8 quantizes the f32 values (an f16 source's exactly, as the engine's --dtype q8 does).
    model.to(DTYPES.get(dtype, torch.float32))
    with replacing_files(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if dtype == "q8":
            store_q8(os.path.join(tmp, "model.safetensors"))
        shutil.copyfile(tok_src, os.path.join(tmp, "tokenizer.json"))
        if free_src:
            shutil.copyfile(free_src, os.path.join(tmp, "free.json"))
        else:
            write_free_json(tmp, shallow_exit_layer, threshold)
        write_checksums(tmp)
    return out_dir


def quantize_q8(w: torch.Tensor, name: str = "weight") -> tuple[torch.Tensor, torch.Tensor]:
    """A (rows, cols) weight as symmetric int8 and one f32 scale per row: what the engine's
    `Matrix::quantize_q8` (crate/src/matrix.rs) computes from the same f32 values, bit for bit.
    scale = max |w| / 127, q = round(w * (1 / scale)) clamped to +-127, each step in f32 as there;
    a row of zeros gets scale 1 (the engine keeps 0, but refuses a stored scale that is not
    positive; the row's values are 0 either way)."""
    w = w.detach().to(torch.float32)
    if not torch.isfinite(w).all():
        raise SystemExit(f"{name} holds NaN or infinite values: it cannot be stored in 8 bits")
    scale = w.abs().amax(dim=1) / 127
    inverse = torch.where(scale > 0, 1 / scale, 0.0)
    x = w * inverse[:, None]
    # torch.round rounds halves to even; Rust's f32::round rounds them away from zero. x - trunc(x)
    # is exact in f32, so the halves are found exactly (adding 0.5 and flooring would round
    # 0.49999997 up).
    whole = torch.trunc(x)
    q = torch.where((x - whole).abs() == 0.5, whole + torch.sign(x), torch.round(x))
    return q.clamp(-127, 127).to(torch.int8), torch.where(scale > 0, scale, 1.0)


def is_weight_matrix(name: str, t: torch.Tensor) -> bool:
    """A linear layer's weight or the embedding (the tied head): what q8 stores in 8 bits. The
    position bias tables are 2-D too but are gathered, not multiplied, and stay float."""
    return t.dim() == 2 and not name.endswith("relative_attention_bias.weight")


def store_q8(path: str):
    """Rewrites the f32 safetensors at path in the 8-bit layout (module docstring)."""
    from safetensors.torch import load_file, save_file
    out = {}
    for name, t in load_file(path).items():
        if is_weight_matrix(name, t):
            out[name], out[name + Q8_SCALE_SUFFIX] = quantize_q8(t, name)
        else:
            out[name] = t.to(torch.float32)
    save_file(out, path, metadata=Q8_METADATA)


def write_checksums(folder: str):
    """checksums.json: model.safetensors' size and SHA-256. Downloads of it are capped at that
    size and must match the hash, and a cached copy is told from a changed file by it (the other
    files are small, and free.json is rewritten by `free calibrate`, so only the weights are listed)."""
    path = os.path.join(folder, "model.safetensors")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    entry = {"bytes": os.path.getsize(path), "sha256": digest.hexdigest()}
    write_text(os.path.join(folder, "checksums.json"), json.dumps({"model.safetensors": entry}, indent=2) + "\n")


def write_free_json(out_dir: str, shallow_exit_layer: int, threshold: float = 0.9):
    settings = free_settings(shallow_exit_layer, threshold)
    write_text(os.path.join(out_dir, "free.json"), json.dumps(settings, indent=2) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m free_train.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--which", default="auto", choices=["auto", "best", "checkpoint"],
                    help="auto: best/ when present, else checkpoint/")
    ap.add_argument("--dtype", default="f16", choices=sorted([*DTYPES, "q8"]),
                    help="q8: weight matrices in 8 bits, one f32 scale per row (docs/usage.md#8-bit-checkpoints)")
    ap.add_argument("--shallow-exit-layer", type=int, default=None, help="default: the run's --shallow-exit-layer")
    ap.add_argument("--threshold", type=float, default=0.9)
    a = ap.parse_args(argv)
    out = export(a.run_dir, a.out_dir, a.which, a.dtype, a.shallow_exit_layer, a.threshold)
    size = os.path.getsize(os.path.join(out, "model.safetensors"))
    print(f"exported {out} (model.safetensors {size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
