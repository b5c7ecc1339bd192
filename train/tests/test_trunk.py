"""The continuous training line: a trunk saved from a run and resumed in a fresh run folder
continues where it stopped (same weights to f16's precision, data position, step), a small
optimizer state travels with it, and the recipe options the A/B runs compare do what they say."""
import gzip
import json
import math
import os
import shutil
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from free_train.free import FreeObjective
from free_train.train import lr_at, main as train_main, make_optimizer, set_lr
from free_train.trunk import load_trunk, read_manifest, save_trunk

from test_train_export import TINY, read_metrics, workspace  # noqa: F401  (the module fixture)


@pytest.fixture(scope="module")
def line(workspace):  # noqa: F811
    run = workspace / "line"
    train_main(["--run-dir", str(run), "--data", str(workspace / "data"),
                "--tokenizer", str(workspace / "tokenizer.json"), "--max-steps", "40", "--lr", "3e-3",
                "--warmup", "10", "--schedule", "constant", "--eval-first", *TINY])
    return run


def test_trunk_resumes_where_the_run_stopped(line, tmp_path):
    trunk = tmp_path / "trunk"
    # the demo model's AdamW moments are ~96 MiB, over the limit; the tiny model's fit under it
    man = save_trunk(str(line), str(trunk), optimizer_limit_mib=0)
    assert {"config.json", "model.safetensors", "tokenizer.json", "trunk.json"} <= set(os.listdir(trunk))
    assert "optimizer.safetensors" not in os.listdir(trunk), "moments over the limit are not committed"
    assert man["state"]["step"] == 40 and man["optimizer_state"] is None
    last = man["last_validation"]
    assert last["step"] == 40

    # a fresh machine: a new run folder, nothing but the trunk
    fresh = tmp_path / "fresh"
    train_main(["--run-dir", str(fresh), "--resume", "--from-trunk", str(trunk), "--max-steps", "43",
                "--rewarm", "4"])
    val = read_metrics(fresh, "val")
    first = val[0]
    assert first["step"] == 40, "--eval-first travels with the trunk's settings"
    # f16 weights: the continuity the model issue asks for is 0.02 nats; rounding costs far less
    for k in ("all_ce_deep", "all_ce_shallow"):
        assert abs(first[k] - last[k]) < 0.005, (k, first[k], last[k])
    recs = read_metrics(fresh, "train")
    assert [r["step"] for r in recs] == [41, 42, 43]
    # re-warmed: the first step of the fresh optimizer runs at a quarter of the constant 3e-3
    assert recs[0]["lr"] == pytest.approx(3e-3 / 4) and recs[-1]["lr"] == pytest.approx(3e-3 * 3 / 4)
    st = torch.load(fresh / "checkpoint" / "trainer_state.pt", weights_only=False)["state"]
    assert st["step"] == 43 and st["batch_in_epoch"] == man["state"]["batch_in_epoch"] + 3
    assert st["tokens"] > man["state"]["tokens"]


def test_the_run_own_newer_checkpoint_wins_over_an_older_trunk(line, tmp_path):
    trunk = tmp_path / "trunk"
    save_trunk(str(line), str(trunk))
    run = tmp_path / "ahead"
    shutil.copytree(line, run)
    train_main(["--run-dir", str(run), "--resume", "--max-steps", "42"])
    train_main(["--run-dir", str(run), "--resume", "--from-trunk", str(trunk), "--max-steps", "44"])
    log = (run / "train.log").read_text()
    assert "resumed from the checkpoint at step 42" in log
    assert "fresh optimizer" not in log


def test_the_settings_come_with_the_weights_that_continue(line, tmp_path):
    """A trunk ahead of the run's checkpoint (a GPU burst merged into it) brings its own settings,
    not the run folder's older args.json; a trunk that is not ahead leaves the run's."""
    from free_train.train import parse_args
    trunk = tmp_path / "trunk"
    save_trunk(str(line), str(trunk))
    man = read_manifest(str(trunk))
    man["args"]["dropout"] = 0.1
    (trunk / "trunk.json").write_text(json.dumps(man))
    argv = ["--run-dir", str(line), "--resume", "--from-trunk", str(trunk)]
    assert parse_args(argv).dropout == 0.0  # level with the run: the run goes on as it was
    man["state"]["tokens"] += 1
    (trunk / "trunk.json").write_text(json.dumps(man))
    assert parse_args(argv).dropout == 0.1
    assert parse_args(argv + ["--dropout", "0.2"]).dropout == 0.2  # the command line still decides


def test_a_small_optimizer_state_travels_with_the_trunk(workspace, tmp_path):  # noqa: F811
    run = tmp_path / "adafactor"
    train_main(["--run-dir", str(run), "--data", str(workspace / "data"), "--tokenizer",
                str(workspace / "tokenizer.json"), "--max-steps", "6", "--lr", "1e-2", "--warmup", "2",
                "--schedule", "constant", "--optimizer", "adafactor-relative", *TINY])
    trunk = tmp_path / "trunk"
    man = save_trunk(str(run), str(trunk))
    assert man["optimizer_state"] is not None and os.path.exists(trunk / "optimizer.safetensors")
    saved = torch.load(run / "checkpoint" / "trainer_state.pt", weights_only=False)["optimizer"]
    back = load_trunk(str(trunk))["optimizer"]
    assert back["param_groups"] == json.loads(json.dumps(saved["param_groups"]))  # tuples come back as lists
    for pid, entry in saved["state"].items():
        for k, v in entry.items():
            if torch.is_tensor(v):
                assert torch.equal(back["state"][pid][k], v), (pid, k)
            else:
                assert back["state"][pid][k] == v
    fresh = tmp_path / "fresh"
    train_main(["--run-dir", str(fresh), "--resume", "--from-trunk", str(trunk), "--max-steps", "7"])
    assert "fresh optimizer" not in (fresh / "train.log").read_text()


