"""A GPU burst of the training line: a few minutes of large-batch training on a lent GPU.

    bash train/gpu-burst.sh [--budget 420] [--out DIR] [flags...]     # runs python -m free_train.burst
    python -m free_train.burst merge PARTS_DIR [--trunk-out models/trunk] [--export models/NAME]

Why: a GPU (one H200) is lent to this project rarely, for about 15 minutes including its start
and without network. The burst continues the committed trunk (models/trunk, written by `python -m
free_train.trunk save`) with the line's settings for a wall-clock --budget and
writes the weights as safetensors parts of at most --part-mib each, every --save-every seconds
and at the end. Each write is atomic and the previous complete set is deleted only after the
new one is whole, so a kill at any moment leaves usable weights. `merge` turns the newest
complete set back into a trunk folder (and optionally a model export) on the CPU machine; the
optimizer is not kept (the CPU line re-warms a fresh one anyway, see free_train.trunk).

What keeps the GPU busy:
* data: tokenized once up front, then padded into a few fixed shapes (Buckets: sources to a
  multiple of --src-step, targets of --tgt-step, a fixed row count per shape so a step holds
  about --batch-tokens padded tokens) that stay on the GPU; a step is an index_select;
* no host synchronisation per step: FreeObjective's sync_free path, clipping's norm kept on
  the device, the step's figures summed on the device and read every --read-every seconds,
  where a non-finite loss stops the run before anything is written; on CUDA the second step
  runs under torch.cuda.set_sync_debug_mode and the log says how many syncs it made;
* bf16 autocast over f32 master weights, the line's optimizer with its parameter groups
  (free_train.train.param_groups): Adafactor (free_train.adafactor, written without host
  syncs) or fused AdamW; the line's rate scaled for the larger batch (--lr-scaling: by default
  sqrt(batch tokens / the line's batch tokens), the usual rule for adaptive optimizers) and
  warmed up over --warmup steps, as every fresh optimizer on this line is;
* --dropout for the burst (a merge hands it on to the line) and --keep-best, which writes a
  set only when the deep exit validates below every earlier figure: at the GPU's rate a burst
  passes over the ~10M-token data many times and may overfit, and the set left is the best;
* torch.compile only with --compile: compiling T5's forward and backward costs a minute or
  more of a 7-minute budget, recompiles as the shapes change and again for validation, and
  has never run on the GPU; a burst must work the first time. The eager tokens/s in the log
  is the figure a later burst with --compile has to beat.

Validation (both exits on all of data/validation.jsonl with free_train.train.evaluate, in
f32, so the figures are the CPU's for the same weights) runs before the first step, at every
save and after the last step.

Several GPUs: `torchrun --standalone --nproc_per_node N -m free_train.burst --trunk DIR ...` (or
NPROC=N bash train/gpu-burst.sh) runs N ranks under DistributedDataParallel
(free_train.distributed: NCCL on GPUs, gloo on CPUs). A step takes N x --accumulate consecutive
batches of the epoch's order, rank r those at p+r, p+r+N, ...; DDP averages the gradients during
the backward (bucketed all-reduces, no host sync), so one process with --accumulate N takes the
same steps; the rate is scaled to the global batch. DDP and not a hand-written all-reduce: the
step is eager (--compile compiles the encoder and decoder inside the wrapper), and DDP overlaps
the all-reduces with the backward. The ranks' clocks differ, so they meet only at checks placed
by step count (train_loop), where one all-reduce carries the figures and rank 0's decisions
(stop, save, the next check). Rank 0 alone validates (the start's check included), logs and
writes the parts; the others wait at a barrier; at every save the ranks compare digests of
their weights. Without torchrun nothing of this runs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import signal
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata

T0 = time.time()  # before the heavy imports: a burst pays for them too

# Floors: train/pyproject.toml's, torch raised to 2.4 (fused AdamW over parameter groups, CUDA's
# sync debug mode). Checked on the CPU with torch 2.15 and transformers 5.17 and 5.23; the device
# image has torch 2.11 and transformers 5.17.
REQUIRES = {"torch": (2, 4), "transformers": (5, 0), "tokenizers": (0, 20), "safetensors": (0, 4),
            "numpy": (1, 24)}
REQUIRES_TEXT = ", ".join(f"{k}>={'.'.join(map(str, v))}" for k, v in REQUIRES.items())

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from safetensors import safe_open
    from safetensors.torch import save as safetensors_bytes

    from . import PAD_ID, TASK_PREFIXES
    from .atomic import refuse_overwriting_inputs, replacing_dir, write_bytes, write_text
    from .batching import collate, encode_rows
    from .data import find_split, read_jsonl
    from .distributed import Dist, QuietLog
    from .export import export, write_checksums, write_free_json
    from .free import FreeObjective
    from .train import (Logger, build_parser, compile_in_place, evaluate, fmt_time, lr_at, make_optimizer,
                        param_groups, precision_context, run_args, set_dropout, set_lr)
    from .trunk import DEFAULT_DIR as TRUNK, FORMAT, MANIFEST, describe, read_manifest
except ImportError as e:
    raise SystemExit(f"free_train.burst: {e}. It needs Python>=3.10, {REQUIRES_TEXT}.")
IMPORT_SECONDS = time.time() - T0

PART_PREFIX = "burst-"
RECORD_FORMAT = 1
STATS = ("loss", "ce_shallow", "ce_deep", "kd", "gnorm")


# ------------------------------------------------------------- arguments ---

def build_burst_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m free_train.burst", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    # --trunk: torchrun's parser would take --start for an abbreviation of its --start-method
    ap.add_argument("--start", "--trunk", dest="start", default=None,
                    help=f"trunk folder (default: {TRUNK}); under torchrun spell it --trunk")
    ap.add_argument("--data", default="data")
    ap.add_argument("--out", default=None,
                    help="folder for the parts and the log (default: $OUT/burst when OUT is set, else train/runs/burst)")
    ap.add_argument("--budget", type=float, default=420,
                    help="wall seconds from the first step to the last (periodic saves included; setup and the "
                         "first and last validation not)")
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--dry-run", action="store_true",
                    help="the whole path in seconds: 2 steps, 2000 train and 20 validation examples per task")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--precision", default=None, choices=["bf16", "f32"],
                    help="default: bf16 (autocast) on cuda, f32 elsewhere (bf16 autocast is slow on most CPUs)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the encoder and decoder (see above)")
    g = ap.add_argument_group("batches")
    g.add_argument("--batch-tokens", type=int, default=65536, help="padded source+target tokens per step")
    g.add_argument("--src-step", type=int, default=32, help="sources are padded to a multiple of this")
    g.add_argument("--tgt-step", type=int, default=32, help="targets are padded to a multiple of this")
    g.add_argument("--limit-train", type=int, default=0, help="only the first N train examples")
    g.add_argument("--limit-val", type=int, default=0, help="only the first N validation examples per task")
    g.add_argument("--eval-batch-tokens", type=int, default=0, help="default: --batch-tokens")
    g.add_argument("--accumulate", type=int, default=1, metavar="K",
                   help="batches per rank and step, their gradients summed with each loss weighted 1/K: a step "
                        "takes ranks x K batches of the epoch's order (under torchrun: one process per device)")
    g = ap.add_argument_group("rate")
    g.add_argument("--lr", type=float, default=0, help="peak rate (default: the line's, scaled by --lr-scaling)")
    g.add_argument("--lr-scaling", default="sqrt", choices=["sqrt", "linear", "none"],
                   help="the line's rate times (batch tokens / the line's batch tokens) ** 0.5, ** 1 or ** 0")
    g.add_argument("--warmup", type=int, default=100, help="steps over which the fresh optimizer's rate ramps up")
    g = ap.add_argument_group("regularisation")
    g.add_argument("--dropout", type=float, default=None,
                   help="dropout rate for the burst (default: the line's); a merge hands it on to the line")
    g = ap.add_argument_group("output")
    g.add_argument("--read-every", type=float, default=15, help="seconds between reads of the figures (a sync)")
    g.add_argument("--save-every", type=float, default=90, help="seconds between saves (each one validates)")
    g.add_argument("--keep-best", action="store_true",
                   help="write a set only when the deep exit's validation is below every earlier one (the "
                        "start's included): many passes over the data can overfit, and the set left is the best")
    g.add_argument("--part-mib", type=float, default=16, help="largest part file")
    return ap


def parse_burst_args(argv) -> argparse.Namespace:
    ap = build_burst_parser()
    args = ap.parse_args(argv)
    if args.accumulate < 1:
        ap.error("--accumulate must be at least 1")
    if args.dry_run:
        args.max_steps = args.max_steps or 2
        args.limit_train = args.limit_train or 2000
        args.limit_val = args.limit_val or 20
    if args.out is None:
        args.out = os.path.join(os.environ["OUT"], "burst") if os.environ.get("OUT") else "train/runs/burst"
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.precision = args.precision or ("bf16" if args.device.startswith("cuda") else "f32")
    args.eval_batch_tokens = args.eval_batch_tokens or args.batch_tokens
    return args


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0])[:3])


def check_requirements(args) -> dict:
    """Fail before any work when the machine lacks something; returns the versions found."""
    problems, found = [], {}
    if sys.version_info < (3, 10):
        problems.append(f"Python {sys.version.split()[0]} < 3.10")
    for name, least in REQUIRES.items():
        found[name] = metadata.version(name)
        if version_tuple(found[name]) < least:
            problems.append(f"{name} {found[name]} < {'.'.join(map(str, least))}")
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            problems.append(f"--device {args.device} but torch {torch.__version__} sees no CUDA device")
        elif args.precision == "bf16" and not torch.cuda.is_bf16_supported():
            problems.append("this GPU has no bf16: use --precision f32")
    if problems:
        raise SystemExit("free_train.burst cannot run here: " + "; ".join(problems))
    return found


# ----------------------------------------------------------------- start ---

@dataclass
class Start:
    """What the burst continues: the folder, the line's train.py settings and position, the
    bursts already on record."""
    dir: str
    settings: dict
    state: dict
    bursts: list


def find_start(path: str | None) -> Start:
    path = path or TRUNK
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        raise SystemExit(f"--start {path}: no model.safetensors there")
    man = read_manifest(path)  # refuses a folder without trunk.json, saying how to write one
    # older trunks lack the newer options: train.py's defaults fill them in, as its resume does
    settings = {**run_args(build_parser().parse_args(["--run-dir", "train/runs/trunk"])), **man["args"]}
    return Start(path, settings, man["state"], man.get("bursts", []))


def sha256_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load_model(start: Start, device):
    from transformers import T5ForConditionalGeneration
    # f32 master weights whatever the folder stores (f16): bf16 autocast computes in bf16 on top
    model = T5ForConditionalGeneration.from_pretrained(start.dir, dtype=torch.float32)
    set_dropout(model, start.settings["dropout"])
    return model.to(device).train()


# ------------------------------------------------------------------ data ---

def round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def fold_small_shapes(groups: dict, rows_of, largest: tuple) -> dict:
    """Move the examples of each shape too rare to fill one batch into the smallest larger shape
    that fills one (else into the largest shape), so no batch repeats an example and the shapes
    stay few."""
    size = lambda k: (k[0] + k[1], k)  # noqa: E731
    for key in sorted(groups, key=size):
        if key == largest or len(groups[key]) >= rows_of(key):
            continue
        into = min((k for k in groups if k != key and k[0] >= key[0] and k[1] >= key[1]
                    and len(groups[k]) >= rows_of(k)), key=size, default=largest)
        groups.setdefault(into, []).extend(groups.pop(key))
    return groups


class Buckets:
    """The training set on the device, padded into a few fixed shapes (source length, target
    length), each with a fixed number of rows per batch. Every example is in one shape."""

    def __init__(self, enc, batch_tokens: int, src_step: int, tgt_step: int, max_source: int, max_target: int, device):
        groups = {}
        for i, (s, t) in enumerate(zip(enc.source, enc.target)):
            groups.setdefault((round_up(len(s), src_step), round_up(len(t), tgt_step)), []).append(i)
        rows_of = lambda k: max(1, batch_tokens // (k[0] + k[1]))  # noqa: E731
        groups = fold_small_shapes(groups, rows_of, (round_up(max_source, src_step), round_up(max_target, tgt_step)))
        self.device = device
        self.shapes = sorted(groups)
        # only the largest shape can hold fewer examples than its row count
        self.rows = [min(rows_of(k), len(groups[k])) for k in self.shapes]
        self.real = [np.array([len(enc.source[i]) + len(enc.target[i]) for i in groups[k]]) for k in self.shapes]
        self.tensors = [self._padded(enc, groups[k], k) for k in self.shapes]

    def _padded(self, enc, idx: list[int], shape: tuple[int, int]):
        inp, att, lab, _ = collate(enc, idx)  # padded to the group's longest, then to the shape
        src_pad, tgt_pad = shape[0] - inp.size(1), shape[1] - lab.size(1)
        return (F.pad(inp, (0, src_pad), value=PAD_ID).to(self.device),
                F.pad(att, (0, src_pad), value=0).to(self.device),
                F.pad(lab, (0, tgt_pad), value=-100).to(self.device))

    def describe(self) -> str:
        steps = sum(-(-len(r) // n) for r, n in zip(self.real, self.rows))
        padded = sum(-(-len(r) // n) * n * sum(k) for r, n, k in zip(self.real, self.rows, self.shapes))
        real = sum(int(r.sum()) for r in self.real)
        return (f"{len(self.shapes)} shapes, {steps} steps/epoch, {real / padded:.0%} of the padded positions real "
                f"({real / 1e6:.2f}M tokens/epoch)")

    def epoch(self, seed: int, start_step: int, epoch: int) -> "EpochOrder":
        """The epoch's batches in a random order: each shape's examples shuffled, the last batch
        filled up from the start of that order so every batch of a shape has its row count. The
        line's step at the burst's start is in the seed: each burst has its own orders."""
        rng = np.random.default_rng([seed, start_step, epoch])
        batches, order, real = [], [], []
        for b, rows in enumerate(self.rows):
            n = len(self.real[b])
            nb = -(-n // rows)
            idx = rng.permutation(n)[np.arange(nb * rows) % n]
            order.append(self._to_device(idx))
            batches += [(b, k * rows) for k in range(nb)]
            real += self.real[b][idx].reshape(nb, rows).sum(1).tolist()
        perm = rng.permutation(len(batches))
        return EpochOrder([batches[i] for i in perm], order, [real[i] for i in perm])

    def _to_device(self, idx):
        t = torch.from_numpy(idx)
        # pinned and non-blocking: a plain copy to the GPU waits for all queued work
        return t.pin_memory().to(self.device, non_blocking=True) if self.device.type == "cuda" else t

    def batch(self, order: "EpochOrder", k: int):
        """(input_ids, attention_mask, labels, real tokens) of the epoch's k-th batch."""
        b, start = order.batches[k]
        idx = order.index[b][start:start + self.rows[b]]
        return (*(t.index_select(0, idx) for t in self.tensors[b]), order.real[k])


