"""The loss curves of a shipped model, drawn from its training logs, as an SVG picture.

    python -m free_train.curve models/free-t5-mini [--logs train/logs/free-t5-mini] [--out models/free-t5-mini/loss.svg]
    python -m free_train.curve models/free-t5-mini --project 200 300   # where the curve heads

Reads the model's training logs, train/logs/MODEL/train-1.log, train-2.log, ... (kept out of
the model folder, which holds what loads). Each is a snapshot's run, continued from the previous
snapshot, or, where a log says `token counter continues from train-N.log`, from the same point
as run N (the training line's trunk, of which each shipped snapshot is a branch); a GPU burst's
log pasted in counts on from the line's tokens at its start. It plots, against the training
tokens seen since the first run, the validation loss of the shallow exit and of the deep model,
the training loss (FREE's combined objective) and a line where each snapshot ends. Standard
library only, so the picture can be redrawn without plotting packages.
"""
from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import refuse_overwriting_inputs, write_text

TRAIN = re.compile(r"\] step (\d+) \| ep \d+ \| ([\d.]+)M tok \| loss ([\d.]+)")
VALIDATION = re.compile(r"\] validation step (\d+): S ([\d.]+) L ([\d.]+)")
LOGS = Path(__file__).resolve().parents[1] / "logs"  # train/logs
CONTINUES = re.compile(r"token counter continues from train-(\d+)\.log")
# A GPU burst's log (free_train.burst) counts its steps' tokens from 0 and names the line's count
# at its start; its validations name the burst's step and the line's. A CPU run's log (its first
# line: the arguments) counts the line's tokens itself.
BURST_START = re.compile(r"\] start: .*, line step \d+, ([\d.]+)M tokens")
BURST_VALIDATION = re.compile(r"\] validation (?:start|at save|end) \(burst step \d+, line step (\d+)\): "
                              r"S ([\d.]+) L ([\d.]+)")
RUN_ARGS = re.compile(r"\] args: ")


@dataclass
class Curves:
    """Points as (millions of tokens since the first run, loss)."""

    train: list[tuple[float, float]] = field(default_factory=list)
    shallow: list[tuple[float, float]] = field(default_factory=list)
    deep: list[tuple[float, float]] = field(default_factory=list)
    #: Where each snapshot's run ended, in millions of tokens.
    snapshots: list[float] = field(default_factory=list)


