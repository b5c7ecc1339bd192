"""A short training smoke run (both exits' losses must fall), --resume, --init, and the exporter."""
import gzip
import hashlib
import json
import os
import shutil

import pytest
import torch
from safetensors import safe_open
from transformers import T5ForConditionalGeneration

from free_train import TASK_PREFIXES
from free_train.export import export
from free_train.tokenizer import train_tokenizer, training_texts
from free_train.train import main as train_main

from conftest import synthetic_rows

TINY = ["--d-model", "64", "--d-kv", "16", "--num-heads", "4", "--d-ff", "128",
        "--encoder-layers", "2", "--decoder-layers", "6", "--shallow-exit-layer", "2",
        "--batch-tokens", "1024", "--threads", "1", "--log-every", "0", "--eval-every", "100000",
        "--ckpt-every", "100000", "--seed", "7"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = root / "data"
    data.mkdir()
    rows = synthetic_rows(400)
    with gzip.open(data / "train.jsonl.gz", "wt", encoding="utf-8") as f:
        for r in rows[:360]:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(data / "validation.jsonl", "w") as f:
        for r in rows[360:]:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tok = train_tokenizer(training_texts(rows[:360]), 150)
    tok.save(str(root / "tokenizer.json"))
    return root


def read_metrics(run_dir, kind):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["kind"] == kind]


@pytest.fixture(scope="module")
def trained(workspace):
    run = workspace / "run"
    train_main(["--run-dir", str(run), "--data", str(workspace / "data"),
                "--tokenizer", str(workspace / "tokenizer.json"), "--max-steps", "80",
                "--lr", "3e-3", "--warmup", "10", *TINY])
    return run


def test_smoke_training_both_exits_learn(trained):
    recs = read_metrics(trained, "train")
    assert len(recs) == 80
    first, last = recs[:5], recs[-5:]
    for key in ("ce_shallow", "ce_deep"):
        a = sum(r[key] for r in first) / 5
        b = sum(r[key] for r in last) / 5
        assert b < a - 1.5, f"{key} fell only from {a:.3f} to {b:.3f}"
    val = read_metrics(trained, "val")
    assert val and val[-1]["all_ce_deep"] < 4.0 and val[-1]["all_ce_shallow"] < 4.5
    assert os.path.exists(trained / "checkpoint" / "trainer_state.pt")
    assert os.path.exists(trained / "best" / "model.safetensors")


def test_resume_continues(trained, workspace):
    train_main(["--run-dir", str(trained), "--resume", "--max-steps", "85"])
    recs = read_metrics(trained, "train")
    assert recs[-1]["step"] == 85 and recs[80]["step"] == 81
    st = torch.load(trained / "checkpoint" / "trainer_state.pt", weights_only=False)["state"]
    assert st["step"] == 85


def test_resume_refuses_settings_that_change_the_batches(trained, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    before = (run / "args.json").read_text()
    with pytest.raises(SystemExit, match=r"the batches would differ from the run's \(\{'batch_tokens': \(\d+, 2048\)\}"):
        train_main(["--run-dir", str(run), "--resume", "--batch-tokens", "2048", "--max-steps", "90"])
    assert (run / "args.json").read_text() == before, "a refused resume must leave args.json as it was"
    # The best model's loss travels with it: a resume compares against it.
    assert json.loads((run / "best" / "val.json").read_text())["ce_deep"] == min(r["all_ce_deep"] for r in read_metrics(run, "val"))


def test_a_decaying_schedule_needs_its_length(workspace, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(["--run-dir", str(tmp_path / "r"), "--data", str(workspace / "data"), "--schedule", "cosine",
                    "--warmup", "10", "--max-steps", "3", *TINY])
    assert "decays over --total-steps, which must exceed --warmup (10)" in capsys.readouterr().err


def test_init_from_checkpoint(trained, workspace, tmp_path):
    run2 = tmp_path / "ft"
    train_main(["--run-dir", str(run2), "--data", str(workspace / "data"), "--init", str(trained / "checkpoint"),
                "--max-steps", "3", "--lr", "1e-3", "--warmup", "1", *TINY])
    recs = read_metrics(run2, "train")
    # starts from the trained weights, not from scratch (a fresh model starts near ln(150) = 5)
    assert recs[0]["ce_deep"] < 3.0


def test_export_round_trip(trained, tmp_path):
    out = tmp_path / "model"
    export(str(trained), str(out), which="checkpoint", dtype="f16")
    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "tokenizer.json", "free.json"} <= files
    with open(out / "free.json") as f:
        assert json.load(f) == {"shallow_exit_layer": 2, "confidence": "top2_gap", "threshold": 0.9,
                                "bmm": {"zeta": 0.4, "min_points": 50}}
    weights = (out / "model.safetensors").read_bytes()
    with open(out / "checksums.json") as f:
        assert json.load(f) == {"model.safetensors": {"bytes": len(weights), "sha256": hashlib.sha256(weights).hexdigest()}}
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert "shared.weight" in keys
        assert all(f.get_tensor(k).dtype == torch.float16 for k in keys)
    with open(out / "config.json") as f:
        cfg = json.load(f)
    assert cfg["decoder_start_token_id"] == 0 and cfg["pad_token_id"] == 0 and cfg["eos_token_id"] == 1
    assert cfg["num_decoder_layers"] == 6 and cfg["num_layers"] == 2

    src = T5ForConditionalGeneration.from_pretrained(trained / "checkpoint").eval()
    dst = T5ForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    assert dst.lm_head.weight.data_ptr() == dst.shared.weight.data_ptr()
    ids = torch.tensor([[5, 9, 17, 33, 1]])
    lab = torch.tensor([[7, 8, 9, 1]])
    with torch.no_grad():
        a = src(input_ids=ids, labels=lab).logits
        b = dst(input_ids=ids, labels=lab).logits
    torch.testing.assert_close(b, a, rtol=2e-2, atol=2e-2)
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.7
    # the exported tokenizer is the run's
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tok.encode(TASK_PREFIXES["summarize"] + "x").ids[-1] == 1


def test_bf16_compiled_matches_f32_and_saves_plain_names(trained, workspace, tmp_path):
    """--precision bf16 --compile: the same first batch from the same weights gives f32's loss
    to bf16's precision, and checkpoints keep the plain model's parameter names."""
    runs = {}
    for name, extra in (("f32", []), ("bf16", ["--precision", "bf16", "--compile"])):
        runs[name] = tmp_path / name
        train_main(["--run-dir", str(runs[name]), "--data", str(workspace / "data"), "--init",
                    str(trained / "checkpoint"), "--max-steps", "2", "--lr", "1e-3", "--warmup", "1",
                    *TINY, *extra])
    f32, bf16 = (read_metrics(runs[n], "train")[0] for n in ("f32", "bf16"))
    for key in ("ce_shallow", "ce_deep"):
        assert abs(bf16[key] - f32[key]) < 0.05, f"{key}: bf16 {bf16[key]:.4f} vs f32 {f32[key]:.4f}"
    with safe_open(str(runs["bf16"] / "checkpoint" / "model.safetensors"), "pt") as f:
        compiled = set(f.keys())
    with safe_open(str(runs["f32"] / "checkpoint" / "model.safetensors"), "pt") as f:
        assert compiled == set(f.keys())
