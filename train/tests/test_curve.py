"""The loss-curve picture: logs of successive snapshots read into one token axis."""
from __future__ import annotations

import re

import pytest

from free_train.curve import log_files, main, read_curves

RUN_1 = """\
[10:00:00] args: --run-dir train/runs/a
[10:00:05] data: 100 train examples (9.91M tokens/epoch, dropped {}), 10 validation
[10:01:00] step 10 | ep 0 | 0.50M tok | loss 6.0000 (S 6.1 L 5.9 kd 0.1) | picks [0, 1] | lr 1e-3 | gnorm 1.0 | 900 tok/s (2t) | 1m | ETA 9m
[10:02:00] validation step 10: S 5.5000 L 5.4000 | summarize: S 5.6 L 5.5 translate: S 5.4 L 5.3 (20s)
[10:03:00] args: --run-dir train/runs/a --resume
[10:04:00] step 20 | ep 0 | 1.25M tok | loss 5.0000 (S 5.1 L 4.9 kd 0.1) | picks [0, 1] | lr 1e-3 | gnorm 1.0 | 900 tok/s (2t) | 2m | ETA 8m
"""
RUN_2 = """\
[11:00:00] step 5 | ep 0 | 0.25M tok | loss 4.8000 (S 4.9 L 4.7 kd 0.1) | picks [0, 1] | lr 1e-3 | gnorm 1.0 | 900 tok/s (2t) | 1m | ETA 9m
[11:01:00] validation step 5: S 4.6000 L 4.5000 | summarize: S 4.7 L 4.6 translate: S 4.5 L 4.4 (20s)
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "train-1.log").write_text(RUN_1)
    (tmp_path / "train-2.log").write_text(RUN_2)
    return tmp_path


def test_runs_continue_on_one_token_axis(folder):
    curves = read_curves(log_files(folder))
    assert curves.train == [(0.5, 6.0), (1.25, 5.0), (1.5, 4.8)]
    assert curves.shallow == [(0.5, 5.5), (1.5, 4.6)]
    assert curves.deep == [(0.5, 5.4), (1.5, 4.5)]
    assert curves.snapshots == [1.25, 1.5]


def test_a_branch_log_continues_its_trunks_counter(folder):
    # run 3 continues run 2's counter (the trunk), not run 2's end: its tokens are counted from
    # where run 2's counter started (1.25M), so its 0.75M lands at 2.0M, not 2.25M
    (folder / "train-3.log").write_text(
        "# token counter continues from train-2.log: the trunk, resumed\n"
        "[12:00:00] step 9 | ep 0 | 0.75M tok | loss 4.5 (S 4.6 L 4.4 kd 0.1) | x\n")
    curves = read_curves(log_files(folder))
    assert curves.train[-1] == (2.0, 4.5)
    assert curves.snapshots == [1.25, 1.5, 2.0]
    (folder / "train-3.log").write_text("# token counter continues from train-4.log\n")
    with pytest.raises(SystemExit, match="comes later or is missing"):
        read_curves(log_files(folder))


def test_a_gpu_bursts_log_counts_from_the_lines_tokens_at_its_start(folder):
    # a snapshot's log: the CPU line to 1.0M, a burst from there (its own counter from 0), then the
    # CPU branch from the merged trunk, whose counter is the line's again
    (folder / "train-3.log").write_text(
        "# token counter continues from train-2.log\n"
        "[12:00:00] args: --run-dir train/runs/trunk --resume\n"
        "[12:00:01] step 9 | ep 0 | 1.00M tok | loss 4.5 (S 4.6 L 4.4 kd 0.1) | x\n"
        "[12:01:00] burst on NVIDIA H200, bf16; torch 2.11.0\n"
        "[12:01:00] start: models/trunk, line step 9, 1.00M tokens\n"
        "[12:01:01] validation start (burst step 0, line step 9): S 4.3000 L 4.2000 | x (0.6s)\n"
        "[12:01:10] step 40 | ep 0 | 2.00M tok | loss 4.0 (S 4.1 L 3.9 kd 0.1) | gnorm 0.5 | x\n"
        "[12:01:11] validation end (burst step 40, line step 49): S 4.0000 L 3.8000 | x (0.5s)\n"
        "[12:05:00] args: --run-dir train/runs/branch --resume --from-trunk models/trunk\n"
        "[12:05:01] step 60 | ep 1 | 3.50M tok | loss 3.9 (S 4.0 L 3.8 kd 0.1) | x\n")
    curves = read_curves(log_files(folder))
    assert curves.train[-3:] == [(2.25, 4.5), (4.25, 4.0), (4.75, 3.9)]
    assert curves.deep[-2:] == [(2.25, 4.2), (4.25, 3.8)]
    assert curves.snapshots[-1] == 4.75


def test_the_picture_has_a_line_per_series_with_every_point(folder, capsys):
    main([str(folder), "--logs", str(folder)])
    svg = (folder / "loss.svg").read_text()
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    lines = re.findall(r'<polyline [^>]*points="([^"]*)"', svg)
    assert [len(p.split()) for p in lines] == [3, 2, 2]
    assert svg.count("snapshot ") == 2
    assert "1.50M tokens, last validation loss (deep) 4.5000" in capsys.readouterr().out


def test_a_folder_without_logs_says_so(tmp_path):
    with pytest.raises(SystemExit, match="has no train-N.log files"):
        log_files(tmp_path)


def test_projection_fits_the_snapshot_ends(tmp_path, capsys):
    from free_train.curve import power_law, snapshot_ends
    # three runs ending at 1, 4 and 16M tokens in all (each log counts its own tokens), their
    # final validation losses on 6 * T^-0.25; a mid-run validation point that is not an end
    for n, own in enumerate((1.0, 3.0, 12.0), start=1):
        end = {1: 1.0, 2: 4.0, 3: 16.0}[n]
        (tmp_path / f"train-{n}.log").write_text(
            f"[10:00:00] step 1 | ep 0 | {own / 2:.2f}M tok | loss 9.0 (S 9 L 9 kd 0) | x\n"
            "[10:00:01] validation step 1: S 9.0 L 8.0000 | x\n"
            f"[10:00:02] step 2 | ep 0 | {own:.2f}M tok | loss 9.0 (S 9 L 9 kd 0) | x\n"
            f"[10:00:03] validation step 2: S 9.0 L {6 * end ** -0.25:.6f} | x\n")
    curves = read_curves(log_files(tmp_path))
    assert [t for t, _ in snapshot_ends(curves)] == [1.0, 4.0, 16.0]
    a, b = power_law(snapshot_ends(curves))
    assert a == pytest.approx(6, rel=1e-5) and b == pytest.approx(0.25, rel=1e-5)
    main([str(tmp_path), "--logs", str(tmp_path), "--project", "256"])
    assert "256M tokens: 1.500" in capsys.readouterr().out
