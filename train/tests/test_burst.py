"""The GPU burst, on the CPU: a two-step burst from a tiny trunk prints its loss figures, writes
parts under the size limit that merge back into exactly those weights, in a trunk whose step and
tokens add up and that the CPU line resumes from; and the sync-free pieces of FreeObjective the
burst trains with equal the plain ones. Under torchrun (two gloo CPU ranks, one launch of 15-25 s
on two busy cores) rank 0 alone writes the parts, which equal those of one process accumulating
the same global batch."""
import json
import os
import re
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer

from free_train import burst
from free_train.batching import encode_rows
from free_train.data import read_jsonl
from free_train.free import FreeObjective, alignment_on_device, dynamic_alignment
from free_train.train import build_parser, main as train_main, new_config
from free_train.trunk import read_manifest, save_trunk

from conftest import torchrun
from test_train_export import TINY, read_metrics, workspace  # noqa: F401  (the module fixture)

PART_MIB = 0.25  # the tiny model is ~0.75 MiB in f16: several parts


@pytest.mark.parametrize("S", [1, 2, 3, 5, 8])
def test_alignment_on_device_equals_dynamic_alignment(S):
    g = torch.Generator().manual_seed(S)
    for trial in range(300):
        mse = torch.rand(S, S, generator=g)
        if trial % 3 == 0:
            mse = (mse * 3).floor()  # ties: both must take the first of equal minima
        assert alignment_on_device(mse).tolist() == dynamic_alignment(mse), mse


def test_sync_free_objective_equals_the_plain_one():
    from transformers import T5ForConditionalGeneration
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(new_config(build_parser().parse_args(["--run-dir", "x", *TINY]), 150))
    obj = FreeObjective(model, 2, 0.5)
    src_len, tgt_len = torch.tensor([9, 4, 7]), torch.tensor([3, 6, 5])
    att = (torch.arange(9) < src_len[:, None]).long()
    inp = torch.randint(3, 150, (3, 9)) * att
    lab = torch.randint(3, 150, (3, 6)).masked_fill(torch.arange(6) >= tgt_len[:, None], -100)
    plain, free = obj(inp, att, lab), obj(inp, att, lab, sync_free=True)
    for k in ("loss", "ce_shallow", "ce_deep", "kd"):
        torch.testing.assert_close(getattr(free, k), getattr(plain, k), rtol=1e-6, atol=1e-6)
    assert free.picks.tolist() == plain.picks and int(free.n_tokens) == plain.n_tokens == 14


@pytest.fixture(scope="module")
def tiny_trunk(workspace):  # noqa: F811
    run = workspace / "burst-line"
    train_main(["--run-dir", str(run), "--data", str(workspace / "data"), "--tokenizer",
                str(workspace / "tokenizer.json"), "--max-steps", "3", "--lr", "3e-3", "--warmup", "2",
                "--schedule", "constant", *TINY])
    trunk = workspace / "burst-trunk"
    save_trunk(str(run), str(trunk))
    return trunk