@dataclass
class EpochOrder:
    batches: list  # (shape, offset into index[shape]) per batch, in training order
    index: list  # per shape: example indices on the device, batch after batch
    real: list  # per batch: real (non-padding) tokens, known on the host


def first_per_task(rows: list[dict], n: int) -> list[dict]:
    return [r for t in TASK_PREFIXES for r in [x for x in rows if x["task"] == t][:n]] if n else rows


def load_data(args, settings: dict, tok, device, log):
    t = time.time()
    rows = read_jsonl(find_split(args.data, "train"))
    rows = rows[: args.limit_train] if args.limit_train else rows
    val_rows = first_per_task(read_jsonl(find_split(args.data, "validation")), args.limit_val)
    t_read = time.time()
    enc = encode_rows(tok, rows, settings["max_source_len"], settings["max_target_len"],
                      max_summarize_source=settings["max_summarize_source"])
    venc = encode_rows(tok, val_rows, settings["max_source_len"], settings["max_target_len"])
    t_tok = time.time()
    data = Buckets(enc, args.batch_tokens, args.src_step, args.tgt_step, settings["max_source_len"],
                   settings["max_target_len"], device)
    log(f"data: {len(enc.source)} train examples (dropped {enc.dropped}), {len(venc.source)} validation; "
        f"{data.describe()}; read {t_read - t:.1f}s, tokenized {t_tok - t_read:.1f}s, "
        f"on the {device.type} {time.time() - t_tok:.1f}s")
    return data, venc


