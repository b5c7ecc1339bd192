"""The example tables of a model card: the first N test inputs of each task, with the
reference, the full model's output and the shallow exit's alone (greedy), as markdown.

Run by hand after `cargo build --release -p free-cli`:
    python tools/card_examples.py models/free-t5-mini [--n 10] [--max-new-tokens 48]
Standard library only; the outputs come from the `free` binary, so they are the engine's.
"""

import argparse
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generate(free, model, task, text, strategy, max_new_tokens):
    out = subprocess.run(
        [free, "generate", "--model", model, "--task", task, "--strategy", strategy,
         "--max-new-tokens", str(max_new_tokens), "--json", text],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)["text"]


def cell(text, width=80):
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= width else text[:width] + "…"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--data", default=str(ROOT / "data/test.jsonl"))
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--free", default=str(ROOT / "target/release/free"))
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.data, encoding="utf-8") if line.strip()]
    for task in ("summarize", "translate"):
        examples = [r for r in rows if r["task"] == task][: args.n]
        print(f"{task} (the first {len(examples)} test inputs; texts cut to 80 characters):\n")
        print("| source | reference | full model | shallow exit alone |")
        print("| --- | --- | --- | --- |")
        for r in examples:
            full, shallow = (generate(args.free, args.model, task, r["source"], s, args.max_new_tokens) for s in ("full", "static"))
            print(f"| {cell(r['source'])} | {cell(r['target'])} | {cell(full)} | {cell(shallow)} |")
        print()


if __name__ == "__main__":
    main()
