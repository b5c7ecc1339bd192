"""Exports a T5 checkpoint (HF folder: config.json, model.safetensors, tokenizer.json) to the
ONNX layout transformers.js (@huggingface/transformers 4.x) loads for text2text generation,
so the browser bench (scripts/bench-browser.sh) can run the same weights in both libraries.

Run by hand (needs torch, safetensors, tokenizers, transformers from train/requirements.txt
and tools/requirements-onnx.txt):
    python tools/export_onnx.py MODEL_DIR OUT_DIR [--check-engine target/release/free
                                                   --data data/test.jsonl --limit N]

Writes OUT_DIR/{config.json, generation_config.json, tokenizer.json, tokenizer_config.json,
onnx/encoder_model.onnx, onnx/decoder_model_merged.onnx}. transformers.js asks for exactly
these names for a Seq2Seq model with dtype "fp32" (src/models/session_config.js,
src/utils/dtypes.js); the graphs are f32 (f16 checkpoints are widened), like the engine's CPU path.
With `--dtypes fp32,fp16,q8` (the default) it also writes the two variants transformers.js's
users download most, made as its own conversion script makes them (scripts/quantize.py in
huggingface/transformers.js): `*_fp16.onnx` (every float tensor in f16, inputs and outputs kept
f32: onnxconverter-common's convert_float_to_float16 with keep_io_types) and `*_quantized.onnx`,
its `q8` and its default on the wasm CPU (ONNX Runtime's dynamic quantization, IntegerOps:
weights int8 with one scale per tensor, activations quantized to uint8 at run time; no Conv
here, so signed weights).

Why not optimum: optimum-onnx 0.1 needs transformers < 4.58 (train/ pins 5.23), and HF's T5
cache breaks with unequal encoder/decoder depths (the demo model has 4 and 8). So the graphs
are written here from the checkpoint's tensors, with HF's T5 as the numerical reference
(checked below: encoder states and teacher-forced logits).

The decoder is one graph for every step, with no If node: transformers.js feeds the first step
empty caches (length 0) and later steps the previous `present.*` outputs (it keeps the first
step's encoder keys/values and drops the later ones). Self-attention appends the new rows to
the cached ones; cross-attention projects only the encoder rows the cache does not yet hold
(`encoder_hidden_states[:, cached:]`: all of them on the first step, none after), so the
encoder is projected once per generation, as optimum's merged decoder does with its If node.
"""

import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

OPSET = 17