# -------------------------------------------------------------- training ---

@dataclass
class Progress:
    """The burst's own count; the line's step and tokens are the start's plus these."""
    step: int = 0
    tokens: int = 0
    epoch: int = 0
    batch: int = 0  # position in the epoch's order
    seconds: float = 0.0  # of training: the periodic validations and saves not counted


def peak_lr(args, settings: dict, per_step: int = 1) -> float:
    """--lr, else the line's rate scaled to the step's global batch: per_step (ranks x
    --accumulate) batches of --batch-tokens."""
    if args.lr:
        return args.lr
    power = {"sqrt": 0.5, "linear": 1.0, "none": 0.0}[args.lr_scaling]
    return settings["lr"] * (args.batch_tokens * per_step / settings["batch_tokens"]) ** power


def make_burst_optimizer(model, settings: dict, lr: float, device):
    """The line's optimizer at the burst's rate: Adafactor (free_train.adafactor: no host sync in
    a step) as train.make_optimizer builds it, or AdamW, fused on CUDA."""
    if settings["optimizer"].startswith("adafactor"):
        return make_optimizer(model, argparse.Namespace(**{**settings, "lr": lr}))
    groups = param_groups(model, argparse.Namespace(**settings))
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, settings["beta2"]), eps=1e-8,
                             fused=device.type == "cuda")


