"""Train a shallow-deep T5 with FREE's objective (docs/method.md#training-objective).

    python -m free_train.train --run-dir train/runs/NAME [--time-budget 9000] [--resume]

From scratch (T5 initialisation, a new Unigram tokenizer trained on the train split unless
--tokenizer is given) or from any HF T5 checkpoint with --init DIR. The run folder holds
args.json, tokenizer.json, train.log, metrics.jsonl, checkpoint/ (latest: model + optimizer +
data position) and best/ (model with the lowest validation loss of the deep exit).
--resume continues from checkpoint/ with the saved arguments; flags given again override them.
SIGINT/SIGTERM save a checkpoint before exiting.

Data-parallel on N processes (N GPUs, or CPU processes): `torchrun --standalone --nproc_per_node N
-m free_train.train ...` (see free_train.distributed). An optimizer step then takes N*K
consecutive batches of the global batch order (K = --accumulate); the data position is counted
in batches of that order, so a run resumes with any N.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time

# Idle OpenMP workers sleep instead of spinning. On a machine whose cores are shared (builds
# running beside training), spinning workers made a 2-thread step ~6x slower (measured: 204
# vs 1165 tokens/s under load); when the machine is idle the cost is small. Must be set before
# torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from . import EOS_ID, PAD_ID, TASK_PREFIXES
from .adafactor import Adafactor
from .atomic import refuse_overwriting_inputs, replacing_dir, write_text
from .batching import collate, encode_rows, make_batches, real_tokens
from .data import find_split, read_jsonl
from .distributed import Dist, QuietLog
from .free import FreeObjective

CKPT = "checkpoint"
BEST = "best"
BEST_VAL = "val.json"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m free_train.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint")
    ap.add_argument("--from-trunk", default=None, metavar="DIR",
                    help="with --resume: continue the committed training line in DIR (models/trunk) when "
                         "RUN_DIR has no checkpoint, or only an older one (see free_train.trunk)")
    ap.add_argument("--new-data", action="store_true",
                    help="with --resume: the data changed on purpose; start a new epoch over it "
                         "instead of refusing (the batch position of the old data means nothing)")
    ap.add_argument("--data", default="data", help="folder with train/validation jsonl(.gz)")
    ap.add_argument("--init", default=None, help="start from this HF T5 checkpoint folder")
    ap.add_argument("--tokenizer", default=None, help="tokenizer.json (default: train one, or the --init one)")
    ap.add_argument("--vocab-size", type=int, default=4096, help="for a newly trained tokenizer")
    g = ap.add_argument_group("architecture (from scratch)")
    g.add_argument("--d-model", type=int, default=256)
    g.add_argument("--d-kv", type=int, default=32)
    g.add_argument("--num-heads", type=int, default=8)
    g.add_argument("--d-ff", type=int, default=1024)
    g.add_argument("--encoder-layers", type=int, default=4)
    g.add_argument("--decoder-layers", type=int, default=8)
    g.add_argument("--ffn", default="relu", choices=["relu", "gated-gelu"])
    g.add_argument("--dropout", type=float, default=0.0)
    g = ap.add_argument_group("FREE")
    g.add_argument("--shallow-exit-layer", type=int, default=2, help="S: the shallow model is blocks 0..S-1")
    g.add_argument("--alpha", type=float, default=0.5, help="weight of the layer-wise distillation")
    g.add_argument("--label-smoothing", type=float, default=0.0,
                   help="label smoothing of both exits' cross-entropy in training (validation reports plain CE)")
    g = ap.add_argument_group("optimisation")
    g.add_argument("--optimizer", default="adamw", choices=["adamw", "adafactor", "adafactor-relative"],
                   help="adafactor-relative: each matrix's step is lr times its own RMS (T5's "
                        "scale_parameter), so the N(0,1) embedding and the small projections move alike")
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--min-lr-ratio", type=float, default=0.1, help="floor of cosine/linear decay")
    g.add_argument("--warmup", type=int, default=1000, help="warm-up steps")
    g.add_argument("--schedule", default="rsqrt", choices=["rsqrt", "cosine", "linear", "constant"])
    g.add_argument("--total-steps", type=int, default=0, help="length of cosine/linear decay")
    g.add_argument("--decay-start", type=int, default=0,
                   help="a branch's cooldown: from this step the rate falls linearly to 0 over --decay-steps "
                        "(on top of the schedule; the trunk itself never decays)")
    g.add_argument("--decay-steps", type=int, default=0)
    g.add_argument("--embed-lr-scale", type=float, default=1.0,
                   help="learning rate of the shared (tied) embedding relative to --lr")
    g.add_argument("--rewarm", type=int, default=100,
                   help="steps over which the learning rate ramps up again after a fresh optimizer "
                        "replaces a lost one (a trunk resume, an optimizer change)")
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--beta2", type=float, default=0.98)
    g.add_argument("--clip", type=float, default=1.0)
    g.add_argument("--batch-tokens", type=int, default=4096, help="padded source+target tokens per batch")
    g.add_argument("--accumulate", type=int, default=1, metavar="K",
                   help="batches per optimizer step in each process (gradients accumulated; each batch's "
                        "loss weighted 1/K): a step takes processes x K batches")
    g.add_argument("--max-source-len", type=int, default=256)
    g.add_argument("--max-summarize-source", type=int, default=0,
                   help="training only: cut summarize sources to this many tokens (validation keeps "
                        "--max-source-len, so runs stay comparable)")
    g.add_argument("--balance", default="none", choices=["none", "target-tokens"],
                   help="target-tokens: weight each batch's loss by its target tokens over the mean, so an "
                        "update counts every target token alike (batches hold one task, and summarize "
                        "batches hold few targets)")
    g.add_argument("--max-target-len", type=int, default=256)
    g = ap.add_argument_group("run control")
    g.add_argument("--time-budget", type=float, default=0, help="seconds of training in this process (0: none)")
    g.add_argument("--max-steps", type=int, default=0)
    g.add_argument("--max-tokens", type=float, default=0, help="stop after this many real tokens in total")
    g.add_argument("--limit-train", type=int, default=0, help="use only the first N train examples")
    g.add_argument("--limit-val", type=int, default=0, help="use only the first N validation examples per task")
    g.add_argument("--eval-every", type=float, default=900, help="seconds between validations (0: never)")
    g.add_argument("--eval-every-tokens", type=float, default=0,
                   help="also validate each time the total of real tokens crosses a multiple of this "
                        "(so runs compared at the same budget are measured at the same tokens)")
    g.add_argument("--eval-first", action="store_true",
                   help="validate the starting weights before the first step (a resumed line's "
                        "continuity check; an A/B run's common starting point)")
    g.add_argument("--ckpt-every", type=float, default=600, help="seconds between checkpoints")
    g.add_argument("--log-every", type=float, default=30, help="seconds between progress lines")
    g.add_argument("--threads", default="auto",
                   help="torch threads, or 'auto': probe 1 vs all cores every few hundred steps and keep the faster")
    g.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    g.add_argument("--precision", default="f32", choices=["f32", "bf16"],
                   help="bf16: forward and backward under bf16 autocast, f32 master weights and "
                        "optimizer (fast on CPUs with AMX and on recent GPUs; slower without them)")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the encoder and decoder (dynamic shapes; the first steps "
                        "pay for compilation, needs a C++ compiler on the CPU)")
    g.add_argument("--seed", type=int, default=1234)
    return ap


def parse_args(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    saved_path = os.path.join(args.run_dir, "args.json")
    saved = None
    if args.resume and os.path.exists(saved_path):
        with open(saved_path) as f:
            saved = json.load(f)
    if args.resume and args.from_trunk:
        from .trunk import read_manifest
        man = read_manifest(args.from_trunk)
        # the settings go with the weights pick_start continues: the trunk's when it is ahead of
        # the run's own checkpoint (a GPU burst merged into it may have changed them, dropout say)
        if saved is None or man["state"]["tokens"] > checkpoint_tokens(os.path.join(args.run_dir, CKPT)):
            saved = man["args"]
    if saved is not None:
        known = {a.dest for a in ap._actions}
        ap.set_defaults(**{k: v for k, v in saved.items()
                           if k in known and k not in ("resume", "run_dir", "from_trunk", "new_data")})
        args = ap.parse_args(argv)
    if args.accumulate < 1:
        ap.error("--accumulate must be at least 1")
    if args.schedule in ("cosine", "linear") and args.total_steps <= args.warmup:
        # Otherwise the decay would end one step after warm-up: a whole run at the floor.
        ap.error(f"--schedule {args.schedule} decays over --total-steps, which must exceed --warmup "
                 f"({args.warmup}); give the run's length in steps")
    return args


# ------------------------------------------------------------------ model ---

def new_config(args, vocab_size: int):
    from transformers import T5Config
    return T5Config(
        vocab_size=vocab_size, d_model=args.d_model, d_kv=args.d_kv, d_ff=args.d_ff,
        num_layers=args.encoder_layers, num_decoder_layers=args.decoder_layers,
        num_heads=args.num_heads, relative_attention_num_buckets=32,
        relative_attention_max_distance=128, dropout_rate=args.dropout, layer_norm_epsilon=1e-6,
        initializer_factor=1.0, feed_forward_proj=args.ffn, is_encoder_decoder=True,
        # tied embeddings, T5 v1.0 style: the head is the shared embedding and decoder outputs are
        # scaled by d_model^-0.5 (transformers 5.x always ties T5's head; tie_word_embeddings=False
        # there only drops the scaling, it does not give a separate head)
        tie_word_embeddings=True, pad_token_id=PAD_ID, eos_token_id=EOS_ID,
        decoder_start_token_id=PAD_ID, use_cache=True)


def set_dropout(model, p: float):
    model.config.dropout_rate = p
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p


def compile_in_place(model):
    """torch.compile the encoder and decoder in place (Module.compile), so parameter names and
    checkpoints stay those of the plain model; dynamic shapes, because length-bucketed batches
    change shape every step."""
    model.encoder.compile(dynamic=True)
    model.decoder.compile(dynamic=True)


def precision_context(device_type: str, precision: str):
    """The forward pass's context: bf16 autocast, or none for f32. bf16 keeps f32's exponent
    range, so no loss scaling is needed (f16 would need it)."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


