"""Tokenised examples and length-bucketed batches with little padding."""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from . import EOS_ID, PAD_ID, TASK_PREFIXES


@dataclass
class Encoded:
    source: list[list[int]]
    target: list[list[int]]
    task: list[str]
    dropped: dict


def encode_rows(tok, rows, max_source: int, max_target: int, max_summarize_source: int = 0) -> Encoded:
    """Encode `prefix + source` and `target` (each ending in </s>).

    Summaries' sources are truncated (the synopsis comes from the start of the description,
    the final </s> is kept), to `max_summarize_source` tokens when it is given and shorter; a
    translation whose source or target is too long, or any target that is too long, is dropped
    rather than cut, so pairs stay aligned."""
    summarize_cap = min(max_source, max_summarize_source) if max_summarize_source > 0 else max_source
    srcs = tok.encode_batch([TASK_PREFIXES[r["task"]] + r["source"] for r in rows])
    tgts = tok.encode_batch([r["target"] for r in rows])
    out = Encoded([], [], [], {"target_too_long": 0, "source_too_long": 0, "source_truncated": 0})
    for r, s, t in zip(rows, srcs, tgts):
        s, t = s.ids, t.ids
        if len(t) > max_target:
            out.dropped["target_too_long"] += 1
            continue
        cap = summarize_cap if r["task"] == "summarize" else max_source
        if len(s) > cap:
            if r["task"] != "summarize":
                out.dropped["source_too_long"] += 1
                continue
            out.dropped["source_truncated"] += 1
            s = s[: cap - 1] + [EOS_ID]
        out.source.append(s)
        out.target.append(t)
        out.task.append(r["task"])
    return out


def make_batches(enc: Encoded, batch_tokens: int, seed: int, epoch: int,
                 shuffle: bool = True, chunk_batches: int = 128) -> list[list[int]]:
    """Index lists of batches whose padded size B*(max_src+max_tgt) stays under batch_tokens.

    Shuffle, cut into chunks of about `chunk_batches` batches, sort each chunk by (task, target
    length in steps of 4, source length), cut into batches, shuffle the batches. Deterministic
    in (seed, epoch). Sorting by source length alone mixed short summaries with long
    translations and left 65% of the decoder's positions padding (measured: 35% real); this
    key keeps ~91% of decoder positions and ~85% of all positions real. A batch holds one
    task; the batch order mixes the tasks."""
    n = len(enc.source)
    idx = list(range(n))
    rng = random.Random(seed * 1_000_003 + epoch)
    if shuffle:
        rng.shuffle(idx)
    avg = max(1, sum(len(s) + len(t) for s, t in zip(enc.source, enc.target)) // max(1, n))
    chunk = max(1, chunk_batches * batch_tokens // avg)
    batches = []
    for c0 in range(0, n, chunk):
        part = sorted(idx[c0:c0 + chunk], key=lambda i: (enc.task[i], len(enc.target[i]) // 4, len(enc.source[i])))
        cur, ms, mt = [], 0, 0
        for i in part:
            s, t = len(enc.source[i]), len(enc.target[i])
            ns, nt = max(ms, s), max(mt, t)
            if cur and (len(cur) + 1) * (ns + nt) > batch_tokens:
                batches.append(cur)
                cur, ns, nt = [], s, t
            cur.append(i)
            ms, mt = ns, nt
        if cur:
            batches.append(cur)
    if shuffle:
        rng.shuffle(batches)
    return batches


def real_tokens(enc: Encoded, batch: list[int]) -> int:
    """The batch's source and target tokens, padding not counted."""
    return sum(len(enc.source[i]) + len(enc.target[i]) for i in batch)


def collate(enc: Encoded, batch: list[int], device="cpu"):
    ms = max(len(enc.source[i]) for i in batch)
    mt = max(len(enc.target[i]) for i in batch)
    inp = torch.full((len(batch), ms), PAD_ID, dtype=torch.long)
    att = torch.zeros((len(batch), ms), dtype=torch.long)
    lab = torch.full((len(batch), mt), -100, dtype=torch.long)
    for r, i in enumerate(batch):
        s, t = enc.source[i], enc.target[i]
        inp[r, : len(s)] = torch.tensor(s)
        att[r, : len(s)] = 1
        lab[r, : len(t)] = torch.tensor(t)
    return inp.to(device), att.to(device), lab.to(device), real_tokens(enc, batch)