def relative_buckets(relative, bidirectional, num_buckets, max_distance):
    """T5's bucket of each relative position (key minus query): HF's
    T5Attention._relative_position_bucket, written out here for one change. HF takes log(0) =
    -inf for the small distances and casts it to an integer before `where` discards it; in an
    ONNX graph that cast of -inf is implementation-defined, so here log() never sees a zero."""
    buckets = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative > 0).to(relative.dtype) * num_buckets
        distance = relative.abs()
    else:
        distance = -torch.clamp(relative, max=0)
    max_exact = num_buckets // 2
    large = max_exact + (
        torch.log(distance.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    ).to(relative.dtype)
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(distance < max_exact, distance, large)


class T5Parts(nn.Module):
    """The checkpoint's weights (f32) and the pieces both graphs share."""

    def __init__(self, config, tensors):
        super().__init__()
        self.c = config
        self.w = {k: v.float() for k, v in tensors.items()}
        # Each linear layer's weight also transposed, (in, out), so that its MatMul reads an
        # initializer as exporting nn.Linear gives: ONNX Runtime's quantizer (q8) only
        # quantizes a MatMul whose weight is a constant, not the output of a Transpose.
        self.t = {k: v.T.contiguous() for k, v in self.w.items() if v.dim() == 2 and "relative_attention_bias" not in k}
        for table, prefix in ((self.w, "w"), (self.t, "t")):
            for i, (name, value) in enumerate(table.items()):
                self.register_buffer(f"{prefix}{i}", value)
                table[name] = getattr(self, f"{prefix}{i}")
        self.heads = config["num_heads"]
        self.d_kv = config["d_kv"]
        self.eps = config.get("layer_norm_epsilon", 1e-6)
        act = config.get("dense_act_fn") or config.get("feed_forward_proj", "relu").split("-")[-1]
        self.act = {"relu": torch.relu, "gelu_new": lambda x: nn.functional.gelu(x, approximate="tanh"), "gelu": lambda x: nn.functional.gelu(x, approximate="tanh")}[act]
        self.gated = config.get("is_gated_act", config.get("feed_forward_proj", "relu").startswith("gated"))

    def norm(self, x, name):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w[name]

    def split(self, x, weight):
        """x [B, T, D] @ weight^T -> [B, H, T, d_kv]."""
        y = x @ self.t[weight]
        return y.view(y.shape[0], y.shape[1], self.heads, self.d_kv).transpose(1, 2)

    def attend(self, q, k, v, bias, out):
        # T5 does not scale the scores by 1/sqrt(d_kv) (the scale is folded into its init).
        scores = q @ k.transpose(-1, -2) + bias
        ctx = torch.softmax(scores, dim=-1) @ v
        ctx = ctx.transpose(1, 2).reshape(ctx.shape[0], ctx.shape[2], self.heads * self.d_kv)
        return ctx @ self.t[out]

    def ffn(self, x, prefix):
        if self.gated:
            h = self.act(x @ self.t[f"{prefix}.wi_0.weight"]) * (x @ self.t[f"{prefix}.wi_1.weight"])
        else:
            h = self.act(x @ self.t[f"{prefix}.wi.weight"])
        return h @ self.t[f"{prefix}.wo.weight"]

    def position_bias(self, stack, query_pos, key_pos, bidirectional):
        """[1, H, Tq, Tk] from the first block's relative-attention table (shared by all blocks)."""
        buckets = relative_buckets(
            key_pos[None, :] - query_pos[:, None],
            bidirectional,
            self.c["relative_attention_num_buckets"],
            self.c.get("relative_attention_max_distance", 128),
        )
        table = self.w[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        return table[buckets].permute(2, 0, 1).unsqueeze(0)


def mask_bias(mask):
    """[B, T] of 1/0 -> an additive [B, 1, 1, T] bias (HF uses the dtype's minimum likewise)."""
    return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


class Encoder(nn.Module):
    def __init__(self, parts):
        super().__init__()
        self.p = parts

    def forward(self, input_ids, attention_mask):
        p = self.p
        h = p.w["shared.weight"][input_ids]
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        bias = p.position_bias("encoder", pos, pos, True) + mask_bias(attention_mask)
        for i in range(p.c["num_layers"]):
            b = f"encoder.block.{i}.layer"
            n = p.norm(h, f"{b}.0.layer_norm.weight")
            a = f"{b}.0.SelfAttention"
            h = h + p.attend(p.split(n, f"{a}.q.weight"), p.split(n, f"{a}.k.weight"), p.split(n, f"{a}.v.weight"), bias, f"{a}.o.weight")
            h = h + p.ffn(p.norm(h, f"{b}.1.layer_norm.weight"), f"{b}.1.DenseReluDense")
        return p.norm(h, "encoder.final_layer_norm.weight")


class Decoder(nn.Module):
    def __init__(self, parts):
        super().__init__()
        self.p = parts
        self.layers = parts.c.get("num_decoder_layers") or parts.c["num_layers"]

    def forward(self, input_ids, encoder_attention_mask, encoder_hidden_states, *past):
        p = self.p
        cached = past[0].shape[2]
        steps = input_ids.shape[1]
        h = p.w["shared.weight"][input_ids]
        query_pos = torch.arange(steps, device=h.device) + cached
        key_pos = torch.cat([torch.arange(cached, device=h.device), query_pos])
        causal = (key_pos[None, :] > query_pos[:, None]).float() * torch.finfo(torch.float32).min
        self_bias = p.position_bias("decoder", query_pos, key_pos, False) + causal
        cross_bias = mask_bias(encoder_attention_mask)
        present = []
        for i in range(self.layers):
            b = f"decoder.block.{i}.layer"
            dk, dv, ek, ev = past[4 * i : 4 * i + 4]
            n = p.norm(h, f"{b}.0.layer_norm.weight")
            a = f"{b}.0.SelfAttention"
            k = torch.cat([dk, p.split(n, f"{a}.k.weight")], dim=2)
            v = torch.cat([dv, p.split(n, f"{a}.v.weight")], dim=2)
            h = h + p.attend(p.split(n, f"{a}.q.weight"), k, v, self_bias, f"{a}.o.weight")
            n = p.norm(h, f"{b}.1.layer_norm.weight")
            a = f"{b}.1.EncDecAttention"
            fresh = encoder_hidden_states[:, ek.shape[2] :]
            ck = torch.cat([ek, p.split(fresh, f"{a}.k.weight")], dim=2)
            cv = torch.cat([ev, p.split(fresh, f"{a}.v.weight")], dim=2)
            h = h + p.attend(p.split(n, f"{a}.q.weight"), ck, cv, cross_bias, f"{a}.o.weight")
            h = h + p.ffn(p.norm(h, f"{b}.2.layer_norm.weight"), f"{b}.2.DenseReluDense")
            present += [k, v, ck, cv]
        h = p.norm(h, "decoder.final_layer_norm.weight")
        # transformers 5 writes `scale_decoder_outputs` (older configs: scaled unless
        # tie_word_embeddings is false); the head is lm_head.weight when the checkpoint has one.
        if p.c.get("scale_decoder_outputs", p.c.get("tie_word_embeddings") is not False):
            h = h * p.c["d_model"] ** -0.5
        head = p.t.get("lm_head.weight", p.t["shared.weight"])
        return (h @ head, *present)


def cache_names(layers, prefix):
    return [f"{prefix}.{i}.{part}.{kv}" for i in range(layers) for part in ("decoder", "encoder") for kv in ("key", "value")]


# transformers.js's file name suffix of each dtype (src/utils/dtypes.js, DEFAULT_DTYPE_SUFFIX_MAPPING).
SUFFIX = {"fp32": "", "fp16": "_fp16", "q8": "_quantized"}
GRAPHS = ("encoder_model", "decoder_model_merged")


def to_fp16(model):
    """The graph in f16 with f32 inputs and outputs. Two repairs to onnxconverter-common's
    result, which ONNX Runtime otherwise refuses to load: the graph's own casts to f32 (masks,
    bucket arithmetic) now cast to f16 like everything around them; and where a graph output
    is also read inside the graph (the decoder's `present.*` caches, which attention reads),
    the readers take the f16 value rather than the f32 copy made for the output."""
    import onnx
    from onnxconverter_common import float16

    to_f32 = {n.name for n in model.graph.node if n.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)}
    model = float16.convert_float_to_float16(model, keep_io_types=True)
    outputs = {o.name for o in model.graph.output}
    output_casts = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Cast" and n.output[0] in outputs}
    for node in model.graph.node:
        if node.name in to_f32:
            next(a for a in node.attribute if a.name == "to").i = onnx.TensorProto.FLOAT16
        if node.output[0] not in output_casts:
            node.input[:] = [output_casts.get(name, name) for name in node.input]
    return model


def convert(onnx_dir: Path, dtype: str):
    """Writes the `dtype` variant of both fp32 graphs beside them."""
    for graph in GRAPHS:
        src, dst = onnx_dir / f"{graph}.onnx", onnx_dir / f"{graph}{SUFFIX[dtype]}.onnx"
        if dtype == "fp16":
            import onnx

            onnx.save(to_fp16(onnx.load(src)), dst)
        elif dtype == "q8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(
                src, dst, per_channel=False, reduce_range=False, weight_type=QuantType.QInt8,
                extra_options={"EnableSubgraph": True, "MatMulConstBOnly": True},
            )