def param_count(model) -> int:
    seen, n = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            n += p.numel()
    return n


# ---------------------------------------------------------------- schedule ---

def lr_at(step: int, args, rewarm_from: int | None = None) -> float:
    """The schedule's rate at `step`; after a fresh optimizer replaced a lost one (rewarm_from),
    ramped up again over --rewarm steps: Adam's first steps with empty moments are sign-like and
    full-size, which an already trained model does not need."""
    lr = schedule_at(step, args)
    if args.decay_steps > 0 and step >= args.decay_start:
        lr *= max(0.0, 1 - (step - args.decay_start) / args.decay_steps)
    if rewarm_from is not None and step < rewarm_from + args.rewarm:
        lr *= (step - rewarm_from + 1) / max(1, args.rewarm)
    return lr


def schedule_at(step: int, args) -> float:
    w = max(1, args.warmup)
    if step < w:
        return args.lr * (step + 1) / w
    if args.schedule == "constant":
        return args.lr
    if args.schedule == "rsqrt":
        return args.lr * math.sqrt(w / (step + 1))
    total = max(args.total_steps, w + 1)
    frac = min(1.0, (step - w) / (total - w))
    floor = args.min_lr_ratio
    if args.schedule == "cosine":
        return args.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))
    return args.lr * (floor + (1 - floor) * (1 - frac))


