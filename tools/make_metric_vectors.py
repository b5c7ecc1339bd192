"""Test vectors for the evaluation metrics (crate/src/metrics), computed with the reference packages.

Run by hand with the project venv (it has rouge-score and sacrebleu):
    /root/.cache/free-wasm/venv/bin/python tools/make_metric_vectors.py
writes tests/fixtures/metric_vectors.json.

Pairs are (hypothesis, reference): references are targets of data/test.jsonl (English
summaries and French translations); hypotheses are perturbed copies of them or other targets,
plus hand-written edge cases (empty strings, accents, Unicode whitespace, 13a corner cases).
For each pair: rouge-score's F1 for rouge1/rouge2/rougeL (default tokenizer, no stemmer) and
sacreBLEU's corpus BLEU and chrF over that single segment. For each corpus (a list of
hypothesis indices and a list of reference indices into `pairs`): the mean per-example ROUGE
F1 x 100 and sacreBLEU's corpus_bleu / corpus_chrf with default settings.

Every float is stored as a string holding Python's repr (the shortest string that round-trips)
so the Rust test can parse it exactly: JSON number parsing is not guaranteed to be exact.
Where sacreBLEU raises (empty corpus), the Rust code returns 0 and the vector says "0.0" with
"python_raises": true.
"""

import json
import os
import random
import sys
import unicodedata
from importlib import metadata

import sacrebleu
from rouge_score import rouge_scorer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "metric_vectors.json")
PER_TASK = 150

SCORER = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)

# Hand-written (hypothesis, reference) pairs for the corners of the three tokenisers.
EDGE = [
    ("", ""),
    ("", "a reference with words"),
    ("a hypothesis with words", ""),
    ("a", "a"),
    ("a b c", "a b c"),
    ("a b c d", "a b c d"),
    ("word", "other"),
    ("   ", "\t\n"),
    ("!!! ... ???", "!!! ... ???"),
    ("système de surveillance d’hôtes", "systeme de surveillance d'hotes"),
    ("ÉCOLE élève à Paris", "école élève à paris"),
    ("İstanbul has 3\u212a (Kelvin) signs", "istanbul has 3k kelvin signs"),
    ("x\x1cy\x1dz\x1e\x1fw", "x y z w"),
    ("non\u00a0breaking\u202fspace\u3000here", "non breaking space here"),
    ("tab\tseparated\nlines\r\nhere ", "tab separated lines here"),
    ("version 3.5, 4,000 units and 5-6 - 7.", "version 3.5 , 4,000 units and 5 - 6 - 7 ."),
    ("U.S.A. and e.g. x.,y a..b", "U.S.A. and e.g. x., y a.. b"),
    ("&amp;quot; &amp;lt; &lt;tag&gt; &quot;q&quot;", "& quot ; < <tag> \"q\""),
    ("a<skipped>b and c-\nd", "ab and cd"),
    ("(hi) \"quoted\" l'homme 1-2-3 {x|y} [z] ~a^b_c`d", "( hi ) \" quoted \" l'homme 1 - 2 - 3"),
    ("emoji 🙂 test ✓ done", "emoji test done 🙂"),
    ("中文 测试 text", "中文 text 测试"),
    ("٣ ½ ² numbers ⁴", "numbers 3 1/2 2 4"),
    ("the the the the the", "the cat sat on the mat"),
    ("the cat sat on the mat", "the the the the the"),
    ("cat mat on sat the the", "the cat sat on the mat"),
    ("The Cat SAT on the Mat.", "the cat sat on the mat"),
    ("trailing spaces   ", "trailing spaces"),
    ("ends with tokenized period .", "ends with tokenized period."),
    ("Œuvre cœur naïve façade Ærø straße ß", "oeuvre coeur naive facade aero strasse ss"),
    ("Ⅻ ﬁne ﬀ ǅ ǈ", "xii fine ff dz lj"),
    ("ΣΊΣΥΦΟΣ Ωμέγα", "σίσυφος ωμέγα"),
    ("x", "x y z"),
    ("hyphen at end-\n", "hyphen at end-"),
    ("separator after hyphen-\n\x1c", "separator after hyphen-"),
    ("one two three four five six", "one two three four five six seven"),
]


def pyrepr(x):
    return repr(float(x))


def strip_accents(s):
    return "".join(c for c in unicodedata.normalize("NFD", s) if not unicodedata.combining(c))