def export(model_dir: Path, out: Path):
    config = json.loads((model_dir / "config.json").read_text())
    parts = T5Parts(config, load_file(model_dir / "model.safetensors")).eval()
    enc, dec = Encoder(parts).eval(), Decoder(parts).eval()
    layers, heads, d_kv, d_model = dec.layers, parts.heads, parts.d_kv, config["d_model"]
    (out / "onnx").mkdir(parents=True, exist_ok=True)

    # Dummy sizes all different and >= 2, so the tracer cannot mistake one dimension for another.
    batch, src, cached_enc, cached_dec, steps = 2, 7, 3, 4, 5
    ids = torch.randint(2, config["vocab_size"], (batch, src))
    with torch.no_grad():
        torch.onnx.export(
            enc,
            (ids, torch.ones_like(ids)),
            out / "onnx/encoder_model.onnx",
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": {0: "batch_size", 1: "encoder_sequence_length"},
                "attention_mask": {0: "batch_size", 1: "encoder_sequence_length"},
                "last_hidden_state": {0: "batch_size", 1: "encoder_sequence_length"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
        # The cache's length axes get names transformers.js cannot resolve, so its empty first-step
        # cache has length 0 there; `batch_size` it resolves (models/modeling_utils.js, addPastKeyValues).
        past = []
        axes = {
            "input_ids": {0: "batch_size", 1: "decoder_sequence_length"},
            "encoder_attention_mask": {0: "batch_size", 1: "encoder_sequence_length"},
            "encoder_hidden_states": {0: "batch_size", 1: "encoder_sequence_length"},
            "logits": {0: "batch_size", 1: "decoder_sequence_length"},
        }
        for name in cache_names(layers, "past_key_values"):
            length = cached_dec if ".decoder." in name else cached_enc
            past.append(torch.randn(batch, heads, length, d_kv))
            axis = "past_decoder_sequence_length" if ".decoder." in name else "encoder_sequence_length_out"
            axes[name] = {0: "batch_size", 2: axis}
        for name in cache_names(layers, "present"):
            axes[name] = {0: "batch_size", 2: "past_decoder_sequence_length + 1" if ".decoder." in name else "encoder_sequence_length_out"}
        torch.onnx.export(
            dec,
            (torch.randint(2, config["vocab_size"], (batch, steps)), torch.ones(batch, src, dtype=torch.long), torch.randn(batch, src, d_model), *past),
            out / "onnx/decoder_model_merged.onnx",
            input_names=["input_ids", "encoder_attention_mask", "encoder_hidden_states", *cache_names(layers, "past_key_values")],
            output_names=["logits", *cache_names(layers, "present")],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )

    for name in ("config.json", "generation_config.json", "tokenizer.json"):
        if (model_dir / name).exists():
            shutil.copy(model_dir / name, out / name)
    # transformers.js reads tokenizer_config.json beside tokenizer.json (special tokens, limits).
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "T5Tokenizer",
                "eos_token": "</s>",
                "pad_token": "<pad>",
                "unk_token": "<unk>",
                "model_max_length": config.get("n_positions", 512),
            },
            indent=2,
        )
        + "\n"
    )
    return parts


