"""FREE's shallow-deep objective on a Hugging Face T5ForConditionalGeneration (docs/method.md#training-objective).

Loss = (S*CE_S + L*CE_L)/(S+L) + alpha*KD, with
* CE_S on lm_head(c * FLN(h_S)) and CE_L on HF's own logits lm_head(c * FLN(h_L)) (same final
  norm FLN, same head; c = d_model^-0.5 when the config scales decoder outputs, i.e. tied
  embeddings), padding ignored;
* KD, dynamic layer-wise distillation: teachers FLN(h_tau_t), tau_t = round((t+1)L/S) - 1
  (0-based block index), detached; students FLN(h_1..h_S); for t = S-1..0 pick the student with
  the smallest MSE among those below the previous pick (any for the first pick; when none is
  left, the previous pick is reused, as the reference implementation does); KD = mean of the
  picked MSEs. MSEs average over the model dimension and over non-padding positions only.

h_k (the residual stream after k decoder blocks, before the final norm) is captured with
forward hooks on the decoder blocks; HF's decoder applies the final norm and dropout only
after the last block, so these are exactly the states the Rust engine computes.

On a GPU every value read back on the host (.item(), int(tensor), a Python `if` on a tensor)
waits for all queued work; `sync_free=True` computes the same loss without such reads (see
FreeObjective.__call__), for a training loop that keeps the GPU fed (free_train.burst).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def teacher_layers(num_layers: int, shallow: int) -> list[int]:
    """0-based deep block indices whose outputs teach the S shallow blocks."""
    return [int(round((t + 1) * num_layers / shallow)) - 1 for t in range(shallow)]


def output_scale(config) -> float:
    scale = getattr(config, "scale_decoder_outputs", None)
    if scale is None:
        scale = getattr(config, "tie_word_embeddings", True)
    return config.d_model ** -0.5 if scale else 1.0


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the last dim, averaged over positions where mask is true."""
    per_pos = (a - b).pow(2).mean(-1)
    m = mask.to(per_pos.dtype)
    return (per_pos * m).sum() / m.sum().clamp_min(1.0)


def dynamic_alignment(mse: torch.Tensor) -> list[int]:
    """mse[t, j]: MSE of teacher t vs student j (S x S). Returns the student picked per teacher."""
    n_teachers, n_students = mse.shape
    picks = [0] * n_teachers
    last = n_students  # the first pick may use any student
    vals = mse.detach()
    for t in range(n_teachers - 1, -1, -1):
        if last > 0:
            last = int(torch.argmin(vals[t, :last]).item())
        picks[t] = last
    return picks


def alignment_on_device(mse: torch.Tensor) -> torch.Tensor:
    """dynamic_alignment's picks as a tensor on mse's device, computed without reading values
    back to the host. Students at or above the previous pick are masked with +inf instead of
    sliced away (argmin returns the first of equal minima either way); once student 0 is
    picked, the pick stays 0, as dynamic_alignment keeps it."""
    n_teachers, n_students = mse.shape
    vals = mse.detach()
    cols = torch.arange(n_students, device=mse.device)
    # torch.full, not torch.tensor: a host-to-device copy would itself wait for the GPU
    last = torch.full((), n_students, dtype=torch.long, device=mse.device)
    picks = []
    for t in range(n_teachers - 1, -1, -1):
        best = torch.argmin(vals[t].masked_fill(cols >= last, float("inf")))
        last = torch.where(last > 0, best, last)
        picks.append(last)
    return torch.stack(picks[::-1])


def layerwise_kd(normed_states: list[torch.Tensor], shallow: int, mask: torch.Tensor, on_device: bool = False):
    """normed_states[k-1] = FLN(h_k) for k = 1..L. Returns (KD, picks): picks a list, or with
    on_device a tensor (no host synchronisation)."""
    L = len(normed_states)
    teachers = [normed_states[i].detach() for i in teacher_layers(L, shallow)]
    students = normed_states[:shallow]
    mse = torch.stack([torch.stack([masked_mse(s, t, mask) for s in students]) for t in teachers])
    if on_device:
        picks = alignment_on_device(mse)
        return mse.gather(1, picks[:, None]).mean(), picks
    picks = dynamic_alignment(mse)
    kd = torch.stack([mse[t, j] for t, j in enumerate(picks)]).mean()
    return kd, picks


