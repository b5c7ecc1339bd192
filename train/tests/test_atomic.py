"""Nothing is destroyed: each writer replaces its file or folder whole (a failure midway leaves
the old one and no temporary behind), and refuses an output that is, holds or lies inside one
of the run's inputs, symlinks followed."""
import gzip
import json
import os
import shutil

import pytest
import torch
from transformers import T5ForConditionalGeneration

from free_train.atomic import refuse_overwriting_inputs, replacing, replacing_dir, replacing_files, write_text
from free_train.tokenizer import train_tokenizer, training_texts
from free_train.train import build_parser, new_config

from conftest import synthetic_rows
from test_curve import RUN_1, RUN_2
from test_train_export import TINY


def full_disk(fd):
    """os.fsync of a full disk: a write fails after its bytes went out, before they are on disk."""
    raise OSError(28, "No space left on device")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder as the trainer leaves it, with an untrained tiny model in best/ and checkpoint/."""
    run = tmp_path_factory.mktemp("atomic") / "run"
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(new_config(build_parser().parse_args(["--run-dir", "x", *TINY]), 150))
    tok = train_tokenizer(training_texts(synthetic_rows(200)), 150)
    for sub in ("best", "checkpoint"):
        model.save_pretrained(run / sub)
        tok.save(str(run / sub / "tokenizer.json"))
    tok.save(str(run / "tokenizer.json"))
    (run / "args.json").write_text(json.dumps({"shallow_exit_layer": 2, "optimizer": "adamw"}))
    return run


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------ helper ---

def test_a_write_that_fails_midway_leaves_the_old_file(tmp_path):
    path = tmp_path / "f.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="midway"):
        with replacing(str(path)) as f:
            f.write(b"new, half of it")
            raise RuntimeError("midway")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.json"]


def test_a_symlink_at_the_path_is_replaced_not_written_through(tmp_path):
    target, link = tmp_path / "elsewhere.txt", tmp_path / "out.txt"
    target.write_text("kept")
    link.symlink_to(target)
    write_text(str(link), "new")
    assert not link.is_symlink() and link.read_text() == "new" and target.read_text() == "kept"


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "args.json"
    path.write_text("{}")
    path.chmod(0o600)
    write_text(str(path), '{"lr": 1}')
    assert path.read_text() == '{"lr": 1}' and path.stat().st_mode & 0o777 == 0o600


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    out = tmp_path / "trunk"
    out.mkdir()
    (out / "a").write_text("old a")
    (out / "stale").write_text("from an older save")
    with pytest.raises(OSError, match="No space"):
        with replacing_dir(str(out)) as tmp:
            write_text(os.path.join(tmp, "a"), "new a, half")
            raise OSError(28, "No space left on device")
    assert listing(tmp_path) == ["trunk", "trunk/a", "trunk/stale"] and (out / "a").read_text() == "old a"
    with replacing_dir(str(out)) as tmp:
        write_text(os.path.join(tmp, "a"), "new a")
    assert listing(tmp_path) == ["trunk", "trunk/a"] and (out / "a").read_text() == "new a"


def test_files_into_a_folder_replace_their_namesakes_and_leave_the_rest(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text("old")
    (out / "README.md").write_text("the card")
    with pytest.raises(OSError):
        with replacing_files(str(out)) as tmp:
            write_text(os.path.join(tmp, "config.json"), "new")
            raise OSError(28, "No space left on device")
    assert listing(tmp_path) == ["model", "model/README.md", "model/config.json"]
    assert (out / "config.json").read_text() == "old"
    with replacing_files(str(out)) as tmp:
        write_text(os.path.join(tmp, "config.json"), "new")
        write_text(os.path.join(tmp, "free.json"), "{}")
    assert listing(tmp_path) == ["model", "model/README.md", "model/config.json", "model/free.json"]
    assert [(out / n).read_text() for n in ("README.md", "config.json")] == ["the card", "new"]


def test_an_output_over_an_input_is_refused_naming_both(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    (data / "sub").mkdir(parents=True)
    run.mkdir()
    (data / "train.jsonl").write_text("rows")
    (run / "out.json").symlink_to(data / "train.jsonl")
    cases = [
        ((run / "out.json"), data / "train.jsonl", f"--out {run}/out.json is --in {data}/train.jsonl (after symlinks)"),
        ((data / "train.jsonl"), data / "train.jsonl", f"--out {data}/train.jsonl is --in {data}/train.jsonl, "),
        (data, data / "train.jsonl", f"--out {data} holds --in {data}/train.jsonl, "),
        (data / "sub" / "x.json", data, f"--out {data}/sub/x.json is inside --in {data}, "),
    ]
    for out, inp, says in cases:
        with pytest.raises(SystemExit) as e:
            refuse_overwriting_inputs([("--out", str(out))], [("--other", None), ("--in", str(inp))])
        assert str(e.value).startswith(says), str(e.value)
        assert str(e.value).endswith("which this run reads: writing there would overwrite it; give another --out")
    # a sibling whose name starts with the input's is not inside it; an option not given is no input
    refuse_overwriting_inputs([("--out", str(tmp_path / "data2")), ("--none", None)], [("--in", str(data))])
    assert (data / "train.jsonl").read_text() == "rows"


# ----------------------------------------------------------------- writers ---

def test_export_into_its_own_run_folder_is_refused(run):
    from free_train.export import export
    before = listing(run)
    with pytest.raises(SystemExit, match=f"^OUT_DIR {run} holds the model {run}/best, which this run reads"):
        export(str(run), str(run))
    with pytest.raises(SystemExit, match=f"^OUT_DIR {run}/best/f32 is inside the model {run}/best, "):
        export(str(run / "best"), str(run / "best" / "f32"), dtype="f32", shallow_exit_layer=2)
    assert listing(run) == before


def test_export_replaces_the_model_files_and_keeps_the_card(run, tmp_path):
    from free_train.export import export
    out = tmp_path / "model"
    out.mkdir()
    (out / "README.md").write_text("the card")
    (out / "config.json").write_text("{}")
    export(str(run), str(out), which="best")
    assert listing(tmp_path) == ["model"] + [f"model/{n}" for n in (
        "README.md", "checksums.json", "config.json", "free.json", "generation_config.json", "model.safetensors",
        "tokenizer.json")]
    assert (out / "README.md").read_text() == "the card"
    # readable as open() would have made it, not 0600 as save_pretrained's own temporary file is
    mask = os.umask(0)
    os.umask(mask)
    assert {(out / n).stat().st_mode & 0o777 for n in ("model.safetensors", "config.json")} == {0o666 & ~mask}
    assert json.loads((out / "config.json").read_text())["num_decoder_layers"] == 6
    assert json.loads((out / "free.json").read_text())["shallow_exit_layer"] == 2
    assert (out / "tokenizer.json").read_bytes() == (run / "best" / "tokenizer.json").read_bytes()


def test_an_export_that_fails_midway_leaves_the_old_model(run, tmp_path, monkeypatch):
    from free_train.export import export
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text("{}")
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        export(str(run), str(out), which="best")
    assert listing(tmp_path) == ["model", "model/config.json"] and (out / "config.json").read_text() == "{}"


def test_the_trainer_refuses_a_run_folder_holding_its_inputs(run, tmp_path):
    from free_train.train import main as train_main
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.jsonl", "validation.jsonl"):
        (data / name).write_text(json.dumps(synthetic_rows(1)[0]) + "\n")
    before = listing(run)
    with pytest.raises(SystemExit, match=f"^--run-dir {run} holds --init {run}/checkpoint, which this run reads"):
        train_main(["--run-dir", str(run), "--init", str(run / "checkpoint"), "--data", str(data), *TINY])
    with pytest.raises(SystemExit, match=f"^--run-dir {run} holds --tokenizer {run}/tokenizer.json, "):
        train_main(["--run-dir", str(run), "--tokenizer", str(run / "tokenizer.json"), "--data", str(data), *TINY])
    with pytest.raises(SystemExit, match=f"^--run-dir {data} holds --data {data}/train.jsonl, "):
        train_main(["--run-dir", str(data), "--data", str(data), *TINY])
    assert listing(run) == before and listing(data) == ["train.jsonl", "validation.jsonl"]  # not even train.log


def test_checkpoint_and_best_are_replaced_whole(run, tmp_path):
    from tokenizers import Tokenizer
    from free_train.train import save_best, save_checkpoint
    model = T5ForConditionalGeneration.from_pretrained(run / "checkpoint")
    tok = Tokenizer.from_file(str(run / "tokenizer.json"))
    opt = torch.optim.AdamW(model.parameters())
    logged = []
    for step in (1, 2):
        save_checkpoint(str(tmp_path), model, tok, opt, {"step": step, "tokens": 10 * step}, logged.append)
        save_best(str(tmp_path), model, tok, 3.5 - step, step)
    assert listing(tmp_path) == ["best", "best/config.json", "best/generation_config.json", "best/model.safetensors",
                                 "best/tokenizer.json", "best/val.json", "checkpoint", "checkpoint/config.json",
                                 "checkpoint/generation_config.json", "checkpoint/model.safetensors",
                                 "checkpoint/tokenizer.json", "checkpoint/trainer_state.pt"]
    assert torch.load(tmp_path / "checkpoint" / "trainer_state.pt", weights_only=False)["state"]["step"] == 2
    assert (tmp_path / "best" / "val.json").read_text() == '{"ce_deep": 1.5, "step": 2}'
    assert logged[-1] == f"checkpoint saved: step 2, 0.00M tokens -> {tmp_path}/checkpoint"


def test_a_checkpoint_save_that_fails_midway_leaves_the_last_checkpoint(tmp_path):
    from free_train.train import save_checkpoint

    class FullDisk:
        def save_pretrained(self, folder):
            with open(os.path.join(folder, "model.safetensors"), "wb") as f:
                f.write(b"half a model")
            raise OSError(28, "No space left on device")

    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "trainer_state.pt").write_bytes(b"step 5")
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(str(tmp_path), FullDisk(), None, None, {"step": 6, "tokens": 0}, print)
    assert listing(tmp_path) == ["checkpoint", "checkpoint/trainer_state.pt"]
    assert (tmp_path / "checkpoint" / "trainer_state.pt").read_bytes() == b"step 5"


def test_a_trunk_is_never_saved_over_its_run(run):
    from free_train.trunk import save_trunk
    before = listing(run)
    with pytest.raises(SystemExit, match=f"^--out {run} holds the run's checkpoint {run}/checkpoint, "):
        save_trunk(str(run), str(run))
    assert listing(run) == before


def test_a_trunk_save_replaces_the_old_trunk_whole(run, tmp_path):
    from free_train.trunk import read_manifest, save_trunk
    run = shutil.copytree(run, tmp_path / "run")
    model = T5ForConditionalGeneration.from_pretrained(run / "checkpoint")
    opt = torch.optim.AdamW(model.parameters())
    state = {"step": 3, "tokens": 300, "epoch": 0, "batch_in_epoch": 3, "best_val": 9.0}
    torch.save({"optimizer": opt.state_dict(), "state": state}, run / "checkpoint" / "trainer_state.pt")
    trunk = tmp_path / "line" / "trunk"
    trunk.mkdir(parents=True)
    (trunk / "stale.txt").write_text("from an older trunk")
    save_trunk(str(run), str(trunk))
    assert listing(tmp_path / "line") == ["trunk"] + [f"trunk/{n}" for n in (
        "checksums.json", "config.json", "free.json", "generation_config.json", "model.safetensors",
        "optimizer.safetensors", "tokenizer.json", "trunk.json")]
    assert read_manifest(str(trunk))["state"] == {"step": 3, "tokens": 300, "epoch": 0, "batch_in_epoch": 3}


def test_burst_parts_are_written_whole_and_merge_refuses_to_replace_them(run, tmp_path):
    from free_train import burst
    model = T5ForConditionalGeneration.from_pretrained(run / "checkpoint", dtype=torch.float16)
    names = burst.write_parts(str(tmp_path), model, {"step": 4}, 0.25, lambda *a: None)
    assert len(names) > 1 and sorted(os.listdir(tmp_path)) == sorted(names)
    assert all(os.path.getsize(tmp_path / n) <= 0.25 * 2**20 for n in names)
    record, tensors = burst.read_parts(str(tmp_path))
    assert record == {"step": 4}
    # T5 keeps its wo weights in f32 whatever the dtype asked; the parts store all in f16
    assert all(torch.equal(tensors[k], v.half()) for k, v in burst.unique_tensors(model).items())
    with pytest.raises(SystemExit, match=f"^--trunk-out {tmp_path} holds PARTS_DIR {tmp_path}/parts, "):
        burst.merge(str(tmp_path / "parts"), str(tmp_path))
    with pytest.raises(SystemExit, match=f"^--export {run} is --trunk-out {run}, "):
        burst.merge(str(tmp_path), str(run), export_dir=str(run))
    assert sorted(os.listdir(tmp_path)) == sorted(names)


def test_data_build_refuses_an_output_linked_to_its_input(translation_files, tmp_path):
    from free_train.data import build
    en_path, fr_path = translation_files
    out = tmp_path / "data"
    out.mkdir()
    (out / "validation.jsonl").symlink_to(en_path)
    before = open(en_path).read()
    with pytest.raises(SystemExit, match=f"^--out {out}/validation.jsonl is --en {en_path} \\(after symlinks\\), "):
        build([en_path], [fr_path], str(out), 1, 1, log=lambda *a: None)
    assert open(en_path).read() == before and os.listdir(out) == ["validation.jsonl"]


def test_a_data_write_that_fails_midway_leaves_the_old_split(translation_files, tmp_path, monkeypatch):
    from free_train.data import build, read_jsonl, write_output
    en_path, fr_path = translation_files
    out = tmp_path / "data"
    build([en_path], [fr_path], str(out), 1, 1, log=lambda *a: None)
    files = {n: (out / n).read_bytes() for n in os.listdir(out)}
    rows = read_jsonl(str(out / "train.jsonl.gz"))
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_output(str(out / "train.jsonl.gz"), rows + rows)
    with pytest.raises(OSError, match="No space"):
        build([en_path], [fr_path], str(out), 0, 0, log=lambda *a: None)
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == files
    with gzip.open(out / "train.jsonl.gz", "rt") as f:
        assert [json.loads(line) for line in f] == rows


def test_the_tokenizer_is_written_as_tokenizers_saves_it_and_not_over_the_data(tmp_path, capsys):
    from tokenizers import Tokenizer
    from free_train.tokenizer import main as tokenizer_main
    data = tmp_path / "data"
    data.mkdir()
    rows = synthetic_rows(120)
    for name, part in (("train.jsonl", rows[:100]), ("validation.jsonl", rows[100:])):
        (data / name).write_text("".join(json.dumps(r) + "\n" for r in part))
    tokenizer_main(["train", "--data", str(data), "--vocab-size", "150", "--out", str(tmp_path / "tok.json")])
    Tokenizer.from_file(str(tmp_path / "tok.json")).save(str(tmp_path / "again.json"))
    assert (tmp_path / "tok.json").read_bytes() == (tmp_path / "again.json").read_bytes()
    with pytest.raises(SystemExit, match=f"^--out {data}/validation.jsonl is --data {data}/validation.jsonl, "):
        tokenizer_main(["train", "--data", str(data), "--out", str(data / "validation.jsonl")])
    assert (data / "validation.jsonl").read_text().count("\n") == 20


def test_the_curve_is_not_drawn_over_a_log_and_a_failed_drawing_keeps_the_old_one(tmp_path, monkeypatch):
    from free_train.curve import main as curve_main
    (tmp_path / "train-1.log").write_text(RUN_1)
    (tmp_path / "train-2.log").write_text(RUN_2)
    (tmp_path / "link.svg").symlink_to(tmp_path / "train-1.log")
    with pytest.raises(SystemExit, match=f"^--out {tmp_path}/link.svg is the log {tmp_path}/train-1.log \\(after symlinks\\), "):
        curve_main([str(tmp_path), "--logs", str(tmp_path), "--out", str(tmp_path / "link.svg")])
    assert (tmp_path / "train-1.log").read_text() == RUN_1
    (tmp_path / "loss.svg").write_text("the old picture")
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        curve_main([str(tmp_path), "--logs", str(tmp_path)])
    assert (tmp_path / "loss.svg").read_text() == "the old picture"
    assert sorted(os.listdir(tmp_path)) == ["link.svg", "loss.svg", "train-1.log", "train-2.log"]
