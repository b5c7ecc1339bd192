"""Parity fixtures: tiny random T5 checkpoints and what Hugging Face transformers computes
with them, so the Rust engine can be checked against the reference implementation.

Run by hand (needs torch, transformers, tokenizers; see scripts/setup-train.sh for a venv):
    python tools/make_fixtures.py [--out tests/fixtures]

Writes, under the output folder:
  tokenizer.json            a real Unigram tokenizer trained on Debian package descriptions
  buckets.json              HF's relative position buckets for several settings
  t5-v10/  t5-v11/          two HF model folders (config.json, model.safetensors,
                            tokenizer.json, free.json) and, for each, expected.json (token ids,
                            greedy generations) and expected.safetensors (encoder outputs and
                            teacher-forced logits at every decoder block's exit)
v1.0 style: ReLU FFN, tied embeddings (scaled head), f32 weights.
v1.1 style: gated-GELU FFN, separate LM head, unequal encoder/decoder depth, f16 weights (the
reference runs in f32 on the f16-rounded weights, so parity stays tight).
"""

import argparse
import glob
import json
import subprocess
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration
from transformers.models.t5.modeling_t5 import T5Attention

TEXTS = [
    "summarize: The quick brown fox jumps over the lazy dog.",
    "translate English to French: a library for reading and writing compressed archives",
    "summarize: This package provides the command line tools to manage network interfaces, "
    "routing tables and tunnels. It replaces the older utilities and adds support for "
    "namespaces, policy routing and traffic control. Café, naïve — ünïcödé ☃ 数据.",
]
TARGETS = [
    "fast fox",
    "une bibliothèque pour les archives compressées",
    "tools to manage network interfaces, routes and tunnels",
]
MAX_NEW_TOKENS = 24
DECODER_GAIN = {"t5-v10": 6.0, "t5-v11": 1.0}

MODELS = {
    "t5-v10": dict(
        d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2, num_decoder_layers=4,
        relative_attention_num_buckets=16, relative_attention_max_distance=32,
        feed_forward_proj="relu", tie_word_embeddings=True, dtype=torch.float32, exit_layer=1,
    ),
    "t5-v11": dict(
        d_model=64, d_kv=8, num_heads=6, d_ff=96, num_layers=3, num_decoder_layers=5,
        relative_attention_num_buckets=32, relative_attention_max_distance=64,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False, dtype=torch.float16, exit_layer=2,
    ),
}


def debian_descriptions(limit):
    """English package descriptions from apt's Translation-en lists."""
    files = sorted(glob.glob("/var/lib/apt/lists/*i18n_Translation-en*.lz4"))
    if not files:
        raise SystemExit("no Translation-en lists: run `apt-get update -o Acquire::Languages=en,fr`")
    text = subprocess.run(["lz4cat", files[0]], capture_output=True, check=True).stdout.decode()
    out = []
    for record in text.split("\n\n"):
        lines = [l[1:] for l in record.splitlines() if l.startswith(" ") and l.strip() != "."]
        if lines:
            out.append(" ".join(lines))
        if len(out) >= limit:
            break
    return out


def train_tokenizer(vocab_size):
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    corpus = debian_descriptions(4000) + TEXTS + TARGETS
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    assert [tok.token_to_id(t) for t in ["<pad>", "</s>", "<unk>"]] == [0, 1, 2]
    return tok


def make_model(name, spec, vocab_size, folder, tokenizer):
    spec = dict(spec)
    dtype, exit_layer = spec.pop("dtype"), spec.pop("exit_layer")
    cfg = T5Config(
        vocab_size=vocab_size, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0,
        eos_token_id=1, **spec,
    )
    torch.manual_seed(sum(map(ord, name)))
    model = T5ForConditionalGeneration(cfg).eval()
    if not spec["tie_word_embeddings"]:
        # transformers 5 ties the head to the embedding even for v1.1 configs; give it its own.
        model.lm_head.weight = torch.nn.Parameter(torch.randn(vocab_size, cfg.d_model))
    with torch.no_grad():
        # With T5's init the tied embedding dominates the residual stream, so a random v1.0
        # model just repeats its input token; stronger decoder outputs make greedy runs varied.
        for pname, p in model.decoder.named_parameters():
            if pname.endswith((".o.weight", ".wo.weight")):
                p.mul_(DECODER_GAIN[name])
    folder.mkdir(parents=True, exist_ok=True)
    model.to(dtype).save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "free.json").write_text(
        json.dumps({"shallow_exit_layer": exit_layer, "confidence": "top2_gap", "threshold": 0.9}, indent=2)
    )
    # The reference is whatever transformers makes of the files on disk, in f32.
    return T5ForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()


@torch.no_grad()
def record(model, tokenizer, folder):
    tensors, cases = {}, []
    dec = model.decoder
    scale = model.model_dim**-0.5 if model.config.scale_decoder_outputs else 1.0
    for i, (text, target) in enumerate(zip(TEXTS, TARGETS)):
        ids = tokenizer.encode(text).ids
        dec_ids = [model.config.decoder_start_token_id] + tokenizer.encode(target).ids
        inp = torch.tensor([ids])
        out = model(
            input_ids=inp, decoder_input_ids=torch.tensor([dec_ids]), output_hidden_states=True,
            use_cache=False,
        )
        tensors[f"case{i}.encoder_output"] = out.encoder_last_hidden_state[0].contiguous()
        hidden = out.decoder_hidden_states  # h_0 .. h_{L-1}, then final_norm(h_L)
        blocks = model.config.num_decoder_layers
        for k in range(1, blocks):
            logits = model.lm_head(dec.final_layer_norm(hidden[k]) * scale)
            tensors[f"case{i}.exit{k}.logits"] = logits[0].contiguous()
        tensors[f"case{i}.exit{blocks}.logits"] = out.logits[0].contiguous()
        # Recomputing the last exit from h_L's normed state must give the model's own logits.
        assert torch.allclose(model.lm_head(hidden[blocks] * scale), out.logits, atol=1e-5)
        # transformers 5 fails to use the cache when the depths differ: decode without it.
        gen = model.generate(
            inp, generation_config=GenerationConfig(
                do_sample=False, num_beams=1, max_new_tokens=MAX_NEW_TOKENS, decoder_start_token_id=0,
                pad_token_id=0, eos_token_id=1,
            ), use_cache=False,
        )[0].tolist()
        assert gen[0] == 0
        cases.append({"text": text, "input_ids": ids, "decoder_input_ids": dec_ids, "generated": gen[1:]})
    save_file(tensors, str(folder / "expected.safetensors"))
    (folder / "expected.json").write_text(
        json.dumps({"max_new_tokens": MAX_NEW_TOKENS, "cases": cases}, ensure_ascii=False, indent=1)
    )


def buckets():
    rel = torch.arange(-300, 301)
    out = []
    for nb, md in [(32, 128), (16, 32), (32, 64), (8, 20)]:
        for bidir in [True, False]:
            b = T5Attention._relative_position_bucket(rel, bidirectional=bidir, num_buckets=nb, max_distance=md)
            out.append({"num_buckets": nb, "max_distance": md, "bidirectional": bidir,
                        "relative_from": -300, "buckets": b.tolist()})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(512)
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "buckets.json").write_text(json.dumps(buckets()))
    for name, spec in MODELS.items():
        folder = out / name
        model = make_model(name, spec, 512, folder, tokenizer)
        record(model, tokenizer, folder)
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters -> {folder}")


if __name__ == "__main__":
    main()