def additive_padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A (B, S) 0/1 padding mask as the 4-D additive mask (B, 1, 1, S) that HF's attention takes
    as it is: 0 on tokens, the dtype's minimum on padding (what HF builds from a 2-D mask)."""
    pad = (attention_mask == 0)[:, None, None, :]
    return torch.zeros(pad.shape, dtype=dtype, device=pad.device).masked_fill(pad, torch.finfo(dtype).min)


class DecoderTap:
    """Captures the output of every decoder block (h_1..h_L) during a forward pass."""

    def __init__(self, model):
        self.states: list[torch.Tensor] = []
        self.handles = [blk.register_forward_hook(self._hook) for blk in model.decoder.block]

    def _hook(self, module, args, output):
        self.states.append(output[0] if isinstance(output, (tuple, list)) else output)

    def take(self) -> list[torch.Tensor]:
        s, self.states = self.states, []
        return s

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []


@dataclass
class FreeOutput:
    loss: torch.Tensor
    ce_shallow: torch.Tensor
    ce_deep: torch.Tensor
    kd: torch.Tensor
    picks: list[int] | torch.Tensor  # a tensor with sync_free
    n_tokens: int | torch.Tensor
    deep_logits: torch.Tensor | None = None
    shallow_logits: torch.Tensor | None = None


class FreeObjective:
    """Wraps a T5ForConditionalGeneration and computes FREE's loss for a batch."""

    def __init__(self, model, shallow_exit_layer: int, alpha: float = 0.5):
        L = model.config.num_decoder_layers
        if not 1 <= shallow_exit_layer < L:
            raise ValueError(f"shallow exit layer must be in 1..{L - 1}, got {shallow_exit_layer}")
        self.model = model
        self.S = shallow_exit_layer
        self.L = L
        self.alpha = alpha
        self.c = output_scale(model.config)
        self.tap = DecoderTap(model)

    def __call__(self, input_ids, attention_mask, labels, keep_logits: bool = False,
                 label_smoothing: float = 0.0, sync_free: bool = False) -> FreeOutput:
        """sync_free: the same loss without reading anything back to the host, and picks and
        n_tokens as device tensors. HF decides from a 2-D padding mask's values whether it may
        skip the mask (`mask.all()` in masking_utils, a host read); a 4-D mask it takes as it
        is. The decoder gets no padding mask: its causal mask already keeps every real
        position from seeing the right-hand padding, and padded positions count nowhere."""
        m = self.model
        dec_in = m._shift_right(labels)
        tgt_mask = labels != -100
        self.tap.take()
        if sync_free:
            enc_mask = additive_padding_mask(attention_mask, m.get_input_embeddings().weight.dtype)
            dec_mask = None
        else:
            enc_mask, dec_mask = attention_mask, tgt_mask.long()
        enc = m.encoder(input_ids=input_ids, attention_mask=enc_mask)
        dec = m.decoder(input_ids=dec_in, attention_mask=dec_mask,
                        encoder_hidden_states=enc.last_hidden_state,
                        encoder_attention_mask=enc_mask, use_cache=False)
        hs = self.tap.take()
        if len(hs) != self.L:
            raise RuntimeError(f"captured {len(hs)} decoder states, expected {self.L}")
        fln = m.decoder.final_layer_norm
        deep_logits = m.lm_head(dec.last_hidden_state * self.c)
        shallow_logits = m.lm_head(m.decoder.dropout(fln(hs[self.S - 1])) * self.c)
        V = deep_logits.size(-1)
        flat = labels.reshape(-1)
        ce_l = F.cross_entropy(deep_logits.reshape(-1, V).float(), flat, ignore_index=-100,
                               label_smoothing=label_smoothing)
        ce_s = F.cross_entropy(shallow_logits.reshape(-1, V).float(), flat, ignore_index=-100,
                               label_smoothing=label_smoothing)
        loss = (self.S * ce_s + self.L * ce_l) / (self.S + self.L)
        if self.alpha > 0:
            normed = [fln(h) for h in hs]
            kd, picks = layerwise_kd(normed, self.S, tgt_mask, on_device=sync_free)
            loss = loss + self.alpha * kd
        else:
            kd, picks = torch.zeros((), device=loss.device), []
        n_tokens = tgt_mask.sum()
        return FreeOutput(loss=loss, ce_shallow=ce_s, ce_deep=ce_l, kd=kd, picks=picks,
                          n_tokens=n_tokens if sync_free else int(n_tokens),
                          deep_logits=deep_logits if keep_logits else None,
                          shallow_logits=shallow_logits if keep_logits else None)
