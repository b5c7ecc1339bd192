"""Adafactor as the line runs it, with no host synchronisation in a step.

Adafactor (Shazeer & Stern, 2018) as T5 was trained with it: factored second moments for
matrices (a row and a column average instead of one value per weight), no first moment, each
update clipped to RMS at most `clip_threshold`, and with `scale_parameter` each tensor's step is
the rate times the tensor's own RMS (floored at eps[1]), so the N(0,1) tied embedding and the
small projections move alike. The rate is the caller's (train.set_lr); the paper's own
relative-step schedule is not offered.

Why our own: transformers' Adafactor computes the same update, but floors the RMS with Python's
max() over a device tensor and passes a tensor as a Python scalar for weight decay: two host
synchronisations per tensor per step, about two hundred per step for the demo model, which
stall a GPU burst at every one. Here the floor is a clamp and every factor stays on the device.
The state carries the names transformers uses (step, RMS, exp_avg_sq_row, exp_avg_sq_col,
exp_avg_sq) and the groups its option names, so a state saved by either loads in the other
(the trunk committed before this module carries transformers' state); tests/test_adafactor.py
checks the updates equal transformers' to float rounding.
"""
from __future__ import annotations

import math

import torch


def _rms(t: torch.Tensor) -> torch.Tensor:
    return t.norm(2) / (t.numel() ** 0.5)


class Adafactor(torch.optim.Optimizer):
    def __init__(self, params, lr: float, scale_parameter: bool = True, eps=(1e-30, 1e-3),
                 clip_threshold: float = 1.0, decay_rate: float = -0.8, weight_decay: float = 0.0):
        if lr <= 0:
            raise ValueError(f"Adafactor needs a positive rate, not {lr}")
        # relative_step, warmup_init and beta1 are named as transformers names them (a saved
        # state's groups carry them); this implementation runs only their values below
        defaults = dict(lr=lr, scale_parameter=scale_parameter, eps=tuple(eps), clip_threshold=clip_threshold,
                        decay_rate=decay_rate, weight_decay=weight_decay, relative_step=False,
                        warmup_init=False, beta1=None)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group.get("relative_step") or group.get("beta1") is not None or group.get("warmup_init"):
                raise ValueError("this Adafactor runs a given rate without a first moment: relative_step, "
                                 "warmup_init and beta1 are not supported")
            eps0, eps1 = group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Adafactor does not support sparse gradients")
                grad = p.grad.float()
                w = p.float() if p.dtype in (torch.float16, torch.bfloat16) else p
                state = self.state[p]
                factored = grad.ndim >= 2
                if not state:
                    state["step"] = 0
                    if factored:
                        state["exp_avg_sq_row"] = grad.new_zeros(grad.shape[:-1])
                        state["exp_avg_sq_col"] = grad.new_zeros(grad.shape[:-2] + grad.shape[-1:])
                    else:
                        state["exp_avg_sq"] = torch.zeros_like(grad)
                state["step"] += 1
                state["RMS"] = _rms(w)
                lr = (state["RMS"].clamp(min=eps1) * group["lr"] if group["scale_parameter"]
                      else torch.tensor(group["lr"], device=w.device))
                beta2t = 1.0 - math.pow(state["step"], group["decay_rate"])
                sq = grad * grad + eps0
                if factored:
                    row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
                    row.mul_(beta2t).add_(sq.mean(dim=-1), alpha=1.0 - beta2t)
                    col.mul_(beta2t).add_(sq.mean(dim=-2), alpha=1.0 - beta2t)
                    # the factored estimate of the second moment: row x col / mean(row)
                    update = torch.mul((row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1),
                                       col.unsqueeze(-2).rsqrt())
                    update.mul_(grad)
                else:
                    v = state["exp_avg_sq"]
                    v.mul_(beta2t).add_(sq, alpha=1.0 - beta2t)
                    update = v.rsqrt().mul_(grad)
                update.div_((_rms(update) / group["clip_threshold"]).clamp_(min=1.0))
                update.mul_(lr)
                if group["weight_decay"] != 0:
                    w.add_(w * (lr * -group["weight_decay"]))
                w.add_(-update)
                if w is not p:
                    p.copy_(w)
        return loss
