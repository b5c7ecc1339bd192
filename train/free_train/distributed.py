"""Data-parallel training under torchrun: N processes (ranks), one replica of the model each,
gradients averaged by PyTorch's DistributedDataParallel (DDP).

    torchrun --standalone --nproc_per_node N -m free_train.train --run-dir ... [flags]

* Mode: torchrun sets WORLD_SIZE, RANK, LOCAL_RANK and LOCAL_WORLD_SIZE. Without them, or with
  WORLD_SIZE 1, every method here returns what it was given or does nothing, and train.py runs
  its single-process path unchanged (no wrapper, no collective).
* Backend: NCCL on CUDA, one GPU per rank (cuda:LOCAL_RANK); gloo on CPUs.
* The global batch: an optimizer step consumes N*K consecutive batches of the epoch's global
  order, the order a single process sees (K = train.py's --accumulate). From the step's first
  position p, rank r runs the batches p+r, p+r+N, ... Each batch's loss is a per-token mean over
  that batch; a rank weights each of its K batches 1/K and DDP averages the N ranks' gradients,
  so the step's gradient is that of the mean of the N*K per-batch losses (times --balance's
  per-batch weights), which one process with --accumulate N*K reproduces.
* Agreement: whatever leads to a collective or to the end (stop, validate, checkpoint) is
  decided by one all-reduce per step that also averages the step's figures. A flag raised on
  any rank (its clock says the budget is spent, it got SIGTERM) is raised on all, so every rank
  stops after the same step and a signal seen by one rank cannot leave the others waiting.
* I/O: rank 0 alone logs, validates and writes (checkpoints, best/); the others wait for it at
  a barrier, and at each checkpoint all ranks compare digests of their weights.
* The GPU burst (free_train.burst) uses the same helpers without the per-step all-reduce (a
  host sync on a GPU): its ranks meet at checks placed by step count, where settle() averages
  the figures kept on the device and hands every rank rank 0's decisions.
"""
from __future__ import annotations

import contextlib
import hashlib
import os

import torch
import torch.distributed as tdist


