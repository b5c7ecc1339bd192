"""Data-parallel training under torchrun (gloo, two CPU processes of one thread): the ranks stay
bitwise identical, the run equals one process accumulating the same global batch, and a resume
with another number of processes goes on from the next batch of the global order.

Two launches of torchrun (each 10-20 s on a loaded 2-core machine, mostly the imports of two
processes); the single-process runs they are compared with run in this process."""
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

from free_train.batching import encode_rows, make_batches, real_tokens
from free_train.data import find_split, read_jsonl
from free_train.distributed import Dist
from free_train.train import main as train_main

from conftest import torchrun
from test_train_export import TINY, read_metrics, workspace  # noqa: F401  (the module fixture)

STEPS = 3
# f32 on one thread: the two paths add the same gradients in the same order, so they agree to
# rounding at most (observed: exactly); Adam's first steps amplify any difference to ~lr scale,
# so the tolerance stays far under lr = 3e-3 while leaving room for summation order
WEIGHT_TOL = 1e-5


def weights(run_dir) -> dict:
    return load_file(os.path.join(run_dir, "checkpoint", "model.safetensors"))


def max_diff(a, b) -> float:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def trainer_state(run_dir) -> dict:
    return torch.load(os.path.join(run_dir, "checkpoint", "trainer_state.pt"), weights_only=False)["state"]


@pytest.fixture(scope="module")
def runs(workspace, tmp_path_factory):  # noqa: F811
    """`ddp`: two ranks, STEPS steps of 2 batches; `one`: one process accumulating 2 batches."""
    root = tmp_path_factory.mktemp("ddp")
    common = ["--data", str(workspace / "data"), "--tokenizer", str(workspace / "tokenizer.json"),
              "--max-steps", str(STEPS), "--lr", "3e-3", "--warmup", "2", "--schedule", "constant", *TINY]
    torchrun("free_train.train", 2, ["--run-dir", str(root / "ddp"), *common])
    train_main(["--run-dir", str(root / "one"), "--accumulate", "2", *common])
    return root


@pytest.fixture(scope="module")
def order(workspace):  # noqa: F811
    """The epoch-0 global batch order of TINY's settings, and the encoded train split."""
    tok = Tokenizer.from_file(str(workspace / "tokenizer.json"))
    enc = encode_rows(tok, read_jsonl(find_split(str(workspace / "data"), "train")), 256, 256)
    return make_batches(enc, 1024, seed=7, epoch=0), enc


def test_ranks_agree_and_equal_one_process_accumulating_the_global_batch(runs, order):
    ddp, one = runs / "ddp", runs / "one"
    log = (ddp / "train.log").read_text()
    assert "global batch: 2 ranks (gloo) x 1 accumulated = 2 batches of 1024 tokens per step" in log
    assert "threads 1" in log, "--threads 1 per rank"
    # checked with sha256 digests of every rank's weights at the final checkpoint
    assert "the 2 ranks hold identical weights" in log
    assert log.count("step 1 |") == 1, "rank 0 alone logs"
    batches, enc = order
    st_ddp, st_one = trainer_state(ddp), trainer_state(one)
    assert st_ddp["step"] == st_one["step"] == STEPS
    assert st_ddp["batch_in_epoch"] == st_one["batch_in_epoch"] == 2 * STEPS
    assert st_ddp["tokens"] == st_one["tokens"] == sum(real_tokens(enc, b) for b in batches[:2 * STEPS])
    assert max_diff(ddp, one) < WEIGHT_TOL
    # the logged loss of a step: the mean of its batches' per-token mean losses, both ways
    for a, b in zip(read_metrics(ddp, "train"), read_metrics(one, "train"), strict=True):
        assert a["step"] == b["step"] and a["tokens"] == b["tokens"]
        for k in ("loss", "ce_shallow", "ce_deep", "kd"):
            assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-7), (a["step"], k)


def resumed(run_dir, steps: int) -> dict:
    st = trainer_state(run_dir)
    assert st["step"] == STEPS + steps
    return st


def test_resume_from_two_processes_in_one_takes_the_next_batch(runs, order, tmp_path):
    """Trained with 2 ranks (6 batches), resumed by one process: the next step is batch 6 of the
    global order, as for the run that took the same 6 batches in one process."""
    batches, enc = order
    for name in ("ddp", "one"):
        shutil.copytree(runs / name, tmp_path / name)
        train_main(["--run-dir", str(tmp_path / name), "--resume", "--accumulate", "1", "--max-steps", str(STEPS + 1)])
    log = (tmp_path / "ddp" / "train.log").read_text()
    assert f"resumed from the checkpoint at step {STEPS}" in log and "batch 6 of the epoch's order" in log
    before = trainer_state(runs / "ddp")["tokens"]
    for name in ("ddp", "one"):
        st = resumed(tmp_path / name, 1)
        assert st["batch_in_epoch"] == 2 * STEPS + 1
        assert st["tokens"] == before + real_tokens(enc, batches[2 * STEPS])
    assert max_diff(tmp_path / "ddp", tmp_path / "one") < WEIGHT_TOL


def test_resume_from_one_process_in_two_takes_the_next_batches(runs, order, tmp_path):
    """Trained by one process (6 batches), resumed with 2 ranks: the ranks take batches 6 and 7,
    as one process accumulating them does."""
    batches, enc = order
    for name in ("ddp", "one"):
        shutil.copytree(runs / name, tmp_path / name)
    torchrun("free_train.train", 2, ["--run-dir", str(tmp_path / "one"), "--resume", "--accumulate", "1", "--max-steps", str(STEPS + 1)])
    train_main(["--run-dir", str(tmp_path / "ddp"), "--resume", "--accumulate", "2", "--max-steps", str(STEPS + 1)])
    log = (tmp_path / "one" / "train.log").read_text()
    assert "batch 6 of the epoch's order" in log and log.count("the 2 ranks hold identical weights") == 1
    before = trainer_state(runs / "one")["tokens"]
    for name in ("ddp", "one"):
        st = resumed(tmp_path / name, 1)
        assert st["batch_in_epoch"] == 2 * STEPS + 2
        assert st["tokens"] == before + real_tokens(enc, batches[2 * STEPS]) + real_tokens(enc, batches[2 * STEPS + 1])
    assert max_diff(tmp_path / "ddp", tmp_path / "one") < WEIGHT_TOL


def test_rank_batches_and_thread_counts():
    """Rank r of N takes p+r, p+r+N, ... of a step's N*K batches from position p."""
    ranks = [Dist({"WORLD_SIZE": "3", "RANK": str(r), "LOCAL_RANK": str(r), "LOCAL_WORLD_SIZE": "3"})
             for r in range(3)]
    assert [list(d.my_batches(12, 6)) for d in ranks] == [[12, 15], [13, 16], [14, 17]]
    assert sorted(i for d in ranks for i in d.my_batches(12, 6)) == list(range(12, 18))
    assert ranks[1].threads("auto") == str(max(1, (os.cpu_count() or 1) // 3)) and ranks[1].threads("2") == "2"
    single = Dist({})
    assert not single.enabled and single.is_main and list(single.my_batches(5, 2)) == [5, 6]
    assert single.threads("auto") == "auto"
    assert Dist({"WORLD_SIZE": "1", "RANK": "0"}).enabled is False