def describe_optimizer(opt, settings: dict) -> str:
    if settings["optimizer"].startswith("adafactor"):
        return f"Adafactor ({settings['optimizer']}, sync-free)"
    return f"AdamW{' fused' if opt.defaults.get('fused') else ''} betas (0.9, {settings['beta2']})"


def train_step(forward, opt, batches: list, lr: float, settings: dict, autocast, dist: Dist) -> torch.Tensor:
    """One update from this process's batches of the step (K with --accumulate K, each loss
    weighted 1/K; under torchrun DDP averages the gradients over the ranks during the last
    batch's backward, without a host sync). Returns the mean of the batches' loss, CE shallow,
    CE deep and KD, and the gradient norm (the same on every rank), as one device tensor:
    nothing is read back."""
    set_lr(opt, lr)
    opt.zero_grad(set_to_none=True)
    k, figs = len(batches), None
    for i, (inp, att, lab, _) in enumerate(batches):
        with dist.gradient_sync(forward, sync=i == k - 1):
            with autocast:
                out = forward(inp, att, lab, label_smoothing=settings["label_smoothing"], sync_free=True)
            (out.loss if k == 1 else out.loss / k).backward()
        f = torch.stack([out.loss.detach(), out.ce_shallow.detach(), out.ce_deep.detach(), out.kd.detach()])
        figs = f if figs is None else figs + f
    params = [p for g in opt.param_groups for p in g["params"]]
    # the norm stays a device tensor; clip_grad_norm_ scales by min(1, clip/norm) without a branch
    gnorm = (torch.nn.utils.clip_grad_norm_(params, settings["clip"]) if settings["clip"] > 0
             else torch.zeros((), device=out.loss.device))
    opt.step()
    return torch.cat([figs if k == 1 else figs / k, gnorm.detach().reshape(1)])


@contextmanager
def count_syncs(device, enabled: bool):
    """With enabled on CUDA: the messages of the host synchronisations CUDA reports inside the
    block (torch.cuda.set_sync_debug_mode); otherwise None."""
    if not (enabled and device.type == "cuda"):
        yield None
        return
    caught = []
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield caught
        finally:
            torch.cuda.set_sync_debug_mode("default")
            # torch's notice that the debug mode is a prototype says "Synchronization" too: not a sync
            caught += [str(w.message) for w in rec
                       if "synchroniz" in str(w.message) and "prototype feature" not in str(w.message)]


def check_sync_free(obj, batch, tol: float = 1e-4) -> float:
    """The sync-free objective against the plain one on a few rows of a real batch (f32, no
    gradient): proves the 4-D mask path under this machine's transformers."""
    inp, att, lab, _ = (t[:8] if torch.is_tensor(t) else t for t in batch)
    was_training = obj.model.training
    obj.model.eval()  # dropout would make the two passes differ
    try:
        with torch.no_grad():
            diff = float((obj(inp, att, lab, sync_free=True).loss - obj(inp, att, lab).loss).abs())
    finally:
        obj.model.train(was_training)
    if not diff <= tol:
        raise SystemExit(f"the sync-free objective differs from free.py's by {diff:.2e} (> {tol}): "
                         "transformers' mask handling changed; do not train with it")
    return diff


class Recorder:
    """The burst's record (what every part carries and merge reads) and the log."""

    def __init__(self, args, start: Start, log, versions: dict, device_name: str, lr: float, tok_sha: str,
                 ranks: int = 1):
        self.log, self.start = log, start
        self.record = {"format": RECORD_FORMAT,
                       "start": {"dir": start.dir, "state": start.state, "tokenizer_sha256": tok_sha},
                       "settings": start.settings, "bursts_before": start.bursts,
                       "burst": {**vars(args), "ranks": ranks, "peak_lr": lr, "device_name": device_name,
                                 "versions": versions},
                       "step": 0, "tokens": 0, "seconds": 0.0, "position": None, "validation": []}

    def line(self, p: Progress) -> tuple[int, int]:
        """The line's step and tokens at the burst's progress p."""
        return self.start.state["step"] + p.step, self.start.state["tokens"] + p.tokens

    def validation(self, res: dict, p: Progress, when: str, seconds: float):
        step, tokens = self.line(p)
        rec = {"kind": "val", "step": step, "tokens": tokens, "burst_step": p.step,
               **{f"{k}_{m}": v[m] for k, v in res.items() for m in ("ce_shallow", "ce_deep")}}
        self.record["validation"].append(rec)
        self.log.record(**rec)
        parts = " ".join(f"{k}: S {v['ce_shallow']:.3f} L {v['ce_deep']:.3f}" for k, v in res.items() if k != "all")
        self.log(f"validation {when} (burst step {p.step}, line step {step}): S {res['all']['ce_shallow']:.4f} "
                 f"L {res['all']['ce_deep']:.4f} | {parts} ({seconds:.1f}s)")

    def figures(self, fig: dict, p: Progress, lr: float, rate: float):
        step, tokens = self.line(p)
        self.log(f"step {p.step} | ep {p.epoch} | {p.tokens / 1e6:.2f}M tok | loss {fig['loss']:.4f} "
                 f"(S {fig['ce_shallow']:.4f} L {fig['ce_deep']:.4f} kd {fig['kd']:.4f}) | gnorm {fig['gnorm']:.2f} | "
                 f"lr {lr:.2e} | {rate:.0f} tok/s | {fmt_time(p.seconds)}")
        self.log.record(kind="train", step=step, tokens=tokens, burst_step=p.step, lr=lr, tok_per_s=rate, **fig)

    def at(self, p: Progress, order: EpochOrder) -> dict:
        """The record as of progress p (the data position is the burst's own epoch order)."""
        self.record.update(step=p.step, tokens=p.tokens, seconds=p.seconds,
                           position={"epoch": p.epoch, "batch": p.batch, "batches_in_epoch": len(order.batches)})
        return self.record


