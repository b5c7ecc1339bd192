"""Unigram tokenizer for the demo model, T5-style.

    python -m free_train.tokenizer train --data data --vocab-size 4096 --out runs/x/tokenizer.json

NFKC normalisation, Metaspace pre-tokenizer (the "▁" word-boundary marker, prepended to the
first word, as T5's SentencePiece models do), specials <pad>=0, </s>=1, <unk>=2, and a
post-processor that appends </s> to every encoded input (T5 feeds `text </s>` to both stacks).
Trained on the train split: task-prefixed sources and targets of both tasks.
"""
from __future__ import annotations

import argparse
import os
import statistics

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from . import EOS, EOS_ID, PAD, PAD_ID, TASK_PREFIXES, UNK, UNK_ID
from .atomic import refuse_overwriting_inputs, write_text


def training_texts(rows):
    for r in rows:
        yield TASK_PREFIXES[r["task"]] + r["source"]
        yield r["target"]


def build_tokenizer_skeleton() -> Tokenizer:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    return tok


def add_post_processor(tok: Tokenizer) -> Tokenizer:
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, EOS_ID)])
    return tok


def train_tokenizer(texts, vocab_size: int) -> Tokenizer:
    tok = build_tokenizer_skeleton()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, EOS, UNK], unk_token=UNK,
        max_piece_length=16, shrinking_factor=0.75, n_sub_iterations=2, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    add_post_processor(tok)
    check_specials(tok)
    return tok


def check_specials(tok: Tokenizer) -> None:
    for name, want in ((PAD, PAD_ID), (EOS, EOS_ID), (UNK, UNK_ID)):
        got = tok.token_to_id(name)
        if got != want:
            raise ValueError(f"special token {name} has id {got}, expected {want}")


def length_stats(tok: Tokenizer, rows) -> dict:
    out = {}
    for task in TASK_PREFIXES:
        sub = [r for r in rows if r["task"] == task]
        if not sub:
            continue
        src = [len(e.ids) for e in tok.encode_batch([TASK_PREFIXES[task] + r["source"] for r in sub])]
        tgt = [len(e.ids) for e in tok.encode_batch([r["target"] for r in sub])]
        out[task] = {"source_mean": statistics.mean(src), "source_p99": sorted(src)[int(0.99 * len(src))],
                     "target_mean": statistics.mean(tgt), "target_p99": sorted(tgt)[int(0.99 * len(tgt))],
                     "unk_rate": sum(e.ids.count(UNK_ID) for e in tok.encode_batch([r["target"] for r in sub]))
                     / max(1, sum(tgt))}
    return out


def main(argv=None):
    from .data import find_split, read_jsonl
    ap = argparse.ArgumentParser(prog="python -m free_train.tokenizer", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", default="data")
    t.add_argument("--vocab-size", type=int, default=4096)
    t.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    train_path, val_path = find_split(a.data, "train"), find_split(a.data, "validation")
    refuse_overwriting_inputs([("--out", a.out)], [("--data", train_path), ("--data", val_path)])
    rows = read_jsonl(train_path)
    tok = train_tokenizer(training_texts(rows), a.vocab_size)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    write_text(a.out, tok.to_str(pretty=True))  # what tok.save writes
    val = read_jsonl(val_path)
    print(f"vocab {tok.get_vocab_size()} -> {a.out}")
    for task, s in length_stats(tok, val).items():
        print(task, {k: round(v, 4) for k, v in s.items()})


if __name__ == "__main__":
    main()