class OnnxT5:
    """Greedy decoding with the exported graphs, fed the way transformers.js feeds them."""

    def __init__(self, out: Path, layers: int, heads: int, d_kv: int, dtype: str = "fp32"):
        import onnxruntime as ort

        suffix = SUFFIX[dtype]
        self.enc = ort.InferenceSession(str(out / f"onnx/encoder_model{suffix}.onnx"), providers=["CPUExecutionProvider"])
        self.dec = ort.InferenceSession(str(out / f"onnx/decoder_model_merged{suffix}.onnx"), providers=["CPUExecutionProvider"])
        self.layers, self.heads, self.d_kv = layers, heads, d_kv

    def encode(self, ids):
        ids = np.array([ids], dtype=np.int64)
        return self.enc.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]

    def step(self, token, states, mask, past):
        feeds = {"input_ids": np.array([[token]], dtype=np.int64), "encoder_attention_mask": mask, "encoder_hidden_states": states}
        feeds.update(zip(cache_names(self.layers, "past_key_values"), past))
        logits, *present = self.dec.run(None, feeds)
        return logits, present

    def generate(self, ids, max_new_tokens, start=0, eos=1):
        states = self.encode(ids)
        mask = np.ones((1, len(ids)), dtype=np.int64)
        past = [np.zeros((1, self.heads, 0, self.d_kv), dtype=np.float32) for _ in range(4 * self.layers)]
        out, token = [], start
        for _ in range(max_new_tokens):
            logits, present = self.step(token, states, mask, past)
            token = int(logits[0, -1].argmax())
            if token == eos:
                break
            out.append(token)
            past = present
        return out