@dataclass
class Run:
    """What a burst's loop works with."""
    args: argparse.Namespace
    settings: dict
    device: torch.device
    model: torch.nn.Module
    obj: FreeObjective
    opt: torch.optim.Optimizer
    schedule: argparse.Namespace  # for train.lr_at: constant after --warmup
    data: Buckets
    venc: object
    rec: Recorder
    dist: Dist
    forward: object = None  # the training loss: obj, or obj inside DDP under torchrun (run_burst sets it)

    def validate(self, p: Progress, when: str):
        t = time.time()
        res = evaluate(self.obj, self.venc, self.args.eval_batch_tokens, self.device)  # f32: no autocast
        self.rec.validation(res, p, when, time.time() - t)

    def save(self, p: Progress, order: EpochOrder):
        if self.args.keep_best:
            vals = self.rec.record["validation"]
            if not vals or vals[-1]["burst_step"] != p.step:
                self.rec.log(f"--keep-best: burst step {p.step} not written (not validated)")
                return
            best = min(v["all_ce_deep"] for v in vals[:-1])
            if vals[-1]["all_ce_deep"] >= best:
                self.rec.log(f"--keep-best: burst step {p.step} not written (deep validation "
                             f"{vals[-1]['all_ce_deep']:.4f}, best {best:.4f})")
                return
        write_parts(self.args.out, self.model, self.rec.at(p, order), self.args.part_mib, self.rec.log)


def setup(args, versions: dict, t0: float, dist: Dist) -> Run:
    device = dist.start(args.device)  # under torchrun cuda:LOCAL_RANK (NCCL) or the CPU (gloo)
    os.makedirs(args.out, exist_ok=True)
    if any(f.startswith(PART_PREFIX) for f in os.listdir(args.out)):
        # merge takes the newest set in a folder: an older burst's would stand in for a failed new one
        raise SystemExit(f"{args.out} holds parts of an earlier burst: merge or move them, or give another --out")
    log = Logger(args.out) if dist.is_main else QuietLog()
    start = find_start(args.start)
    s = start.settings
    if args.dropout is not None and args.dropout != s["dropout"]:
        log(f"dropout {args.dropout} (the line's: {s['dropout']}); a merge hands it on to the line")
        s["dropout"] = args.dropout
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    log(f"burst on {device_name}, {args.precision}{' +compile' if args.compile else ''}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items()))
    log(f"start: {start.dir}, line step {start.state['step']}, {start.state['tokens'] / 1e6:.2f}M tokens")
    from tokenizers import Tokenizer
    tok_path = os.path.join(start.dir, "tokenizer.json")
    model = load_model(start, device)
    dist.seed_dropout(s["seed"], start.state["step"])
    data, venc = load_data(args, s, Tokenizer.from_file(tok_path), device, log)
    per_step = dist.world * args.accumulate  # batches of the epoch's order per step
    if per_step > 1:
        log(f"global batch: {dist.describe()} x {args.accumulate} accumulated = {per_step} batches of "
            f"{args.batch_tokens} tokens per step")
    lr = peak_lr(args, s, per_step)
    opt = make_burst_optimizer(model, s, lr, device)
    log(f"rate: {lr:.3g} peak ({s['lr']:.3g} at {s['batch_tokens']} tokens, {args.lr_scaling} scaling to "
        f"{args.batch_tokens * per_step}), {args.warmup} warm-up steps; {describe_optimizer(opt, s)}, "
        f"weight decay {s['weight_decay']}, clip {s['clip']}; S={s['shallow_exit_layer']}, alpha {s['alpha']}, "
        f"dropout {s['dropout']}; setup {time.time() - t0:.0f}s after {IMPORT_SECONDS:.0f}s of imports")
    return Run(args, s, device, model, FreeObjective(model, s["shallow_exit_layer"], s["alpha"]), opt,
               argparse.Namespace(lr=lr, warmup=args.warmup, schedule="constant", decay_steps=0, decay_start=0),
               data, venc, Recorder(args, start, log, versions, device_name, lr, sha256_file(tok_path), dist.world),
               dist)


def run_burst(args, versions: dict, t0: float) -> dict:
    dist = Dist()  # one process, or this rank's place under torchrun
    run = setup(args, versions, t0, dist)
    p = Progress()
    dist.on_main(run.validate, p, "start")  # rank 0 alone validates (and writes); the others wait
    order = run.data.epoch(run.settings["seed"], run.rec.start.state["step"], 0)
    run.rec.log(f"sync-free objective: |loss - free.py's| = {check_sync_free(run.obj, run.data.batch(order, 0)):.1e}")
    if args.compile:
        compile_in_place(run.model)
    run.forward = dist.wrap(run.obj)
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum
    handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        order = train_loop(run, p, order, stop)
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)
    # under torchrun the ranks agreed on it (a signal to any rank stops all)
    if not stop.get("agreed", stop["signal"] is not None):
        dist.on_main(run.validate, p, "end")
    else:
        run.rec.log(f"signal {stop['signal'] or '(to another rank)'}: saving without the last validation")
    dist.on_main(run.save, p, order)
    dist.check_replicas(run.model, run.rec.log)
    run.rec.log(f"done: {p.step} steps, {p.tokens} tokens ({p.tokens / max(p.seconds, 1e-9):.0f} tokens/s over "
                f"{p.seconds:.0f}s of training, epoch {p.epoch}); wall {time.time() - t0 + IMPORT_SECONDS:.0f}s "
                "with the imports")
    run.obj.tap.remove()
    dist.close()
    return run.rec.record


