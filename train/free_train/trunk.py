"""The training line's trunk: the un-annealed model that training always continues from.

    python -m free_train.trunk save RUN_DIR [--out models/trunk]   # commit-sized copy of the run
    python -m free_train.trunk show [models/trunk]

The demo model is trained as one continuous line (warm-up once, then a constant rate) across
sessions and machines. Re-warming an annealed snapshot cost earlier runs 0.07-0.16 nats of
validation loss and 4-9M tokens to win back; continuing an un-annealed one does not. So the
line itself (the trunk) is committed, never a decayed branch of it; the shipped model is a
branch (a cooldown or an average) that never becomes the trunk.

A trunk folder is an exported model (config.json, model.safetensors in f16, tokenizer.json,
free.json: the Rust engine and transformers load it as is) plus trunk.json: the run's settings,
the step, token count and data position, and the last validation before the save. The
optimizer's state goes with it only when it is small (Adafactor's factored moments, a few MiB);
AdamW's two full-size moments (2x the f32 weights) are not committed, and a resume re-warms a
fresh optimizer over a hundred steps instead (measured on this line: no rise).

`python -m free_train.train --run-dir RUN --resume --from-trunk models/trunk` continues from the
trunk when RUN has no checkpoint or an older one: weights, settings and data position.
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from .atomic import refuse_overwriting_inputs, replacing_dir, write_text

MANIFEST = "trunk.json"
OPTIMIZER = "optimizer.safetensors"
FORMAT = 1
OPTIMIZER_LIMIT_MIB = 8.0
DEFAULT_DIR = "models/trunk"  # beside the shipped model: weights live under models/


def read_manifest(trunk_dir: str) -> dict:
    path = os.path.join(trunk_dir, MANIFEST)
    if not os.path.exists(path):
        raise SystemExit(f"--from-trunk: {path} does not exist; a trunk is written by "
                         "`python -m free_train.trunk save RUN_DIR`")
    with open(path) as f:
        man = json.load(f)
    if man.get("format") != FORMAT:
        raise SystemExit(f"{path}: trunk format {man.get('format')!r}, this trainer reads {FORMAT}")
    return man


def load_trunk(trunk_dir: str) -> dict:
    """The trunk's saved state in the shape train.py resumes from: args, state, optimizer."""
    man = read_manifest(trunk_dir)
    opt = None
    if man.get("optimizer_state"):
        from safetensors.torch import load_file
        opt = unflatten_optimizer(man["optimizer_state"], load_file(os.path.join(trunk_dir, OPTIMIZER)))
    return {"args": man["args"], "state": man["state"], "optimizer": opt, "torch_rng": None}


def flatten_optimizer(sd: dict) -> tuple[dict, dict]:
    """An optimizer state_dict as (JSON-able skeleton, tensors by name), so it can be stored
    as safetensors instead of a pickle."""
    tensors, state = {}, {}
    for pid, entry in sd["state"].items():
        state[str(pid)] = {}
        for k, v in entry.items():
            if torch.is_tensor(v):
                name = f"{pid}.{k}"
                tensors[name] = v.detach().cpu().contiguous()
                state[str(pid)][k] = {"tensor": name}
            else:
                state[str(pid)][k] = v
    return {"state": state, "param_groups": sd["param_groups"]}, tensors


def unflatten_optimizer(skeleton: dict, tensors: dict) -> dict:
    state = {int(pid): {k: tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v
                        for k, v in entry.items()}
             for pid, entry in skeleton["state"].items()}
    return {"state": state, "param_groups": skeleton["param_groups"]}


def last_validation(run_dir: str, step: int) -> dict | None:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    last = None
    with open(path) as f:
        for rec in map(json.loads, f):
            if rec.get("kind") == "val" and rec["step"] <= step:
                last = rec
    return last


def save_trunk(run_dir: str, out_dir: str, optimizer_limit_mib: float = OPTIMIZER_LIMIT_MIB) -> dict:
    """Write RUN_DIR/checkpoint as a trunk folder, atomically (a stop mid-way leaves the old one)."""
    from safetensors.torch import save_file
    from .export import export
    ckpt = os.path.join(run_dir, "checkpoint")
    args_path, metrics_path = os.path.join(run_dir, "args.json"), os.path.join(run_dir, "metrics.jsonl")
    # The trunk folder is replaced whole: --out RUN_DIR would delete the run.
    refuse_overwriting_inputs([("--out", out_dir)], [("the run's checkpoint", ckpt), ("its settings", args_path),
                                                     ("its metrics", metrics_path)])
    ts_path = os.path.join(ckpt, "trainer_state.pt")
    if not os.path.exists(ts_path):
        raise SystemExit(f"{ckpt} has no trainer_state.pt: nothing to save as a trunk")
    ts = torch.load(ts_path, weights_only=False)
    with open(args_path) as f:
        args = json.load(f)
    skeleton, tensors = flatten_optimizer(ts["optimizer"])
    mib = sum(t.numel() * t.element_size() for t in tensors.values()) / 2**20
    keep_opt = mib <= optimizer_limit_mib
    state = {k: v for k, v in ts["state"].items() if k != "best_val"}
    man = {"format": FORMAT, "args": args, "state": state,
           "optimizer_state": skeleton if keep_opt else None,
           "optimizer_note": (f"{args['optimizer']} state, {mib:.1f} MiB, in {OPTIMIZER}" if keep_opt else
                              f"{args['optimizer']} state ({mib:.0f} MiB) not kept: a resume re-warms a fresh "
                              f"optimizer over --rewarm steps"),
           "last_validation": last_validation(run_dir, state["step"])}
    with replacing_dir(out_dir) as tmp:
        export(run_dir, tmp, which="checkpoint", dtype="f16", shallow_exit_layer=args["shallow_exit_layer"])
        if keep_opt:
            save_file(tensors, os.path.join(tmp, OPTIMIZER))
        write_text(os.path.join(tmp, MANIFEST), json.dumps(man, indent=1) + "\n")
    return man


def describe(man: dict) -> str:
    st, v = man["state"], man.get("last_validation") or {}
    val = (f"validation S {v['all_ce_shallow']:.4f} L {v['all_ce_deep']:.4f} at step {v['step']}"
           if v else "no validation recorded")
    a = man["args"]
    return (f"step {st['step']}, {st['tokens'] / 1e6:.2f}M tokens, epoch {st['epoch']} batch {st['batch_in_epoch']}; "
            f"{val}; {a['optimizer']} lr {a['lr']} {a['schedule']}; {man['optimizer_note']}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m free_train.trunk", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save", help="write a run's latest checkpoint as the trunk")
    s.add_argument("run_dir")
    s.add_argument("--out", default=DEFAULT_DIR)
    s = sub.add_parser("show", help="print what a trunk holds")
    s.add_argument("trunk_dir", nargs="?", default=DEFAULT_DIR)
    a = ap.parse_args(argv)
    if a.cmd == "save":
        man = save_trunk(a.run_dir, a.out)
        size = os.path.getsize(os.path.join(a.out, "model.safetensors"))
        print(f"trunk saved to {a.out} (model.safetensors {size / 2**20:.1f} MiB): {describe(man)}")
    else:
        print(describe(read_manifest(a.trunk_dir)))


if __name__ == "__main__":
    main()