@pytest.fixture(scope="module")
def burst_run(tiny_trunk, workspace, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("burst") / "out"
    rec = burst.main(["--start", str(tiny_trunk), "--data", str(workspace / "data"), "--out", str(out),
                      "--device", "cpu", "--max-steps", "2", "--batch-tokens", "2048", "--read-every", "0",
                      "--save-every", "0", "--part-mib", str(PART_MIB)])
    return out, rec


def test_burst_prints_its_figures_and_writes_small_parts(burst_run, tiny_trunk, workspace):  # noqa: F811
    out, rec = burst_run
    log = (out / "train.log").read_text()  # the lines the burst printed
    assert re.search(r"validation start \(burst step 0, line step 3\): S \d+\.\d{4} L \d+\.\d{4}", log)
    assert re.search(r"validation end \(burst step 2, line step 5\): S \d+\.\d{4} L \d+\.\d{4}", log)
    assert re.search(r"step 1 \| .* \d+ tok/s", log) and re.search(rf"done: 2 steps, {rec['tokens']} tokens", log)
    # the starting weights' figure is the CPU trainer's for them (up to the trunk's f16 rounding)
    man = read_manifest(str(tiny_trunk))
    for k in ("all_ce_shallow", "all_ce_deep"):
        assert abs(rec["validation"][0][k] - man["last_validation"][k]) < 0.005
    # only the last set of parts is left (the one of step 1 went once step 2's was whole)
    parts = sorted(f for f in os.listdir(out) if f.startswith("burst-"))
    assert len(parts) >= 3 and all(re.fullmatch(rf"burst-0000002-\dof{len(parts)}\.safetensors", f) for f in parts)
    assert all(os.path.getsize(out / f) <= PART_MIB * 2**20 for f in parts)
    assert len(os.listdir(out)) <= 8
    # the tokens are those of the first two batches of the burst's order, the step the line's plus 2
    tok = Tokenizer.from_file(str(tiny_trunk / "tokenizer.json"))
    enc = encode_rows(tok, read_jsonl(str(workspace / "data" / "train.jsonl.gz")), 256, 256)
    data = burst.Buckets(enc, 2048, 32, 32, 256, 256, torch.device("cpu"))
    assert rec["tokens"] == sum(data.epoch(man["args"]["seed"], man["state"]["step"], 0).real[:2])
    vals = read_metrics(out, "val")
    assert [v["step"] for v in vals] == [3, 4, 5] and vals[-1]["tokens"] == man["state"]["tokens"] + rec["tokens"]


def test_merge_puts_back_exactly_the_parts_weights(burst_run, tiny_trunk, workspace, tmp_path):  # noqa: F811
    out, rec = burst_run
    record, tensors = burst.read_parts(str(out))
    assert record["step"] == 2 and all(t.dtype == torch.float16 for t in tensors.values())
    trunk, model = tmp_path / "trunk", tmp_path / "model"
    man = burst.merge(str(out), str(trunk), export_dir=str(model))
    for folder in (trunk, model):
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            assert set(f.keys()) == set(tensors)
            for k in tensors:
                assert f.get_tensor(k).dtype == torch.float16 and torch.equal(f.get_tensor(k), tensors[k]), k
        assert {"config.json", "tokenizer.json", "free.json", "checksums.json"} <= set(os.listdir(folder))
        with open(folder / "checksums.json") as f:
            assert json.load(f)["model.safetensors"]["bytes"] == os.path.getsize(folder / "model.safetensors")
    start = read_manifest(str(tiny_trunk))
    assert read_manifest(str(trunk)) == man
    assert man["state"]["step"] == start["state"]["step"] + 2
    assert man["state"]["tokens"] == start["state"]["tokens"] + rec["tokens"]
    assert man["state"]["epoch"] == start["state"]["epoch"] + 1 and man["state"]["batch_in_epoch"] == 0
    assert man["args"] == start["args"] and man["last_validation"] == rec["validation"][-1]
    assert man["bursts"][0]["steps"] == 2
    with pytest.raises(SystemExit, match="apply the burst twice"):
        burst.merge(str(out), str(trunk))
    # a folder that is not a trunk (the model export) is never replaced whole
    before = sorted(os.listdir(model))
    with pytest.raises(SystemExit, match="is not a trunk"):
        burst.merge(str(out), str(model))
    assert sorted(os.listdir(model)) == before

    # the CPU line goes on from the merged trunk
    cont = tmp_path / "cont"
    train_main(["--run-dir", str(cont), "--resume", "--from-trunk", str(trunk), "--max-steps", "6", "--rewarm", "1"])
    assert [r["step"] for r in read_metrics(cont, "train")] == [6]


def test_adafactor_line_keep_best_and_dropout(workspace, tmp_path):  # noqa: F811
    """A line on Adafactor bursts on Adafactor (the record says so, the rate scaled from the
    line's); --keep-best writes no set whose deep validation is not below every earlier one (a
    ruinous rate: none), and --dropout is the burst's and goes into the record merge hands on."""
    run = tmp_path / "line"
    train_main(["--run-dir", str(run), "--data", str(workspace / "data"), "--tokenizer",
                str(workspace / "tokenizer.json"), "--max-steps", "2", "--optimizer", "adafactor-relative",
                "--lr", "1e-2", "--warmup", "1", "--schedule", "constant", *TINY])
    trunk = tmp_path / "trunk"
    save_trunk(str(run), str(trunk))
    out = tmp_path / "out"
    rec = burst.main(["--start", str(trunk), "--data", str(workspace / "data"), "--out", str(out),
                      "--device", "cpu", "--max-steps", "2", "--batch-tokens", "2048", "--read-every", "0",
                      "--save-every", "0", "--warmup", "0", "--lr", "30", "--keep-best", "--dropout", "0.1"])
    log = (out / "train.log").read_text()
    assert "Adafactor (adafactor-relative, sync-free)" in log and "dropout 0.1 (the line's: 0.0)" in log
    vals = [v["all_ce_deep"] for v in rec["validation"]]
    assert len(vals) == 3 and min(vals[1:]) > vals[0]  # the rate ruined it
    assert log.count("--keep-best: burst step") == 2 and "not written (deep validation" in log
    assert not [f for f in os.listdir(out) if f.startswith("burst-")]
    with pytest.raises(SystemExit, match="no complete set"):
        burst.read_parts(str(out))
    assert rec["settings"]["dropout"] == 0.1 and burst.merged_manifest(rec)["args"]["dropout"] == 0.1
    assert rec["settings"]["optimizer"] == "adafactor-relative"


def test_pick_keeps_the_arm_that_validated_lowest(burst_run, tiny_trunk, tmp_path):  # noqa: F811
    """train/gpu-arms.sh's last step: the arm whose set validated lowest on the deep exit becomes
    OUT/burst, the other arms' folders go (what comes back from the GPU has a file limit), an arm
    without a complete set is never picked."""
    from transformers import T5ForConditionalGeneration
    out, _ = burst_run
    arms = tmp_path / "arms"
    shutil.copytree(out, arms / "arm-a")
    (arms / "arm-empty").mkdir()
    rec, _ = burst.read_parts(str(out))
    better = json.loads(json.dumps(rec))
    better["validation"][-1]["all_ce_deep"] -= 0.5
    model = T5ForConditionalGeneration.from_pretrained(str(tiny_trunk))
    (arms / "arm-z").mkdir()
    burst.write_parts(str(arms / "arm-z"), model, better, PART_MIB, lambda *_: None)
    (arms / "arm-z.log").write_text("the script's log of arm z\n")
    assert burst.pick(str(arms)) == "z"
    assert sorted(os.listdir(arms)) == ["arm-z.log", "burst"]
    assert burst.read_parts(str(arms / "burst"))[0] == better
    with pytest.raises(SystemExit, match="pick into a folder where no arm was picked yet"):
        burst.pick(str(arms))


def test_merge_takes_the_newest_complete_set(burst_run, tmp_path):
    """A kill while a set is being written leaves it incomplete: merge keeps the older whole one."""
    out, _ = burst_run
    part = sorted(f for f in os.listdir(out) if f.startswith("burst-"))[0]
    with safe_open(str(out / part), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta["record"] = json.dumps({**json.loads(meta["record"]), "step": 3})
    newer = part.replace("0000002", "0000003")
    partial = tmp_path / "parts"
    partial.mkdir()
    save_file(tensors, str(partial / newer), metadata=meta)
    with pytest.raises(SystemExit, match="no complete set"):
        burst.read_parts(str(partial))
    for f in os.listdir(out):
        os.link(out / f, partial / f)
    assert burst.read_parts(str(partial))[0]["step"] == 2


# ------------------------------------------------------- under torchrun ---

@pytest.fixture(scope="module")
def ddp_bursts(tiny_trunk, workspace, tmp_path_factory):  # noqa: F811
    """`ddp`: two gloo ranks, 2 steps of 2 batches (one per rank); `one`: one process (one
    thread, as each rank) with --accumulate 2, the same global batches. --start is spelled
    --trunk: torchrun's parser would take --start for its --start-method."""
    root = tmp_path_factory.mktemp("ddp-burst")
    common = ["--trunk", str(tiny_trunk), "--data", str(workspace / "data"), "--device", "cpu", "--max-steps", "2",
              "--batch-tokens", "2048", "--read-every", "0", "--save-every", "0", "--part-mib", str(PART_MIB)]
    output = torchrun("free_train.burst", 2, [*common, "--out", str(root / "ddp")])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rec = burst.main([*common, "--out", str(root / "one"), "--accumulate", "2"])
    finally:
        torch.set_num_threads(threads)
    return root, output, rec


def test_two_ranks_equal_one_process_accumulating_the_global_batch(ddp_bursts, tiny_trunk, workspace):  # noqa: F811
    root, output, rec_one = ddp_bursts
    ddp, one = root / "ddp", root / "one"
    log = (ddp / "train.log").read_text()
    assert "global batch: 2 ranks (gloo) x 1 accumulated = 2 batches of 2048 tokens per step" in log
    # rank 0 alone logs, validates and writes: each line once, in the log and in torchrun's output
    for text in (log, output):
        assert text.count("step 1 |") == 1 and text.count("validation start") == 1
        assert text.count("saved burst step 1:") == 1 and text.count("saved burst step 2:") == 1
    # at each save (step 1, then the end) the ranks' sha256 digests of their weights agree
    assert log.count("the 2 ranks hold identical weights") == 2
    # one set of parts, written once, the older set gone, nothing left half-written
    parts = sorted(f for f in os.listdir(ddp) if f.startswith("burst-"))
    assert parts == sorted(f for f in os.listdir(one) if f.startswith("burst-"))
    assert len(parts) >= 3 and all(re.fullmatch(rf"burst-0000002-\dof{len(parts)}\.safetensors", f) for f in parts)
    assert sorted(os.listdir(ddp)) == sorted(parts + ["metrics.jsonl", "train.log"])
    rec_ddp, t_ddp = burst.read_parts(str(ddp))
    _, t_one = burst.read_parts(str(one))
    # the global order's first 4 batches, both ways; the line's step moves by 2
    man = read_manifest(str(tiny_trunk))
    tok = Tokenizer.from_file(str(tiny_trunk / "tokenizer.json"))
    enc = encode_rows(tok, read_jsonl(str(workspace / "data" / "train.jsonl.gz")), 256, 256)
    data = burst.Buckets(enc, 2048, 32, 32, 256, 256, torch.device("cpu"))
    assert rec_ddp["tokens"] == rec_one["tokens"] == sum(data.epoch(man["args"]["seed"], man["state"]["step"], 0).real[:4])
    assert rec_ddp["step"] == 2 and rec_ddp["position"] == rec_one["position"] and rec_ddp["position"]["batch"] == 4
    assert rec_ddp["burst"]["ranks"] == 2 and rec_one["burst"]["ranks"] == 1
    assert rec_ddp["burst"]["peak_lr"] == rec_one["burst"]["peak_lr"]  # scaled to 2 x 2048 tokens both ways
    # the weights: DDP's averaged gradients are the accumulated ones (bitwise here, f32 on one
    # thread each); the parts are f16, so allow one f16 rounding step of the weight's size
    assert t_ddp.keys() == t_one.keys()
    for k in t_ddp:
        torch.testing.assert_close(t_ddp[k].float(), t_one[k].float(), rtol=2**-10, atol=2**-24, msg=k)
    # the printed figures: the mean of the 2 batches' per-token mean losses, both ways
    train_ddp, train_one = read_metrics(ddp, "train"), read_metrics(one, "train")
    assert [r["step"] for r in train_ddp] == [r["step"] for r in train_one] == [4, 5]
    for a, b in zip(train_ddp, train_one, strict=True):
        for k in burst.STATS:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), (a["step"], k)
    assert re.search(r"step 2 \| ep 0 \| .*loss \d+\.\d{4} \(S \d+\.\d{4} L \d+\.\d{4} kd \d+\.\d{4}\)", log)
    for a, b in zip(rec_ddp["validation"], rec_one["validation"], strict=True):
        assert a.keys() == b.keys() and all(a[k] == (pytest.approx(b[k], rel=1e-5) if isinstance(b[k], float) else b[k])
                                            for k in a), (a, b)

    # merged, the DDP burst's parts are its weights: a trunk two steps on
    trunk = root / "trunk"
    merged = burst.merge(str(ddp), str(trunk))
    assert merged["state"]["step"] == man["state"]["step"] + 2 and merged["bursts"][-1]["args"]["ranks"] == 2
    with safe_open(str(trunk / "model.safetensors"), "pt") as f:
        for k in t_ddp:
            assert torch.equal(f.get_tensor(k), t_ddp[k]), k


def test_next_check_lands_on_reads_saves_and_the_budget():
    """Under torchrun the ranks meet only at checks placed by step count (rank 0's proposal)."""
    a = burst.parse_burst_args(["--device", "cpu", "--budget", "100", "--read-every", "15", "--save-every", "90"])
    win = {"t": 0.0, "steps": 10}  # 1 s a step
    assert burst.next_check(a, win, 10.0, 10.0, 10.0, 100) == 15  # the next read
    assert burst.next_check(a, win, 10.0, 95.0, 10.0, 100) == 5  # the end of the budget
    assert burst.next_check(a, win, 10.0, 50.0, 80.0, 100) == 10  # the next save
    assert burst.next_check(a, win, 10.0, 100.0, 10.0, 100) == 1  # past the budget: at least one step
    assert burst.next_check(a, win, 10.0, 10.0, 10.0, 4) == 8  # at most twice the longest interval so far
    a.read_every = 0
    assert burst.next_check(a, win, 10.0, 10.0, 10.0, 100) == 1  # --read-every 0: a check every step