def check_against_hf(model_dir: Path, out: Path, parts: T5Parts, texts):
    """Encoder states and teacher-forced logits of the ONNX graphs against HF's T5 (no cache,
    which works at unequal depths), within f32 rounding; also a stepwise (cached) decode."""
    from tokenizers import Tokenizer
    from transformers import T5ForConditionalGeneration

    hf = T5ForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    onnx = OnnxT5(out, Decoder(parts).layers, parts.heads, parts.d_kv)
    worst_states = worst_logits = 0.0
    for text in texts:
        ids = tok.encode(text).ids
        target = [0] + tok.encode(text[: len(text) // 2]).ids[:12]
        with torch.no_grad():
            ref = hf(input_ids=torch.tensor([ids]), decoder_input_ids=torch.tensor([target]), use_cache=False)
        states = onnx.encode(ids)
        worst_states = max(worst_states, float(np.abs(states - ref.encoder_last_hidden_state.numpy()).max()))
        mask = np.ones((1, len(ids)), dtype=np.int64)
        past = [np.zeros((1, onnx.heads, 0, onnx.d_kv), dtype=np.float32) for _ in range(4 * onnx.layers)]
        for t, token in enumerate(target):
            logits, present = onnx.step(token, states, mask, past)
            past = present
            worst_logits = max(worst_logits, float(np.abs(logits[0, -1] - ref.logits[0, t].numpy()).max()))
    scale = float(np.abs(ref.logits.numpy()).max())
    print(f"against HF transformers: encoder states max |diff| {worst_states:.2e}, stepwise logits max |diff| {worst_logits:.2e} (logits up to {scale:.1f})")
    if worst_states > 1e-3 or worst_logits > 1e-3 * max(1.0, scale):
        raise SystemExit("the ONNX graphs do not match HF transformers' T5")


def engine_ids(tok, text, prefix, limit, eos=1):
    """The engine's input ids (crate/src/pipeline.rs encode_input): prefix + the text's first
    64 bytes per token of the limit (INPUT_BYTES_PER_TOKEN, cut at a character), cut to the
    model's limit keeping the final </s>."""
    head = text.encode()[: limit * 64].decode(errors="ignore")
    ids = tok.encode(prefix + head).ids
    if len(ids) > limit:
        last = ids[-1]
        ids = ids[:limit]
        if last == eos:
            ids[-1] = last
    return ids


def check_against_engine(model_dir: Path, out: Path, parts: T5Parts, free_bin: str, data: Path, limit: int, max_new_tokens: int, dtype: str = "fp32"):
    """Greedy outputs of the ONNX graphs (of `dtype`) against the engine's `full` strategy
    (with the weights as stored), on the first `limit` inputs per task of `data`."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    free = json.loads((model_dir / "free.json").read_text()) if (model_dir / "free.json").exists() else {}
    prefixes = free.get("tasks", {"summarize": "summarize: ", "translate": "translate English to French: "})
    onnx = OnnxT5(out, Decoder(parts).layers, parts.heads, parts.d_kv, dtype)
    seen, same, differ = {}, 0, []
    for line in data.read_text().splitlines():
        ex = json.loads(line)
        if seen.get(ex["task"], 0) >= limit:
            continue
        seen[ex["task"]] = seen.get(ex["task"], 0) + 1
        ids = engine_ids(tok, ex["source"], prefixes[ex["task"]], parts.c.get("n_positions", 512))
        ours = onnx.generate(ids, max_new_tokens, start=parts.c.get("decoder_start_token_id", 0), eos=parts.c.get("eos_token_id", 1))
        run = subprocess.run(
            [free_bin, "generate", "--model", str(model_dir), "--json", "--task", ex["task"], "--strategy", "full", "--max-new-tokens", str(max_new_tokens), ex["source"]],
            check=True, capture_output=True, text=True,
        )
        engine = json.loads(run.stdout)["tokens"]
        if engine == ours:
            same += 1
        else:
            differ.append((ex["task"], ours, engine))
        print(f"\rcompared {sum(seen.values())} inputs, {len(differ)} differ", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    total = sum(seen.values())
    print(f"{dtype} against the engine's full strategy: {same}/{total} greedy outputs identical")
    for task, ours, engine in differ:
        first = next((i for i, (a, b) in enumerate(zip(ours, engine)) if a != b), min(len(ours), len(engine)))
        print(f"  {task}: differ from token {first}: onnx {ours[first:first + 5]} engine {engine[first:first + 5]}")
    return same, total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--check-engine", metavar="FREE_BIN", help="the `free` CLI, to compare greedy outputs with its full strategy")
    ap.add_argument("--data", type=Path, default=Path("data/test.jsonl"))
    ap.add_argument("--limit", type=int, default=100, help="inputs per task for --check-engine")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--dtypes", default="fp32,fp16,q8", help="transformers.js dtypes to write, from fp32, fp16, q8 (fp32 always)")
    args = ap.parse_args()
    dtypes = [d for d in args.dtypes.split(",") if d]
    unknown = [d for d in dtypes if d not in SUFFIX]
    if unknown:
        ap.error(f"--dtypes: unknown {', '.join(unknown)}; known: {', '.join(SUFFIX)}")
    torch.manual_seed(0)
    parts = export(args.model_dir, args.out_dir)
    for dtype in dtypes:
        convert(args.out_dir / "onnx", dtype)
        print(f"wrote {args.out_dir}/onnx/encoder_model{SUFFIX[dtype]}.onnx and decoder_model_merged{SUFFIX[dtype]}.onnx")
    check_against_hf(args.model_dir, args.out_dir, parts, [
        "summarize: This package provides the command line tools to manage network interfaces.",
        "translate English to French: a library for reading and writing compressed archives",
    ])
    if args.check_engine:
        # fp32 must equal the engine; the lower precisions only report how often they do.
        for dtype in dtypes:
            same, total = check_against_engine(args.model_dir, args.out_dir, parts, args.check_engine, args.data, args.limit, args.max_new_tokens, dtype)
            if dtype == "fp32" and same < total:
                raise SystemExit(1)


if __name__ == "__main__":
    main()
