"""The exporter's 8-bit layout (--dtype q8, docs/usage.md#8-bit-checkpoints): which tensors are
stored as I8 with their scales, and quantization exactly as the engine's Matrix::quantize_q8."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import T5Config, T5ForConditionalGeneration

from free_train.export import export, quantize_q8

from conftest import TRAIN_DIR

FIXTURE_TOKENIZER = os.path.join(TRAIN_DIR, "..", "tests", "fixtures", "tokenizer.json")


def test_halves_round_away_from_zero_as_rust_does():
    below_half = np.nextafter(np.float32(0.5), np.float32(0))  # 0.49999997: + 0.5 rounds to 1.0 in f32
    # A row whose largest magnitude is 127 has scale 1: each value is its own x = w / scale.
    row = [127.0, 0.5, -0.5, 1.5, 2.5, -2.5, float(below_half), 126.5, -0.0, 3.4999998]
    q, scale = quantize_q8(torch.tensor([row], dtype=torch.float32))
    assert scale.dtype == torch.float32 and scale.tolist() == [1.0]
    assert q.dtype == torch.int8
    assert q.tolist() == [[127, 1, -1, 2, 3, -3, 0, 127, 0, 3]]


def test_scales_and_clamp_follow_f32_arithmetic():
    w = torch.tensor([[0.1, -0.3, 0.2], [-4.0, 1.0, 3.0]], dtype=torch.float32)
    q, scale = quantize_q8(w)
    s0 = np.float32(0.3) / np.float32(127)  # max |w| / 127 in f32
    assert scale[0].item() == float(s0)
    x = np.array([0.1, -0.3, 0.2], dtype=np.float32) * (np.float32(1) / s0)
    assert q[0].tolist() == [int(np.sign(v) * np.floor(abs(v) + 0.5)) for v in x] == [42, -127, 85]
    assert q[1].tolist() == [-127, 32, 95]
    # every value within half a step of the original
    assert ((q.float() * scale[:, None] - w).abs() <= scale[:, None] / 2 + 1e-7).all()


def test_a_row_of_zeros_gets_scale_one():
    q, scale = quantize_q8(torch.zeros(2, 3))
    assert q.tolist() == [[0, 0, 0], [0, 0, 0]] and scale.tolist() == [1.0, 1.0]


def test_non_finite_weights_are_refused():
    with pytest.raises(SystemExit, match="layer.w holds NaN or infinite values"):
        quantize_q8(torch.tensor([[1.0, float("nan")]]), "layer.w")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A tiny tied T5 saved as f16, with a tokenizer and a free.json: a model folder to convert."""
    torch.manual_seed(3)
    cfg = T5Config(vocab_size=512, d_model=16, d_kv=4, num_heads=2, d_ff=24, num_layers=1,
                   num_decoder_layers=2, relative_attention_num_buckets=8, decoder_start_token_id=0,
                   pad_token_id=0, eos_token_id=1)
    folder = tmp_path_factory.mktemp("src") / "model"
    T5ForConditionalGeneration(cfg).eval().half().save_pretrained(folder)
    shutil.copyfile(FIXTURE_TOKENIZER, folder / "tokenizer.json")
    (folder / "free.json").write_text(json.dumps({"shallow_exit_layer": 1, "threshold": 0.5}))
    return folder


def test_q8_export_layout(model_folder, tmp_path):
    out = tmp_path / "q8"
    export(str(model_folder), str(out), dtype="q8")
    assert json.loads((out / "free.json").read_text()) == {"shallow_exit_layer": 1, "threshold": 0.5}
    with safe_open(str(model_folder / "model.safetensors"), "pt") as f:
        source = {k: f.get_tensor(k) for k in f.keys()}
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt", "free_wasm.weights": "q8"}
        stored = {k: f.get_tensor(k) for k in f.keys()}
    matrices = {k for k, t in source.items() if t.dim() == 2 and "relative_attention_bias" not in k}
    assert "shared.weight" in matrices and "decoder.block.1.layer.2.DenseReluDense.wo.weight" in matrices
    assert len(matrices) == 1 + 6 + 2 * 10  # the embedding, 1 encoder block (4 + 2), 2 decoder blocks (8 + 2)
    assert set(stored) == set(source) | {k + "_scale" for k in matrices}
    for name, t in source.items():
        if name in matrices:
            q, scale = quantize_q8(t.float())
            assert stored[name].dtype == torch.int8 and stored[name].shape == t.shape
            assert stored[name + "_scale"].dtype == torch.float32 and stored[name + "_scale"].shape == (t.shape[0],)
            assert torch.equal(stored[name], q) and torch.equal(stored[name + "_scale"], scale), name
        else:  # norms and the position bias tables: the same values, as f32
            assert stored[name].dtype == torch.float32 and torch.equal(stored[name], t.float()), name
    assert any(k.endswith("relative_attention_bias.weight") for k in stored)
    size = os.path.getsize(out / "model.safetensors")
    assert json.loads((out / "checksums.json").read_text())["model.safetensors"]["bytes"] == size


def test_an_exit_given_anew_replaces_the_folders_free_json(model_folder, tmp_path):
    out = tmp_path / "f16"
    export(str(model_folder), str(out), shallow_exit_layer=1, threshold=0.7)
    assert json.loads((out / "free.json").read_text())["threshold"] == 0.7
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