def perturb(rng, target, others):
    """One hypothesis for `target` and the name of the perturbation."""
    words = target.split()
    other = rng.choice(others)
    kinds = ["identical", "drop", "swap", "replace", "truncate", "duplicate", "other",
             "lower", "upper", "punct", "accents", "apostrophe", "numbers", "spaces",
             "concat", "empty"]
    kind = rng.choice(kinds)
    if kind == "drop" and len(words) > 1:
        for _ in range(min(2, len(words) - 1)):
            words.pop(rng.randrange(len(words)))
        return kind, " ".join(words)
    if kind == "swap" and len(words) > 1:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
        return kind, " ".join(words)
    if kind == "replace" and words:
        words[rng.randrange(len(words))] = rng.choice(other.split() or ["x"])
        return kind, " ".join(words)
    if kind == "truncate":
        return kind, " ".join(words[: max(1, len(words) // 2)])
    if kind == "duplicate" and words:
        i = rng.randrange(len(words))
        words.insert(i, words[i])
        return kind, " ".join(words)
    if kind == "other":
        return kind, other
    if kind == "lower":
        return kind, target.lower()
    if kind == "upper":
        return kind, target.upper()
    if kind == "punct":
        return kind, rng.choice([target.rstrip(".") + ".", target.replace(",", ""),
                                 target.replace(" ", ", ", 1), "(" + target + ")"])
    if kind == "accents":
        return kind, strip_accents(target)
    if kind == "apostrophe":
        return kind, target.replace("’", "'").replace("'", " ' ") + " ’"
    if kind == "numbers":
        return kind, target + rng.choice([" version 2.0", ", 3,5 %", " (1-2)", " 64-bit, 4.5.1"])
    if kind == "spaces":
        return kind, "  " + target.replace(" ", rng.choice(["  ", "\t", "\u00a0", " \n "])) + " \n"
    if kind == "concat":
        return kind, target + " " + other
    if kind == "empty":
        return kind, ""
    return "identical", target


def rouge_f1(hyp, ref):
    s = SCORER.score(ref, hyp)  # rouge-score takes (target, prediction)
    return s["rouge1"].fmeasure, s["rouge2"].fmeasure, s["rougeL"].fmeasure


def corpus_scores(hyps, refs):
    """sacreBLEU defaults; (bleu, chrf, python_raises)."""
    try:
        bleu = sacrebleu.corpus_bleu(hyps, [refs]).score
        chrf = sacrebleu.corpus_chrf(hyps, [refs]).score
        return bleu, chrf, False
    except (IndexError, ValueError, ZeroDivisionError):
        return 0.0, 0.0, True


def mean_x100(values):
    # Sequential sum, then the mean, then x100: the order the Rust code uses.
    if not values:
        return 0.0
    total = 0.0
    for v in values:
        total += v
    return 100 * (total / len(values))


def main():
    rng = random.Random(20240611)
    rows = [json.loads(line) for line in open(os.path.join(ROOT, "data", "test.jsonl"), encoding="utf-8")]
    pairs = []
    for task in ("summarize", "translate"):
        targets = [r["target"] for r in rows if r["task"] == task]
        chosen = rng.sample(targets, PER_TASK)
        for ref in chosen:
            kind, hyp = perturb(rng, ref, targets)
            pairs.append({"task": task, "kind": kind, "hyp": hyp, "ref": ref})
    for hyp, ref in EDGE:
        pairs.append({"task": "edge", "kind": "edge", "hyp": hyp, "ref": ref})

    for p in pairs:
        r1, r2, rl = rouge_f1(p["hyp"], p["ref"])
        bleu, chrf, _ = corpus_scores([p["hyp"]], [p["ref"]])
        p.update(rouge1=pyrepr(r1), rouge2=pyrepr(r2), rougeL=pyrepr(rl), bleu=pyrepr(bleu), chrf=pyrepr(chrf))

    by_task = {t: [i for i, p in enumerate(pairs) if p["task"] == t] for t in ("summarize", "translate", "edge")}
    everything = list(range(len(pairs)))
    corpora = [
        ("summarize", by_task["summarize"], by_task["summarize"]),
        ("translate", by_task["translate"], by_task["translate"]),
        ("edge", by_task["edge"], by_task["edge"]),
        ("all", everything, everything),
        ("empty corpus", [], []),
        ("first pair", [0], [0]),
        ("identical only", [i for i, p in enumerate(pairs) if p["hyp"] == p["ref"]],
         [i for i, p in enumerate(pairs) if p["hyp"] == p["ref"]]),
        ("empty hypotheses", [i for i, p in enumerate(pairs) if p["hyp"] == ""],
         [i for i, p in enumerate(pairs) if p["hyp"] == ""]),
        ("more hypotheses than references", everything[:12], everything[:9]),
        ("more references than hypotheses", everything[:5], everything[:8]),
        ("short segments", [i for i, p in enumerate(pairs) if len(p["hyp"].split()) <= 3],
         [i for i, p in enumerate(pairs) if len(p["hyp"].split()) <= 3]),
    ]
    for k in range(0, len(pairs) - 25, 25):
        corpora.append((f"chunk {k}", everything[k:k + 25], everything[k:k + 25]))
    for k in range(6):
        sample = sorted(rng.sample(everything, 40))
        corpora.append((f"random {k}", sample, sample))

    out_corpora = []
    for name, hi, ri in corpora:
        hyps = [pairs[i]["hyp"] for i in hi]
        refs = [pairs[i]["ref"] for i in ri]
        bleu, chrf, raises = corpus_scores(hyps, refs)
        f1s = [rouge_f1(h, r) for h, r in zip(hyps, refs)]
        entry = {
            "name": name, "hyps": hi, "refs": ri,
            "rouge1": pyrepr(mean_x100([f[0] for f in f1s])),
            "rouge2": pyrepr(mean_x100([f[1] for f in f1s])),
            "rougeL": pyrepr(mean_x100([f[2] for f in f1s])),
            "bleu": pyrepr(bleu), "chrf": pyrepr(chrf),
        }
        if raises:
            entry["python_raises"] = True
        out_corpora.append(entry)

    tokenize = [{"text": t, "rouge": SCORER._tokenizer.tokenize(t),
                 "13a": sacrebleu.BLEU()._preprocess_segment(t).split()}
                for pair in EDGE for t in pair]

    doc = {
        "generator": "tools/make_metric_vectors.py",
        "versions": {"python": sys.version.split()[0], "rouge_score": metadata.version("rouge-score"),
                     "sacrebleu": sacrebleu.__version__},
        "settings": "RougeScorer(['rouge1','rouge2','rougeL'], use_stemmer=False); "
                    "sacrebleu.corpus_bleu(hyps, [refs]); sacrebleu.corpus_chrf(hyps, [refs])",
        "pairs": pairs,
        "corpora": out_corpora,
        "tokenize": tokenize,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"wrote {OUT}: {len(pairs)} pairs, {len(out_corpora)} corpora", file=sys.stderr)


if __name__ == "__main__":
    main()