def train_loop(run: Run, p: Progress, order: EpochOrder, stop: dict) -> EpochOrder:
    """Steps until --budget, --max-steps or a signal; reads the figures every --read-every
    seconds (the only syncs) and validates and saves every --save-every seconds.

    Under torchrun a step takes ranks x --accumulate consecutive batches of the epoch's order
    (rank r those at p+r, p+r+N, ...; an epoch's tail shorter than a step is skipped), and the
    ranks' clocks differ: a decision taken on each rank's own clock would leave some ranks in a
    collective the others never join, and agreeing at every step would be a host sync per step.
    So the ranks stop only at checks placed by step count: after step 1, then every
    next_check() steps (about --read-every seconds at the measured rate, landing on the end of
    the budget or the next save). At a check one all-reduce, read back once (the read a single
    process makes every --read-every s anyway), averages the figures and carries rank 0's
    clock: the budget spent, a save due, the steps to the next check; and a signal to any rank.
    --max-steps is a step count every rank knows: a check too."""
    a, s, dist = run.args, run.settings, run.dist
    per_step = dist.world * a.accumulate
    autocast = precision_context(run.device.type, a.precision)
    acc = torch.zeros(len(STATS), device=run.device)
    win = {"steps": 0, "tokens": 0, "t": time.time()}
    t_start = last_save = time.time()
    paused = 0.0  # seconds of periodic validation and saving
    check_at, most = 1, 1  # under torchrun: the step of the next check, the most steps between two so far
    while True:
        if p.batch + per_step > len(order.batches):
            p.epoch, p.batch = p.epoch + 1, 0
            order = run.data.epoch(s["seed"], run.rec.start.state["step"], p.epoch)
        mine = [run.data.batch(order, k) for k in dist.my_batches(p.batch, per_step)]
        with count_syncs(run.device, enabled=p.step == 1) as syncs:
            acc += train_step(run.forward, run.opt, mine, lr_at(p.step, run.schedule), s, autocast, dist)
        if syncs is not None:
            run.rec.log(f"host syncs in training step 2: {len(syncs)}" + (f" (first: {syncs[0]})" if syncs else ""))
        real = sum(order.real[p.batch:p.batch + per_step])  # the step's real tokens over all ranks
        p.step, p.batch, p.tokens = p.step + 1, p.batch + per_step, p.tokens + real
        win["steps"], win["tokens"] = win["steps"] + 1, win["tokens"] + real
        now = time.time()
        p.seconds = now - t_start - paused
        at_max = bool(a.max_steps) and p.step >= a.max_steps
        if dist.enabled:
            if p.step < check_at and not at_max:
                continue
            saving = now - last_save >= a.save_every  # rank 0's clock decides; the others' is ignored
            interval = next_check(a, win, now, now - t_start, 0.0 if saving else now - last_save, most)
            due, (interval,) = read_figures(run, acc, win, p, {
                "time": dist.is_main and now - t_start >= a.budget,
                "save": dist.is_main and saving,
                "signal": stop["signal"] is not None}, [interval])
            check_at, most = p.step + int(interval), max(most, int(interval))
            stop["agreed"] = due["signal"]
            done, save = at_max or due["time"] or due["signal"], due["save"]
        else:
            done = now - t_start >= a.budget or at_max or stop["signal"] is not None
            if not done and now - win["t"] < a.read_every:
                continue
            read_figures(run, acc, win, p)
            save = now - last_save >= a.save_every
        if done:
            return order
        if save:
            t = time.time()
            dist.on_main(run.validate, p, "at save")
            dist.on_main(run.save, p, order)
            dist.check_replicas(run.model, run.rec.log)
            last_save = time.time()
            paused += last_save - t
            win["t"] += last_save - t  # the rate counts training time only


def next_check(a, win: dict, now: float, elapsed: float, since_save: float, most: int) -> int:
    """Rank 0's count of steps to the next check: until the earliest of the next read, the end
    of the budget and the next save, at the window's rate; at least 1 and at most twice the
    most so far (the host runs ahead of the device, so a rate timed on its clock over the first
    steps can be too high; doubling reaches a --read-every interval within a few checks)."""
    per = (now - win["t"]) / max(1, win["steps"])
    until = min(a.read_every, a.budget - elapsed, a.save_every - since_save)
    n = math.ceil(until / per) if per > 0 else 1
    return max(1, min(n, 2 * most))


def read_figures(run: Run, acc: torch.Tensor, win: dict, p: Progress, flags: dict | None = None,
                 main: list | None = None):
    """The window's mean figures: one sync (under torchrun one all-reduce that also settles
    `flags` and rank 0's `main` values: Dist.settle). A non-finite figure stops the burst before
    any write, so the parts on disk stay the last good weights. Returns (flags, main) as agreed."""
    figs, flags, main = run.dist.settle(acc / max(1, win["steps"]), flags or {}, main or [])
    fig = dict(zip(STATS, figs))
    rate = win["tokens"] / max(time.time() - win["t"], 1e-9)
    run.rec.figures(fig, p, lr_at(p.step - 1, run.schedule), rate)
    if not all(math.isfinite(v) for v in fig.values()):
        raise SystemExit(f"non-finite figures at burst step {p.step}: stopped without writing these weights; "
                         f"the parts in {run.args.out} are the last good ones")
    acc.zero_()
    win.update(steps=0, tokens=0, t=time.time())
    return flags, main


# ----------------------------------------------------------------- parts ---

def unique_tensors(model) -> dict:
    """The weights once each, by their first name (the tied embedding as shared.weight), as
    save_pretrained stores them."""
    seen, out = set(), {}
    for name, t in model.state_dict().items():
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            out[name] = t
    return out


def nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def part_bytes(tensors: dict, names: list[str], meta: dict) -> int:
    """An upper bound of a part's file size: the data, the JSON header as written here (with
    spaces, ASCII escapes and the widest offsets: never shorter than safetensors' own), its
    8-byte length and up to 8 bytes of alignment."""
    header = {n: {"dtype": "F16", "shape": list(tensors[n].shape), "data_offsets": [2**40, 2**40]} for n in names}
    header["__metadata__"] = {**meta, "part": "9999", "parts": "9999"}
    return 16 + len(json.dumps(header)) + sum(nbytes(tensors[n]) for n in names)


def pack_parts(tensors: dict, meta: dict, limit: int) -> list[list[str]]:
    """Tensor names per part, in order, each part's file at most `limit` bytes."""
    parts, cur = [], []
    for name in tensors:
        if cur and part_bytes(tensors, cur + [name], meta) > limit:
            parts.append(cur)
            cur = []
        if part_bytes(tensors, [name], meta) > limit:
            raise SystemExit(f"{name} ({nbytes(tensors[name]) / 2**20:.2f} MiB) does not fit in a part: raise --part-mib")
        cur.append(name)
    return parts + [cur]


def write_parts(out_dir: str, model, record: dict, part_mib: float, log) -> list[str]:
    """The f16 weights and the record as parts burst-STEP-IofN.safetensors. Each file is
    written whole (atomic.py); the older parts are deleted only once the new set is whole,
    so a kill at any moment leaves one complete set (merge takes the newest)."""
    t = time.time()
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in unique_tensors(model).items()}
    meta = {"record": json.dumps(record)}
    limit = int(part_mib * 2**20)
    groups = pack_parts(tensors, meta, limit)
    names = []
    for i, keys in enumerate(groups):
        names.append(f"{PART_PREFIX}{record['step']:07d}-{i + 1}of{len(groups)}.safetensors")
        path = os.path.join(out_dir, names[-1])
        data = safetensors_bytes({k: tensors[k] for k in keys},
                                 metadata={**meta, "part": str(i), "parts": str(len(groups))})
        if len(data) > limit:
            raise RuntimeError(f"{path} would be larger than the part limit the packing promised")
        write_bytes(path, data)
    for f in os.listdir(out_dir):
        if f.startswith(PART_PREFIX) and f not in names:
            os.remove(os.path.join(out_dir, f))
    mib = sum(os.path.getsize(os.path.join(out_dir, n)) for n in names) / 2**20
    log(f"saved burst step {record['step']}: {len(names)} part{'s' * (len(names) > 1)}, {mib:.1f} MiB, "
        f"in {time.time() - t:.1f}s -> {out_dir}")
    return names


def newest_set(parts_dir: str) -> tuple[list[str], dict]:
    """(file names in part order, record) of the newest complete set of parts in parts_dir."""
    sets = {}
    for f in sorted(os.listdir(parts_dir)):
        if f.startswith(PART_PREFIX) and f.endswith(".safetensors"):
            with safe_open(os.path.join(parts_dir, f), "pt") as h:
                meta = h.metadata()
            rec = json.loads(meta["record"])
            sets.setdefault((rec["step"], int(meta["parts"])), {})[int(meta["part"])] = (f, rec)
    complete = [k for k, v in sets.items() if len(v) == k[1]]
    if not complete:
        raise SystemExit(f"{parts_dir}: no complete set of {PART_PREFIX}*.safetensors parts")
    chosen = sets[max(complete)]
    return [chosen[i][0] for i in range(len(chosen))], chosen[0][1]


def read_parts(parts_dir: str) -> tuple[dict, dict]:
    """(record, tensors) of the newest complete set of parts in parts_dir."""
    files, rec = newest_set(parts_dir)
    tensors = {}
    for f in files:
        with safe_open(os.path.join(parts_dir, f), "pt") as h:
            tensors.update({k: h.get_tensor(k) for k in h.keys()})
    return rec, tensors


# ------------------------------------------------------------------ arms ---

ARM_PREFIX = "arm-"


def pick(out_dir: str) -> str | None:
    """After train/gpu-arms.sh (several bursts side by side on one GPU, each in OUT/arm-NAME):
    the arm whose set validated lowest on the deep exit becomes OUT/burst and the other arms'
    folders are deleted, their logs (OUT/arm-NAME.log, written by the script) kept, so that what
    comes back from a lent GPU fits its limits (8 files, 64 MiB). A set saved without a
    validation at its step (a signal stopped the arm) ranks last. Returns the arm's name, or
    None when no arm left a complete set."""
    dest = os.path.join(out_dir, "burst")
    if os.path.exists(dest):
        raise SystemExit(f"{dest} exists: pick into a folder where no arm was picked yet")
    arms = sorted(d for d in os.listdir(out_dir) if d.startswith(ARM_PREFIX) and os.path.isdir(os.path.join(out_dir, d)))
    scored = []
    for d in arms:
        try:
            _, rec = newest_set(os.path.join(out_dir, d))
        except SystemExit:
            print(f"{d}: no complete set")
            continue
        at = [v["all_ce_deep"] for v in rec["validation"] if v["burst_step"] == rec["step"]]
        start = rec["validation"][0]["all_ce_deep"] if rec["validation"] else math.nan
        print(f"{d}: set of burst step {rec['step']} ({rec['tokens'] / 1e6:.1f}M tokens), deep validation "
              f"{at[-1] if at else math.nan:.4f} (start {start:.4f})")
        scored.append((at[-1] if at else math.inf, d))
    best = min(scored)[1] if scored else None
    for d in arms:
        if d == best:
            os.rename(os.path.join(out_dir, d), dest)
        else:
            shutil.rmtree(os.path.join(out_dir, d))
    print(f"picked {best} -> {dest}" if best else "no arm left a complete set")
    return best[len(ARM_PREFIX):] if best else None