def param_groups(model, args) -> list[dict]:
    """Three groups: the shared embedding (tied to the head; its own rate, --embed-lr-scale),
    the other matrices (weight decay) and the vectors, norms and bias tables (none). Each group
    carries `lr_scale`, its rate relative to the schedule's."""
    emb, decay, no_decay = [], [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if n == "shared.weight":
            emb.append(p)
        elif p.ndim < 2 or "layer_norm" in n or "relative_attention_bias" in n:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": emb, "weight_decay": args.weight_decay, "lr_scale": args.embed_lr_scale},
              {"params": decay, "weight_decay": args.weight_decay, "lr_scale": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0}]
    return [g for g in groups if g["params"]]


def make_optimizer(model, args):
    groups = param_groups(model, args)
    if args.optimizer.startswith("adafactor"):
        return Adafactor(groups, lr=args.lr, scale_parameter=args.optimizer == "adafactor-relative")
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, args.beta2), eps=1e-8)


def set_lr(opt, lr: float):
    for g in opt.param_groups:
        g["lr"] = lr * g["lr_scale"]


# --------------------------------------------------------------- helpers ---

class ThreadTuner:
    """Picks the torch thread count. Fixed when given a number; with "auto", each cycle of
    `period` steps starts with `probe` steps on 1 thread and `probe` steps on all cores, then
    runs the rest of the cycle on whichever moved more tokens per second (cores are shared
    with other work on small machines, and the best choice changes as that work comes and goes)."""

    def __init__(self, spec, period: int = 400, probe: int = 6):
        ncpu = os.cpu_count() or 1
        self.auto = str(spec) == "auto"
        self.max_threads = ncpu if self.auto else max(1, int(spec))
        self.period, self.probe = period, probe
        self.best = self.max_threads
        self.meas = {}

    def _phase(self, step):
        p = step % self.period
        if p < self.probe:
            return 1
        if p < 2 * self.probe:
            return self.max_threads
        return None

    def threads_for(self, step: int) -> int:
        if not self.auto or self.max_threads == 1:
            return self.max_threads
        ph = self._phase(step)
        if ph is None and step % self.period == 2 * self.probe and self.meas:
            rate = {k: tok / max(sec, 1e-9) for k, (tok, sec) in self.meas.items()}
            self.best = max(rate, key=rate.get)
            self.meas = {}
        return ph if ph is not None else self.best

    def report(self, step: int, tokens: int, seconds: float):
        if not self.auto:
            return
        ph = self._phase(step)
        # skip the first step of a probe: it pays for the switch
        if ph is not None and step % self.period not in (0, self.probe):
            tok, sec = self.meas.get(ph, (0, 0.0))
            self.meas[ph] = (tok + tokens, sec + seconds)