def log_files(folder: Path) -> list[Path]:
    logs = sorted(folder.glob("train-*.log"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    if not logs:
        raise SystemExit(f"{folder} has no train-N.log files to draw")
    return logs


def read_curves(logs: list[Path]) -> Curves:
    """Validation points take the token count of the last training step logged before them (a
    burst's starting validation, the line's count at the burst's start)."""
    curves = Curves()
    offset = 0.0
    #: Where each log's token counter starts on the axis, by its run number.
    starts: dict[int, float] = {}
    for log in logs:
        tokens = base = 0.0
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            if m := CONTINUES.search(line):
                if int(m.group(1)) not in starts:
                    raise SystemExit(f"{log}: continues train-{m.group(1)}.log, which comes later or is missing")
                offset = starts[int(m.group(1))]
            elif m := BURST_START.search(line):
                base = tokens = float(m.group(1))
            elif RUN_ARGS.search(line):
                base = 0.0
            elif m := TRAIN.search(line):
                tokens = base + float(m.group(2))
                curves.train.append((offset + tokens, float(m.group(3))))
            elif m := VALIDATION.search(line) or BURST_VALIDATION.search(line):
                curves.shallow.append((offset + tokens, float(m.group(2))))
                curves.deep.append((offset + tokens, float(m.group(3))))
        starts[int(re.sub(r"\D", "", log.stem) or 0)] = offset
        offset += tokens
        curves.snapshots.append(offset)
    return curves


def svg(curves: Curves, title: str) -> str:
    width, height, left, right, top, bottom = 800, 380, 60, 190, 34, 46
    pw, ph = width - left - right, height - top - bottom
    points = curves.train + curves.shallow + curves.deep
    x_max = max(curves.snapshots[-1], max(x for x, _ in points))
    # The validation losses set the scale; the first steps' training loss (far higher) is
    # clipped at the top.
    losses = [y for _, y in (curves.shallow + curves.deep or points)]
    y_lo, y_hi = min(losses), max(losses)
    pad = max(0.1, 0.08 * (y_hi - y_lo))
    y_lo, y_hi = y_lo - pad, y_hi + pad
    x_step = nice_step(x_max / 5)

    def x(v: float) -> float:
        return left + pw * v / x_max

    def y(v: float) -> float:
        return top + ph * (y_hi - v) / (y_hi - y_lo)

    def polyline(pts, colour, width_px):
        return f'<polyline fill="none" stroke="{colour}" stroke-width="{width_px}" clip-path="url(#plot)" points="' + " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in pts) + '"/>'

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<defs><clipPath id="plot"><rect x="{left}" y="{top}" width="{pw}" height="{ph}"/></clipPath></defs>',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14">{title}</text>',
    ]
    for k in range(6):
        v = y_lo + (y_hi - y_lo) * k / 5
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    v = 0.0
    while v <= x_max + 1e-9:
        out.append(f'<text x="{x(v):.1f}" y="{top + ph + 16}" text-anchor="middle">{v:g}M</text>')
        v += x_step
    out.append(f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">training tokens</text>')
    out.append(f'<text transform="translate(14 {top + ph / 2}) rotate(-90)" text-anchor="middle">loss</text>')
    for k, end in enumerate(curves.snapshots, 1):
        out.append(f'<line x1="{x(end):.1f}" x2="{x(end):.1f}" y1="{top}" y2="{top + ph}" stroke="#999" stroke-dasharray="3 3"/>')
        out.append(f'<text x="{x(end) - 3:.1f}" y="{top + 12}" text-anchor="end" fill="#666">snapshot {k}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    series = [
        (curves.train, "#bbbbbb", 1, "training loss (FREE objective)"),
        (curves.shallow, "#15803d", 2, "validation, shallow exit"),
        (curves.deep, "#1d4ed8", 2, "validation, deep model"),
    ]
    for k, (pts, colour, w, label) in enumerate(series):
        if pts:
            out.append(polyline(pts, colour, w))
        ly = top + 16 + 18 * k
        out.append(f'<line x1="{left + pw + 10}" x2="{left + pw + 30}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" stroke-width="{w + 1}"/>')
        out.append(f'<text x="{left + pw + 34}" y="{ly}" font-size="10">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def nice_step(raw: float) -> float:
    """The smallest of 1, 2 and 5 times a power of ten that is at least `raw`."""
    power = 10.0 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def snapshot_ends(curves: Curves) -> list[tuple[float, float]]:
    """The deep exit's last validation point of each snapshot's run: one per shipped model,
    each at the end of its run (annealed), so the points lie on one curve."""
    ends, i = [], 0
    for end in curves.snapshots:
        last = None
        while i < len(curves.deep) and curves.deep[i][0] <= end:
            last, i = curves.deep[i], i + 1
        if last is not None:
            ends.append(last)
    return ends


def power_law(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(a, b) of loss = a * tokens^-b, least squares in log-log space (at least two points).
    An offset (an irreducible loss) is left out: on these snapshots the best offset was 0."""
    xs = [math.log(t) for t, _ in points]
    ys = [math.log(v) for _, v in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return math.exp(my - slope * mx), -slope


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="the model folder (its card shows FOLDER/loss.svg)")
    ap.add_argument("--logs", type=Path, help="its train-1.log, train-2.log, ... (default: train/logs/NAME, NAME the "
                                              "folder's name)")
    ap.add_argument("--out", type=Path, help="default: FOLDER/loss.svg")
    ap.add_argument("--project", type=float, nargs="+", metavar="MTOKENS",
                    help="instead of drawing: fit a power law to the snapshots' final validation loss "
                         "(deep exit) and print it at these token counts (millions, since the first run)")
    args = ap.parse_args(argv)
    logs = log_files(args.logs or LOGS / args.folder.resolve().name)
    curves = read_curves(logs)
    if args.project:
        ends = snapshot_ends(curves)
        if len(ends) < 2:
            raise SystemExit(f"{args.folder}: a projection needs at least two snapshots with a validation point")
        a, b = power_law(ends)
        rms = math.sqrt(sum((a * t ** -b - v) ** 2 for t, v in ends) / len(ends))
        print(f"deep validation loss = {a:.3f} x (M tokens)^-{b:.4f} over {len(ends)} snapshot ends "
              f"({ends[0][0]:.1f}M-{ends[-1][0]:.1f}M tokens; rms error {rms:.4f})")
        for t in args.project:
            print(f"  {t:g}M tokens: {a * t ** -b:.3f}")
        return
    out = args.out or args.folder / "loss.svg"
    refuse_overwriting_inputs([("--out", out)], [("the log", log) for log in logs])
    write_text(out, svg(curves, f"{args.folder.name}: loss while training"))
    last = curves.deep[-1] if curves.deep else None
    print(f"{out}: {len(curves.snapshots)} snapshots, {curves.snapshots[-1]:.2f}M tokens" + (f", last validation loss (deep) {last[1]:.4f}" if last else ""))


if __name__ == "__main__":
    main()