# ----------------------------------------------------------------- merge ---

def merged_manifest(rec: dict) -> dict:
    """trunk.json after the burst: the line's settings, its position moved on by the burst."""
    st = rec["start"]["state"]
    state = {**st, "step": st["step"] + rec["step"], "tokens": st["tokens"] + rec["tokens"],
             "train_seconds": st.get("train_seconds", 0.0) + rec["seconds"],
             # the burst went through the data in its own order: the CPU line goes on with a new epoch
             "epoch": st.get("epoch", 0) + 1, "batch_in_epoch": 0}
    burst = {"from_step": st["step"], "steps": rec["step"], "tokens": rec["tokens"], "seconds": rec["seconds"],
             "position": rec["position"], "args": rec["burst"], "validation": rec["validation"]}
    return {"format": FORMAT, "args": rec["settings"], "state": state, "optimizer_state": None,
            "optimizer_note": f"no optimizer state (a GPU burst of {rec['step']} steps ran last): a resume "
                              "re-warms a fresh optimizer over --rewarm steps",
            "last_validation": rec["validation"][-1] if rec["validation"] else None,
            "bursts": rec["bursts_before"] + [burst]}


def check_merge_target(rec: dict, trunk_out: str, force: bool):
    """Refuse to replace a trunk that is not the one the burst started from, or a folder that
    is not a trunk at all (a model folder, say: it would be replaced whole, card and logs too)."""
    if force or not os.path.exists(trunk_out):
        return
    if not os.path.exists(os.path.join(trunk_out, MANIFEST)):
        if os.listdir(trunk_out):
            raise SystemExit(f"{trunk_out} is not a trunk (it has no {MANIFEST}) and the merge replaces --trunk-out whole, "
                             "which would delete its files; give a trunk or a new folder (--force replaces it anyway)")
        return
    now, then = read_manifest(trunk_out)["state"], rec["start"]["state"]
    if (now["step"], now["tokens"]) != (then["step"], then["tokens"]):
        raise SystemExit(f"{trunk_out} is at line step {now['step']} ({now['tokens']} tokens) but the burst started "
                         f"at step {then['step']} ({then['tokens']} tokens): merging would drop what the line did "
                         "since, or apply the burst twice; --force replaces it anyway")


def merge(parts_dir: str, trunk_out: str, export_dir: str | None = None, start_dir: str | None = None,
          force: bool = False) -> dict:
    from transformers import T5ForConditionalGeneration
    # The trunk is replaced whole, and the export reads it.
    refuse_overwriting_inputs([("--trunk-out", trunk_out), ("--export", export_dir)], [("PARTS_DIR", parts_dir)])
    refuse_overwriting_inputs([("--export", export_dir)], [("--trunk-out", trunk_out)])
    rec, tensors = read_parts(parts_dir)
    check_merge_target(rec, trunk_out, force)
    start_dir = start_dir or rec["start"]["dir"]
    # The start folder may be --trunk-out itself (it is read whole before the new trunk replaces
    # it), but not hold it or lie inside it.
    if os.path.realpath(start_dir) != os.path.realpath(trunk_out):
        refuse_overwriting_inputs([("--trunk-out", trunk_out)], [("the start folder", start_dir)])
    tok = os.path.join(start_dir, "tokenizer.json")
    if sha256_file(tok) != rec["start"]["tokenizer_sha256"]:
        raise SystemExit(f"{tok} is not the tokenizer the burst trained with; give the burst's start folder with --start")
    # f32 first and cast after: loading in f16 keeps T5's feed-forward output (`wo`) in f32
    model = T5ForConditionalGeneration.from_pretrained(start_dir, dtype=torch.float32)
    if set(tensors) != set(unique_tensors(model)):
        raise SystemExit(f"the parts' tensors do not match {start_dir}'s model")
    model.load_state_dict(tensors, strict=False)  # strict would ask for the tied embedding's other names
    model.to(torch.float16)  # the parts are f16: exact
    man = merged_manifest(rec)
    with replacing_dir(trunk_out) as tmp:
        model.save_pretrained(tmp)
        shutil.copyfile(tok, os.path.join(tmp, "tokenizer.json"))
        write_free_json(tmp, rec["settings"]["shallow_exit_layer"])
        write_text(os.path.join(tmp, MANIFEST), json.dumps(man, indent=1) + "\n")
        write_checksums(tmp)  # as a trunk save writes them: the weights' size and hash
    if export_dir:
        export(trunk_out, export_dir, dtype="f16", shallow_exit_layer=rec["settings"]["shallow_exit_layer"])
    return man


def merge_main(argv):
    ap = argparse.ArgumentParser(prog="python -m free_train.burst merge",
                                 description="Merge a burst's newest complete set of parts into a trunk folder.")
    ap.add_argument("parts_dir")
    ap.add_argument("--trunk-out", default=TRUNK)
    ap.add_argument("--export", default=None, metavar="DIR", help="also export the merged model here (f16)")
    ap.add_argument("--start", default=None, help="the burst's start folder (default: the one it recorded)")
    ap.add_argument("--force", action="store_true", help="replace --trunk-out even if it moved on since the burst began")
    a = ap.parse_args(argv)
    man = merge(a.parts_dir, a.trunk_out, a.export, a.start, a.force)
    print(f"merged {a.parts_dir} into {a.trunk_out}: {describe(man)}" + (f"; exported to {a.export}" if a.export else ""))
    return man


def main(argv=None):
    t0 = time.time()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["merge"]:
        return merge_main(argv[1:])
    if argv[:1] == ["pick"]:
        if len(argv) != 2:
            raise SystemExit("usage: python -m free_train.burst pick OUT_DIR")
        return pick(argv[1])
    args = parse_burst_args(argv)
    return run_burst(args, check_requirements(args), t0)


if __name__ == "__main__":
    main()