def fmt_time(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}h{(s % 3600) // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Logger:
    def __init__(self, run_dir: str):
        self.f = open(os.path.join(run_dir, "train.log"), "a", buffering=1)
        self.metrics = open(os.path.join(run_dir, "metrics.jsonl"), "a", buffering=1)

    def __call__(self, msg: str):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        self.f.write(line + "\n")

    def record(self, **kv):
        self.metrics.write(json.dumps(kv) + "\n")


def subset(enc, task: str):
    from .batching import Encoded
    keep = [i for i, t in enumerate(enc.task) if t == task]
    return Encoded([enc.source[i] for i in keep], [enc.target[i] for i in keep], [task] * len(keep), {})


@torch.no_grad()
def evaluate(obj: FreeObjective, enc, batch_tokens: int, device) -> dict:
    """Token-level cross-entropy of both exits on a data set, per task and overall."""
    model = obj.model
    was_training = model.training
    model.eval()
    res = {}
    tot = [0, 0.0, 0.0]
    for task in sorted(set(enc.task)):
        sub = subset(enc, task)
        acc = [0, 0.0, 0.0]
        for b in make_batches(sub, batch_tokens, seed=0, epoch=0, shuffle=False):
            inp, att, lab, _ = collate(sub, b, device)
            out = obj(inp, att, lab)
            acc[0] += out.n_tokens
            acc[1] += float(out.ce_shallow) * out.n_tokens
            acc[2] += float(out.ce_deep) * out.n_tokens
        res[task] = {"ce_shallow": acc[1] / max(1, acc[0]), "ce_deep": acc[2] / max(1, acc[0]), "tokens": acc[0]}
        tot = [x + y for x, y in zip(tot, acc)]
    res["all"] = {"ce_shallow": tot[1] / max(1, tot[0]), "ce_deep": tot[2] / max(1, tot[0]), "tokens": tot[0]}
    if was_training:
        model.train()
    return res


def save_checkpoint(run_dir, model, tok, opt, state, log):
    final = os.path.join(run_dir, CKPT)
    with replacing_dir(final) as tmp:
        model.save_pretrained(tmp)
        tok.save(os.path.join(tmp, "tokenizer.json"))
        torch.save({"optimizer": opt.state_dict(), "state": state,
                    "torch_rng": torch.get_rng_state()}, os.path.join(tmp, "trainer_state.pt"))
    log(f"checkpoint saved: step {state['step']}, {state['tokens'] / 1e6:.2f}M tokens -> {final}")


def save_best(run_dir, model, tok, val, step):
    with replacing_dir(os.path.join(run_dir, BEST)) as tmp:
        model.save_pretrained(tmp)
        tok.save(os.path.join(tmp, "tokenizer.json"))
        # Beside the weights, so a resume after a crash compares against this model's loss,
        # not against an older one in a checkpoint saved before it.
        write_text(os.path.join(tmp, BEST_VAL), json.dumps({"ce_deep": val, "step": step}))


def pick_tokenizer(args, resume_dir: str | None, train_rows, tok_path: str, log):
    """The run's tokenizer, written to tok_path: the resumed run's, --tokenizer, --init's, the
    run folder's own, or a new one trained on the train split."""
    from tokenizers import Tokenizer
    if resume_dir:
        tok = Tokenizer.from_file(os.path.join(resume_dir, "tokenizer.json"))
    elif args.tokenizer:
        tok = Tokenizer.from_file(args.tokenizer)
    elif args.init and os.path.exists(os.path.join(args.init, "tokenizer.json")):
        tok = Tokenizer.from_file(os.path.join(args.init, "tokenizer.json"))
    elif os.path.exists(tok_path):
        tok = Tokenizer.from_file(tok_path)
    else:
        from .tokenizer import train_tokenizer, training_texts
        log(f"training a Unigram tokenizer, vocab {args.vocab_size}, on {len(train_rows)} examples")
        tok = train_tokenizer(training_texts(train_rows), args.vocab_size)
    write_text(tok_path, tok.to_str(pretty=True))  # what tok.save writes
    return tok


def run_args(args) -> dict:
    """The run's settings as args.json and a trunk keep them: what a resume reads back."""
    return {k: v for k, v in vars(args).items() if k not in ("resume", "from_trunk", "new_data")}


def checkpoint_tokens(ckpt_dir: str) -> int:
    """The tokens a run's checkpoint has trained on (-1 without one)."""
    path = os.path.join(ckpt_dir, "trainer_state.pt")
    return torch.load(path, weights_only=False)["state"]["tokens"] if os.path.exists(path) else -1


def pick_start(args, ckpt_dir: str, log):
    """Where the weights and trainer state come from: ("checkpoint", dir, saved) for the run's
    own checkpoint, ("trunk", dir, saved) for the committed line (--from-trunk) when the run
    has no checkpoint or an older one, else ("init", dir, None) or ("new", None, None)."""
    from .trunk import load_trunk
    ckpt = None
    if args.resume and os.path.exists(os.path.join(ckpt_dir, "trainer_state.pt")):
        ckpt = torch.load(os.path.join(ckpt_dir, "trainer_state.pt"), weights_only=False)
    elif args.resume and any(os.path.exists(ckpt_dir + s) for s in (".old", ".tmp")):
        # A stop between save_checkpoint's two renames: starting over would overwrite the run.
        raise SystemExit(f"--resume: {ckpt_dir} is missing but {CKPT}.old or {CKPT}.tmp is there (a save was "
                         f"interrupted); rename the complete one to {CKPT} and resume again")
    trunk = load_trunk(args.from_trunk) if args.resume and args.from_trunk else None
    if trunk and (ckpt is None or ckpt["state"]["tokens"] < trunk["state"]["tokens"]):
        if ckpt is not None:
            log(f"the trunk ({trunk['state']['tokens'] / 1e6:.2f}M tokens) is ahead of {ckpt_dir} "
                f"({ckpt['state']['tokens'] / 1e6:.2f}M): continuing the trunk")
        return "trunk", args.from_trunk, trunk
    if ckpt is not None:
        return "checkpoint", ckpt_dir, {"state": ckpt["state"], "optimizer": ckpt["optimizer"],
                                        "torch_rng": ckpt["torch_rng"]}
    if args.resume:
        log(f"--resume: no checkpoint in {ckpt_dir}, starting a new run")
    return ("init", args.init, None) if args.init else ("new", None, None)


def restore_optimizer(opt, saved_state, state: dict, args, log):
    """Load the saved optimizer state when it is there and of the same optimizer; otherwise keep
    the fresh one and ramp the rate up again over --rewarm steps. Group settings (rate scale,
    weight decay) are this run's, not the saved ones: the state holds moments, not choices."""
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    why = None
    if saved_state is None:
        why = "no optimizer state was saved"
    elif state.get("optimizer", "adamw") != args.optimizer:
        why = f"the optimizer changed ({state.get('optimizer', 'adamw')} -> {args.optimizer})"
    else:
        try:
            opt.load_state_dict(saved_state)
        except ValueError as e:  # another grouping of the parameters
            why = f"the saved optimizer state does not fit ({e})"
    if why:
        state["rewarm_from"] = state["step"]
        log(f"fresh optimizer: {why}; the rate ramps up again over {args.rewarm} steps")
    for g, f in zip(opt.param_groups, fresh):
        g["lr_scale"], g["weight_decay"] = f["lr_scale"], f["weight_decay"]
    state["optimizer"] = args.optimizer


# ------------------------------------------------------------------ main ---

def backward_step(forward, dist: Dist, my_batches: list, enc, device, autocast, args, mean_target: float):
    """Forward and backward of this process's K batches of one optimizer step (K = --accumulate),
    the gradients summed with each batch's loss weighted 1/K (times --balance's weight); DDP
    then averages them over the ranks. Returns the last batch's output and the mean of its
    batches' figures (loss, CE shallow, CE deep, KD)."""
    k = len(my_batches)
    sums = [0.0] * 4
    for i, b in enumerate(my_batches):
        inp, att, lab, _ = collate(enc, b, device)
        with dist.gradient_sync(forward, sync=i == k - 1):
            with autocast:
                out = forward(inp, att, lab, label_smoothing=args.label_smoothing)
            weight = out.n_tokens / mean_target if mean_target else 1.0
            (out.loss * (weight / k)).backward()
        sums = [a + float(v.detach()) for a, v in zip(sums, (out.loss, out.ce_shallow, out.ce_deep, out.kd))]
    return out, [a / k for a in sums]


def main(argv=None):
    args = parse_args(argv)
    train_path, val_path = find_split(args.data, "train"), find_split(args.data, "validation")
    # The run folder takes new files and replaces checkpoint/ and best/ whole.
    refuse_overwriting_inputs([("--run-dir", args.run_dir)], [
        ("--data", train_path), ("--data", val_path), ("--init", args.init), ("--tokenizer", args.tokenizer),
        ("--from-trunk", args.from_trunk)])
    from tokenizers import Tokenizer
    from transformers import T5ForConditionalGeneration

    torch.set_flush_denormal(True)
    dist = Dist()
    tuner = ThreadTuner(dist.threads(args.threads))
    torch.set_num_threads(tuner.max_threads)
    device = dist.start(args.device)
    os.makedirs(args.run_dir, exist_ok=True)
    log = Logger(args.run_dir) if dist.is_main else QuietLog()
    ckpt_dir = os.path.join(args.run_dir, CKPT)
    log("args: " + " ".join(sys.argv[1:] if argv is None else argv))
    start_kind, start_dir, saved = pick_start(args, ckpt_dir, log)
    resuming = start_kind in ("checkpoint", "trunk")

    # tokenizer: rank 0 picks and writes it, the other ranks read its file (two trainings of a
    # new tokenizer need not agree)
    tok_path = os.path.join(args.run_dir, "tokenizer.json")
    train_rows = read_jsonl(train_path)
    if args.limit_train:
        train_rows = train_rows[: args.limit_train]
    tok = dist.on_main(pick_tokenizer, args, start_dir if resuming else None, train_rows, tok_path, log)
    if tok is None:
        tok = Tokenizer.from_file(tok_path)

    # model
    # Training runs in f32 whatever the checkpoint stores: exported models are f16, and
    # from_pretrained would otherwise keep that dtype, whose range T5's FFN overflows.
    if resuming:
        model = T5ForConditionalGeneration.from_pretrained(start_dir, dtype=torch.float32)
    elif args.init:
        model = T5ForConditionalGeneration.from_pretrained(args.init, dtype=torch.float32)
    else:
        torch.manual_seed(args.seed)
        model = T5ForConditionalGeneration(new_config(args, tok.get_vocab_size()))
    if model.config.vocab_size < tok.get_vocab_size():
        raise SystemExit(f"model vocab {model.config.vocab_size} < tokenizer vocab {tok.get_vocab_size()}")
    set_dropout(model, args.dropout)
    model.to(device).train()
    if args.compile:
        compile_in_place(model)
    L = model.config.num_decoder_layers
    obj = FreeObjective(model, args.shallow_exit_layer, args.alpha)
    forward = dist.wrap(obj)  # the training loss; validation calls obj on rank 0 alone
    n_params = param_count(model)
    log(f"model: d_model {model.config.d_model}, d_ff {model.config.d_ff}, heads {model.config.num_heads}x"
        f"{model.config.d_kv}, encoder {model.config.num_layers}, decoder {L} blocks, S={args.shallow_exit_layer}, "
        f"vocab {model.config.vocab_size}, {n_params / 1e6:.2f}M parameters ({n_params * 2 / 2**20:.1f} MiB f16), "
        f"dropout {args.dropout}, device {device}, threads {torch.get_num_threads()}")
    per_step = dist.world * args.accumulate  # batches of the global order per optimizer step
    if per_step > 1:
        log(f"global batch: {dist.describe()} x {args.accumulate} accumulated = {per_step} batches of "
            f"{args.batch_tokens} tokens per step")

    # data
    t0 = time.time()
    enc = encode_rows(tok, train_rows, args.max_source_len, args.max_target_len,
                      max_summarize_source=args.max_summarize_source)
    val_rows = read_jsonl(val_path)
    if args.limit_val:
        val_rows = [r for t in TASK_PREFIXES for r in [x for x in val_rows if x["task"] == t][: args.limit_val]]
    venc = encode_rows(tok, val_rows, args.max_source_len, args.max_target_len)
    n_tok = sum(len(s) + len(t) for s, t in zip(enc.source, enc.target))
    log(f"data: {len(enc.source)} train examples ({n_tok / 1e6:.2f}M tokens/epoch, dropped {enc.dropped}), "
        f"{len(venc.source)} validation; encoded in {time.time() - t0:.1f}s")

    autocast = precision_context(device.type, args.precision)
    opt = make_optimizer(model, args)
    state = {"step": 0, "tokens": 0, "epoch": 0, "batch_in_epoch": 0, "train_seconds": 0.0,
             "best_val": float("inf"), "optimizer": args.optimizer, "rewarm_from": None}
    if resuming:
        state.update(saved["state"])
        if saved.get("torch_rng") is not None:
            torch.set_rng_state(saved["torch_rng"])
        restore_optimizer(opt, saved.get("optimizer"), state, args, log)
        best_val_path = os.path.join(args.run_dir, BEST, BEST_VAL)
        if start_kind == "checkpoint" and os.path.exists(best_val_path):
            with open(best_val_path) as f:
                state["best_val"] = min(state["best_val"], json.load(f)["ce_deep"])
        log(f"resumed from the {start_kind} at step {state['step']}, {state['tokens'] / 1e6:.2f}M tokens, "
            f"epoch {state['epoch']}, batch {state['batch_in_epoch']} of the epoch's order")
    # What decides the batches: a resume with other values would index another batch list.
    # The data by its size, not its path, so a run moved to another checkout still resumes.
    fingerprint = {"examples": len(enc.source), "tokens": n_tok, "batch_tokens": args.batch_tokens,
                   "seed": args.seed, "max_source_len": args.max_source_len, "max_target_len": args.max_target_len,
                   "max_summarize_source": args.max_summarize_source}
    if resuming and state.get("batches_from", fingerprint) != fingerprint:
        then = {"max_summarize_source": 0, **state["batches_from"]}  # runs from before the option
        changed = {k: (then.get(k), v) for k, v in fingerprint.items() if then.get(k) != v}
        if changed and not args.new_data:
            raise SystemExit(f"--resume: the batches would differ from the run's ({changed}, as (then, now)); "
                             "resume with the run's data and settings, add --new-data to go on over the new "
                             "data from a new epoch, or start a new run with --init")
        if changed:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
            log(f"--new-data: the batches changed ({changed}, as (then, now)); epoch {state['epoch']} starts over them")
    state["batches_from"] = fingerprint
    dist.seed_dropout(args.seed, state["step"])
    # Written once the resume is known to be consistent: a refused one leaves the run's as it was.
    # (Every rank has read it in parse_args before the tokenizer's barrier.)
    if dist.is_main:
        write_text(os.path.join(args.run_dir, "args.json"), json.dumps(run_args(args), indent=2))

    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True
        log(f"signal {signum}: stopping after this step")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    start = time.time()
    last_log = last_ckpt = last_eval = start
    win = {"tokens": 0, "t": start, "loss": 0.0, "ce_s": 0.0, "ce_l": 0.0, "kd": 0.0, "n": 0}
    batches = make_batches(enc, args.batch_tokens, args.seed, state["epoch"])
    reason = None
    # --balance target-tokens: the mean target tokens of a batch, the weight's denominator
    mean_target = (sum(map(len, enc.target)) / len(batches)) if args.balance == "target-tokens" else 0.0

    def budget_left():
        el = time.time() - start
        out = []
        if args.time_budget:
            out.append(args.time_budget - el)
        rate = win_rate()
        if args.max_tokens and rate:
            out.append((args.max_tokens - state["tokens"]) / rate)
        return min(out) if out else None

    def win_rate():
        dt = time.time() - win["t"]
        return win["tokens"] / dt if dt > 0 and win["tokens"] else None

    def run_eval():
        t = time.time()
        res = evaluate(obj, venc, args.batch_tokens * 2, device)
        a = res["all"]
        parts = " ".join(f"{k}: S {v['ce_shallow']:.3f} L {v['ce_deep']:.3f}" for k, v in res.items() if k != "all")
        log(f"validation step {state['step']}: S {a['ce_shallow']:.4f} L {a['ce_deep']:.4f} | {parts} "
            f"({time.time() - t:.0f}s)")
        log.record(kind="val", step=state["step"], tokens=state["tokens"], **{
            f"{k}_{m}": v[m] for k, v in res.items() for m in ("ce_shallow", "ce_deep")})
        if a["ce_deep"] < state["best_val"]:
            state["best_val"] = a["ce_deep"]
            save_best(args.run_dir, model, tok, a["ce_deep"], state["step"])
        return res

    if args.eval_first:
        dist.on_main(run_eval)
        win["t"] = last_eval = time.time()

    while True:
        if state["batch_in_epoch"] + per_step > len(batches):
            # a step's batches come from one epoch: a tail shorter than a step (< N*K batches) is skipped
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
            batches = make_batches(enc, args.batch_tokens, args.seed, state["epoch"])
            log(f"epoch {state['epoch']} begins")
        first = state["batch_in_epoch"]
        threads = tuner.threads_for(state["step"])
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        t_step = time.time()
        lr = lr_at(state["step"], args, state["rewarm_from"])
        set_lr(opt, lr)
        opt.zero_grad(set_to_none=True)
        out, figures = backward_step(forward, dist, [batches[i] for i in dist.my_batches(first, per_step)],
                                     enc, device, autocast, args, mean_target)
        now = time.time()
        # The figures averaged over the ranks and what is due agreed by all (one all-reduce; a
        # single process keeps its own), before the update: a non-finite loss on any rank stops
        # every rank before it
        figures, due = dist.agree(figures, {
            "time": bool(args.time_budget) and now - start >= args.time_budget,
            "signal": stop["flag"],
            "log": now - last_log >= args.log_every,
            "eval": bool(args.eval_every) and now - last_eval >= args.eval_every,
            "ckpt": now - last_ckpt >= args.ckpt_every})
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip) if args.clip > 0 else torch.tensor(0.)
        if not math.isfinite(figures[0]):
            raise SystemExit(f"non-finite loss at step {state['step']}")
        opt.step()
        real = sum(real_tokens(enc, batches[i]) for i in range(first, first + per_step))
        tuner.report(state["step"], real, time.time() - t_step)
        state["step"] += 1
        state["batch_in_epoch"] += per_step
        state["tokens"] += real
        win["tokens"] += real
        win["n"] += 1
        for k, v in zip(("loss", "ce_s", "ce_l", "kd"), figures):
            win[k] += v

        if args.max_steps and state["step"] >= args.max_steps:
            reason = "max steps"
        elif args.max_tokens and state["tokens"] >= args.max_tokens:
            reason = "max tokens"
        elif due["time"]:
            reason = "time budget"
        elif due["signal"]:
            reason = "signal"

        if due["log"] or reason:
            n = max(1, win["n"])
            rate = win_rate() or 0.0
            left = budget_left()
            eta = f" | ETA {fmt_time(left)}" if left is not None else ""
            log(f"step {state['step']} | ep {state['epoch']} | {state['tokens'] / 1e6:.2f}M tok | loss {win['loss'] / n:.4f} "
                f"(S {win['ce_s'] / n:.4f} L {win['ce_l'] / n:.4f} kd {win['kd'] / n:.4f}) | picks {out.picks} | "
                f"lr {lr:.2e} | gnorm {float(gnorm):.2f} | {rate:.0f} tok/s ({torch.get_num_threads()}t) | {fmt_time(now - start)}{eta}")
            log.record(kind="train", step=state["step"], tokens=state["tokens"], loss=win["loss"] / n,
                       ce_shallow=win["ce_s"] / n, ce_deep=win["ce_l"] / n, kd=win["kd"] / n, lr=lr,
                       tok_per_s=rate, elapsed=now - start + state["train_seconds"])
            win.update(tokens=0, t=time.time(), loss=0.0, ce_s=0.0, ce_l=0.0, kd=0.0, n=0)
            last_log = now
        mark = args.eval_every_tokens
        crossed = mark > 0 and state["tokens"] // mark > (state["tokens"] - real) // mark
        if (args.eval_every and (due["eval"] or reason)) or crossed:
            t = time.time()
            dist.on_main(run_eval)
            last_eval = time.time()
            # The rate window counts training only: its clock skips what validation took
            # (resetting the clock but not the token count inflated the next rate).
            win["t"] += last_eval - t
        if due["ckpt"] or reason:
            t = time.time()
            state["train_seconds"] += t - last_ckpt
            dist.on_main(save_checkpoint, args.run_dir, model, tok, opt, state, log)
            dist.check_replicas(model, log)
            last_ckpt = time.time()
            win["t"] += last_ckpt - t
        if reason:
            log(f"stopped ({reason}) at step {state['step']}, {state['tokens'] / 1e6:.2f}M tokens")
            break
    obj.tap.remove()
    dist.close()
    return state


if __name__ == "__main__":
    main()