class Dist:
    """This process's place among torchrun's ranks (a single process: rank 0 of 1)."""

    def __init__(self, env=os.environ):
        self.world = int(env.get("WORLD_SIZE", 1))
        distributed = self.world > 1
        self.rank = int(env.get("RANK", 0)) if distributed else 0
        self.local_rank = int(env.get("LOCAL_RANK", 0)) if distributed else 0
        self.local_world = int(env.get("LOCAL_WORLD_SIZE", self.world)) if distributed else 1
        self.device = None  # set by start(); the device of the all-reduced tensors

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        return f"{self.world} ranks ({tdist.get_backend()})" if self.enabled else "1 process"

    def threads(self, spec: str) -> str:
        """The thread count for train.ThreadTuner. Its 'auto' picks from each process's own
        timings, which differ between ranks, and a slower rank holds up every step: in DDP mode
        a fixed count instead, the node's cores shared out among its ranks."""
        if self.enabled and str(spec) == "auto":
            return str(max(1, (os.cpu_count() or 1) // self.local_world))
        return spec

    def start(self, device_arg: str | None) -> torch.device:
        """The training device (--device, default cuda when available); in DDP mode also joins
        the process group."""
        device = torch.device(device_arg or ("cuda" if torch.cuda.is_available() else "cpu"))
        if not self.enabled:
            return device
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        self.device = device
        return device

    def close(self):
        if self.enabled:
            tdist.destroy_process_group()

    def seed_dropout(self, seed: int, step: int):
        """Ranks other than 0 draw their own dropout masks (started from one generator state,
        they would repeat rank 0's draws); rank 0 keeps the stream of a single process, the one
        its checkpoints save."""
        if self.rank > 0:
            torch.manual_seed((seed * 1_000_003 + step) * 1_009 + self.rank)

    def my_batches(self, first: int, per_step: int) -> range:
        """Positions in the epoch's global order of this rank's batches in the step whose
        per_step batches start at `first`."""
        return range(first + self.rank, first + per_step, self.world)

    def wrap(self, objective):
        """What the training step calls for the loss: the objective itself, or in DDP mode the
        objective inside DDP, whose forward arms the hooks that average the gradients."""
        if not self.enabled:
            return objective
        from torch.nn.parallel import DistributedDataParallel
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(_ObjectiveModule(objective), device_ids=ids)

    def gradient_sync(self, forward, sync: bool):
        """The context of one accumulated batch's forward and backward: DDP averages the
        gradients only on a step's last batch (no_sync keeps the others local)."""
        return forward.no_sync() if self.enabled and not sync else contextlib.nullcontext()

    def agree(self, figures: list[float], flags: dict[str, bool]) -> tuple[list[float], dict[str, bool]]:
        """One all-reduce: the figures averaged over the ranks, each flag true on every rank when
        it is true on any (a sum of 0/1 is their 'any')."""
        if not self.enabled:
            return figures, flags
        t = torch.tensor(figures + [float(v) for v in flags.values()], dtype=torch.float64, device=self.device)
        tdist.all_reduce(t)
        vals = t.tolist()
        n = len(figures)
        return [v / self.world for v in vals[:n]], {k: v > 0 for k, v in zip(flags, vals[n:])}

    def settle(self, figures: torch.Tensor, flags: dict[str, bool], main: list[float]):
        """agree() for a loop that keeps its figures on the device and syncs only now and then
        (the GPU burst), in one all-reduce and one read: (the figures, a device tensor, averaged
        over the ranks; each flag true on every rank when true on any; `main`, rank 0's values,
        on every rank: the other ranks add zeros). A single process reads its own figures back."""
        if not self.enabled:
            return figures.tolist(), dict(flags), list(main)
        extra = [float(v) for v in flags.values()] + [float(v) if self.is_main else 0.0 for v in main]
        t = torch.cat([figures.detach().flatten().to(torch.float64),
                       torch.tensor(extra, dtype=torch.float64).to(figures.device)])
        tdist.all_reduce(t)
        vals = t.tolist()
        n, m = figures.numel(), len(flags)
        return ([v / self.world for v in vals[:n]], {k: v > 0 for k, v in zip(flags, vals[n:n + m])},
                vals[n + m:])

    def barrier(self):
        if self.enabled:
            tdist.barrier(**({"device_ids": [self.device.index]} if self.device.type == "cuda" else {}))

    def on_main(self, fn, *args, **kwargs):
        """fn(...) on rank 0 (its I/O), after which every rank goes on; None on the others."""
        out = fn(*args, **kwargs) if self.is_main else None
        self.barrier()
        return out

    def check_replicas(self, model, log):
        """Stop when the ranks' weights are not bitwise the same. DDP keeps them so (the same
        averaged gradients, the same optimizer update), and rank 0 saves its copy for all; the
        weights of the checkpoint just written are rank 0's, and a resume starts every rank
        from them again."""
        if not self.enabled:
            return
        h = hashlib.sha256()
        for p in model.parameters():
            h.update(p.detach().cpu().numpy().tobytes())
        digests = [None] * self.world
        tdist.all_gather_object(digests, h.hexdigest())
        if len(set(digests)) > 1:
            raise SystemExit(f"the {self.world} ranks' weights differ (sha256 {digests}); the checkpoint holds "
                             "rank 0's: resume from it")
        log(f"the {self.world} ranks hold identical weights (sha256 {digests[0][:16]})")


class _ObjectiveModule(torch.nn.Module):
    """A FreeObjective as a module for DDP: the model as its child (the parameters DDP
    averages) and the objective's call as its forward."""

    def __init__(self, objective):
        super().__init__()
        self.objective = objective
        self.model = objective.model

    def forward(self, *args, **kwargs):
        return self.objective(*args, **kwargs)


class QuietLog:
    """The log of ranks other than 0: rank 0 alone writes train.log and metrics.jsonl."""

    def __call__(self, msg: str):
        pass

    def record(self, **kv):
        pass
