"""Quality of the outputs `scripts/bench-browser.sh` recorded (target/bench-browser.json):
ROUGE-L (summarize) or BLEU (translate) per device, task and contender, and the retention
against free-wasm `full` and against transformers.js at its default for the device. The browser page records token ids
only; this scores them with rouge-score and sacreBLEU, which the Rust metrics equal bit for
bit on the committed vectors (tests/fixtures/metric_vectors.json).

Run by hand with the project venv (it has rouge-score, sacrebleu and tokenizers):
    ~/.cache/free-wasm/venv/bin/python tools/bench_quality.py target/bench-browser.json [--model DIR]
"""

import argparse
import json
from pathlib import Path

import sacrebleu
from rouge_score import rouge_scorer
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
EOS = 1


def score(task, hyps, refs):
    if task == "summarize":
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        return "RL", 100 * sum(scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, hyps)) / len(refs)
    return "BLEU", sacrebleu.corpus_bleu(hyps, [refs]).score


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report")
    ap.add_argument("--model", default=str(ROOT / "models/free-t5-mini"))
    ap.add_argument("--data", default=str(ROOT / "data/test.jsonl"))
    args = ap.parse_args()
    tok = Tokenizer.from_file(str(Path(args.model) / "tokenizer.json"))
    rows = [json.loads(line) for line in open(args.data, encoding="utf-8") if line.strip()]
    report = json.load(open(args.report, encoding="utf-8"))
    n = report["examplesPerTask"]
    for r in report["reports"]:
        scores = {}
        for t in r["tallies"]:
            refs = [x["target"] for x in rows if x["task"] == t["task"]][:n]
            hyps = [tok.decode([i for i in out if i != EOS]) for out in t["outputs"]]
            scores[(t["task"], t["name"])] = score(t["task"], hyps, refs)
        # transformers.js at its own default on the device, as run.mjs recorded it.
        tjs_name = r["transformersJsDefault"]
        for (task, name), (metric, q) in scores.items():
            full = scores.get((task, "full"), (None, 0))[1]
            tjs = scores.get((task, tjs_name), (None, 0))[1]
            vs = lambda b: f"{q / b:.3f}" if b else "-"
            print(f"{r['device']:<7} {task:<10} {name:<24} {metric} {q:6.2f}  vs full {vs(full)}  vs {tjs_name} {vs(tjs)}")


if __name__ == "__main__":
    main()
