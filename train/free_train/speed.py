"""Training tokens/s of each precision setting on this machine, to choose --precision/--compile.

    python -m free_train.speed --init models/free-t5-mini [--rounds 4] [--steps 8] [--threads 2]

Runs FREE's training step (forward, backward, AdamW) on the same real batches with each
setting in turn, interleaved in rounds (the order rotates per round) (the first round is warm-up: compilation and caches),
and prints real (non-padding) tokens/s per setting. Each setting trains its own copy of the
model, so the settings see identical weights only at the start; the step's cost does not depend
on the weights' values. bf16 pays off on CPUs with AMX (and GPUs with bf16 units); without
them autocast's casts can make it slower than f32.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from .batching import collate, encode_rows, make_batches
from .data import find_split, read_jsonl
from .free import FreeObjective
from .train import compile_in_place, precision_context

SETTINGS = {"f32": ("f32", False), "bf16": ("bf16", False), "bf16+compile": ("bf16", True)}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m free_train.speed", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", required=True, help="HF T5 checkpoint folder (with tokenizer.json)")
    ap.add_argument("--data", default="data")
    ap.add_argument("--examples", type=int, default=20000, help="train examples to batch from")
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--shallow-exit-layer", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4, help="rounds of every setting; the first is not counted")
    ap.add_argument("--steps", type=int, default=8, help="steps per setting per round")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}")
    args = ap.parse_args(argv)
    from tokenizers import Tokenizer
    from transformers import T5ForConditionalGeneration

    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown setting {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    tok = Tokenizer.from_file(os.path.join(args.init, "tokenizer.json"))
    enc = encode_rows(tok, read_jsonl(find_split(args.data, "train"))[: args.examples], 256, 256)
    batches = make_batches(enc, args.batch_tokens, seed=1, epoch=0)
    runs = {}
    for name in names:
        precision, compiled = SETTINGS[name]
        model = T5ForConditionalGeneration.from_pretrained(args.init, dtype=torch.float32).train()
        if compiled:
            compile_in_place(model)
        runs[name] = {"obj": FreeObjective(model, args.shallow_exit_layer, 0.5),
                      "opt": torch.optim.AdamW(model.parameters(), lr=1e-5),
                      "autocast": precision_context("cpu", precision),
                      "tokens": 0, "seconds": 0.0}
    for rnd in range(args.rounds):
        # the order rotates per round, so no setting always runs first
        for name in names[rnd % len(names):] + names[: rnd % len(names)]:
            r = runs[name]
            for i in range(args.steps):
                # every setting gets the same batches in a round
                inp, att, lab, real = collate(enc, batches[(rnd * args.steps + i) % len(batches)])
                t = time.perf_counter()
                with r["autocast"]:
                    out = r["obj"](inp, att, lab)
                r["opt"].zero_grad(set_to_none=True)
                out.loss.backward()
                r["opt"].step()
                if rnd > 0:
                    r["tokens"] += real
                    r["seconds"] += time.perf_counter() - t
        if rnd > 0:
            print(f"after round {rnd}: " + ", ".join(
                f"{n} {runs[n]['tokens'] / runs[n]['seconds']:.0f}" for n in names) + " tokens/s", flush=True)


if __name__ == "__main__":
    main()
