"""Export a training run as the model folder the Rust engine and transformers load.

    python -m free_train.export RUN_DIR OUT_DIR [--which best|checkpoint] [--dtype f16|f32|bf16]
                                [--shallow-exit-layer S] [--threshold 0.9]

Writes config.json, model.safetensors (tied weights stored once, as transformers does),
generation_config.json, tokenizer.json, free.json and checksums.json (the weights' size and
SHA-256, which the npm package checks downloads against). Each replaces its namesake in OUT_DIR
whole (written beside it first, see atomic.py); OUT_DIR's other files (a model card, logs) stay.
An OUT_DIR that is, holds or lies inside what the export reads (the run's model, tokenizer,
args.json) is refused: exporting a run into its own folder would write into it.
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
    model.to(DTYPES[dtype])
    with replacing_files(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.copyfile(tok_src, os.path.join(tmp, "tokenizer.json"))
        write_free_json(tmp, shallow_exit_layer, threshold)
        write_checksums(tmp)
    return out_dir


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
    ap.add_argument("--dtype", default="f16", choices=sorted(DTYPES))
    ap.add_argument("--shallow-exit-layer", type=int, default=None, help="default: the run's --shallow-exit-layer")
    ap.add_argument("--threshold", type=float, default=0.9)
    a = ap.parse_args(argv)
    out = export(a.run_dir, a.out_dir, a.which, a.dtype, a.shallow_exit_layer, a.threshold)
    size = os.path.getsize(os.path.join(out, "model.safetensors"))
    print(f"exported {out} (model.safetensors {size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