def test_new_data_is_refused_unless_asked_and_then_starts_an_epoch(line, workspace, tmp_path):  # noqa: F811
    data2 = tmp_path / "data2"
    data2.mkdir()
    shutil.copy(workspace / "data" / "validation.jsonl", data2)
    with gzip.open(workspace / "data" / "train.jsonl.gz", "rt") as f:
        rows = f.readlines()
    with gzip.open(data2 / "train.jsonl.gz", "wt") as f:
        f.writelines(rows + rows[:40])
    run = tmp_path / "more"
    shutil.copytree(line, run)
    before = torch.load(run / "checkpoint" / "trainer_state.pt", weights_only=False)["state"]
    with pytest.raises(SystemExit, match="add --new-data"):
        train_main(["--run-dir", str(run), "--resume", "--data", str(data2), "--max-steps", "41"])
    train_main(["--run-dir", str(run), "--resume", "--data", str(data2), "--new-data", "--max-steps", "41"])
    st = torch.load(run / "checkpoint" / "trainer_state.pt", weights_only=False)["state"]
    assert st["epoch"] == before["epoch"] + 1 and st["batch_in_epoch"] == 1
    assert st["batches_from"]["examples"] == before["batches_from"]["examples"] + 40


def test_a_changed_optimizer_is_fresh_and_rewarmed(line, tmp_path):
    run = tmp_path / "switch"
    shutil.copytree(line, run)
    train_main(["--run-dir", str(run), "--resume", "--optimizer", "adafactor-relative", "--rewarm", "2",
                "--max-steps", "42"])
    assert "fresh optimizer: the optimizer changed (adamw -> adafactor-relative)" in (run / "train.log").read_text()
    recs = read_metrics(run, "train")
    assert recs[-2]["lr"] == pytest.approx(3e-3 / 2) and recs[-1]["lr"] == pytest.approx(3e-3)


def test_schedule_rewarm_and_embedding_rate():
    args = SimpleNamespace(lr=1e-3, warmup=10, schedule="constant", rewarm=4, total_steps=0, min_lr_ratio=0.1,
                           embed_lr_scale=8.0, weight_decay=0.01, optimizer="adamw", beta2=0.98,
                           decay_start=0, decay_steps=0)
    assert lr_at(5, args) == pytest.approx(6e-4)          # warm-up
    assert lr_at(500, args) == pytest.approx(1e-3)        # constant
    assert lr_at(500, args, rewarm_from=500) == pytest.approx(2.5e-4)
    assert lr_at(503, args, rewarm_from=500) == pytest.approx(1e-3)
    cool = SimpleNamespace(**{**vars(args), "decay_start": 600, "decay_steps": 100})   # a branch's cooldown
    assert [lr_at(s, cool) for s in (599, 600, 650, 700, 800)] == pytest.approx([1e-3, 1e-3, 5e-4, 0.0, 0.0])
    model = torch.nn.Module()
    model.shared = torch.nn.Embedding(10, 4)
    model.proj = torch.nn.Linear(4, 4)
    opt = make_optimizer(model, args)
    set_lr(opt, 1e-3)
    by_size = {g["params"][0].numel(): g for g in opt.param_groups}
    assert by_size[40]["lr"] == pytest.approx(8e-3)       # the embedding
    assert by_size[16]["lr"] == pytest.approx(1e-3) and by_size[16]["weight_decay"] == 0.01
    assert by_size[4]["lr"] == pytest.approx(1e-3) and by_size[4]["weight_decay"] == 0.0


def test_label_smoothing_is_the_textbook_mixture(line):
    from transformers import T5ForConditionalGeneration
    model = T5ForConditionalGeneration.from_pretrained(line / "checkpoint").eval()
    obj = FreeObjective(model, 2, alpha=0.0)
    ids = torch.tensor([[5, 9, 17, 33, 1], [6, 7, 1, 0, 0]])
    att = (ids != 0).long()
    lab = torch.tensor([[7, 8, 9, 1], [4, 1, -100, -100]])
    with torch.no_grad():
        plain = obj(ids, att, lab, keep_logits=True)
        smooth = obj(ids, att, lab, label_smoothing=0.1)
    mask = lab != -100
    logp = F.log_softmax(plain.deep_logits.float(), -1)[mask]
    nll = -logp.gather(1, lab[mask].unsqueeze(1)).mean()
    uniform = -logp.mean()
    assert float(plain.ce_deep) == pytest.approx(float(nll), rel=1e-5)
    assert float(smooth.ce_deep) == pytest.approx(float(0.9 * nll + 0.1 * uniform), rel=1e-5)
    assert math.isfinite(float(smooth.ce_shallow)) and float(smooth.ce_shallow) != float(plain.ce_shallow)
    obj.tap.remove()
