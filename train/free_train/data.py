"""Build the two-task data set from Debian's package descriptions.

    python -m free_train.data build [--lists-dir DIR | --en FILE... --fr FILE...] [--out data/]

Tasks (JSONL rows ``{"id", "task", "source", "target"}``):

* ``summarize``: the long description (paragraphs joined by "\\n") -> the one-line synopsis.
* ``translate``: English -> French from Debian's own translations: the synopsis with its French
  synopsis, and paragraph i with French paragraph i when both have the same number of
  paragraphs. Pairs whose French text equals the English (untranslated) are dropped.

Descriptions are keyed by ``Description-md5``. Every description gets a rank from
sha256(SPLIT_SALT + md5); examples are visited in rank order (the order inside a description is
fixed), exact duplicates of a source text are dropped per task (the first, lowest-ranked one
stays), then per task the first examples go to test (1,000), the next to validation (500),
and the rest to train. A description never straddles two splits of the same task: the
examples of the description that would cross a boundary are dropped.

Formatting (Debian policy 5.6.13): the first line is the synopsis; in the extended part a
line " ." separates paragraphs, wrapped lines are joined with a space, and an indented line
starting a list item ("* ", "- ", "+ ", "o ") begins a new line inside the paragraph.

A second step adds translate pairs from Debian's French man-page translations to train only:

    python -m free_train.data add-manpages --debs DIR [--data data/]

It leaves validation, test and the package-description rows of train as they are (checked by
hash against the manifest), drops the old man-page rows and appends the new ones (what is
read and kept: manpages.py). It is a step of its own because apt's Translation files change
under a release (security updates add descriptions): `build` reproduces data/ only from the
exact files the manifest names, and a rebuild from newer ones would re-split everything. So
the description rows are built once and kept, and the man-page rows are rebuilt from four pinned
packages onto them. A full rebuild is `build` from the manifest's files, then `add-manpages`.
"""
from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass, field

from tokenizers import Tokenizer

from . import TASK_PREFIXES, manpages
from .atomic import refuse_overwriting_inputs, replacing, write_text

SPLIT_SALT = "free-wasm-split-v1:"
TEST_PER_TASK = 1000
VALIDATION_PER_TASK = 500
BULLET_RE = re.compile(r"^([*\-+o•]|\d+[.)])\s")
WS_RE = re.compile(r"[ \t\u00a0]+")


# ---------------------------------------------------------------- reading ---

def read_text(path: str) -> str:
    """Read a (possibly compressed) apt index file as UTF-8 text."""
    if path.endswith(".lz4"):
        raw = subprocess.run(["lz4cat", path], check=True, stdout=subprocess.PIPE).stdout
    elif path.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            raw = f.read()
    elif path.endswith(".xz"):
        import lzma
        with lzma.open(path, "rb") as f:
            raw = f.read()
    else:
        with open(path, "rb") as f:
            raw = f.read()
    return raw.decode("utf-8", errors="replace")


def parse_stanzas(text: str):
    """Yield dicts field -> value (continuation lines kept, joined by '\\n')."""
    cur: dict[str, str] = {}
    key = None
    for line in text.split("\n"):
        if not line.strip():
            if cur:
                yield cur
            cur, key = {}, None
            continue
        if line[0] in " \t":
            if key is not None:
                cur[key] += "\n" + line
            continue
        k, _, v = line.partition(":")
        key = k.strip()
        cur[key] = v.strip()
    if cur:
        yield cur


@dataclass
class Description:
    md5: str
    synopsis: str
    paragraphs: list[str] = field(default_factory=list)


def _clean(s: str) -> str:
    return WS_RE.sub(" ", s).strip()


def parse_description(value: str, md5: str) -> Description:
    lines = value.split("\n")
    synopsis = _clean(lines[0])
    paragraphs: list[str] = []
    cur: list[str] = []  # lines of the current paragraph

    def flush():
        text = "\n".join(_clean(x) for x in cur if _clean(x))
        if text:
            paragraphs.append(text)
        cur.clear()

    for raw in lines[1:]:
        body = raw[1:] if raw[:1] in (" ", "\t") else raw
        if body.strip() == ".":
            flush()
            continue
        verbatim = body[:1] in (" ", "\t")
        stripped = body.strip()
        if not stripped:
            continue
        if not cur or (verbatim and BULLET_RE.match(stripped)):
            cur.append(stripped)
        else:
            cur[-1] += " " + stripped
    flush()
    return Description(md5=md5, synopsis=synopsis, paragraphs=paragraphs)


def read_descriptions(paths: list[str], lang: str) -> dict[str, Description]:
    out: dict[str, Description] = {}
    fieldname = f"Description-{lang}"
    for path in paths:
        for st in parse_stanzas(read_text(path)):
            md5 = st.get("Description-md5")
            val = st.get(fieldname)
            if not md5 or val is None or md5 in out:
                continue
            d = parse_description(val, md5)
            if d.synopsis:
                out[md5] = d
    return out


# --------------------------------------------------------------- examples ---

def rank_key(md5: str) -> str:
    return hashlib.sha256((SPLIT_SALT + md5).encode()).hexdigest()


def examples_for(en: Description, fr: Description | None, stats: dict) -> dict[str, list[dict]]:
    ex: dict[str, list[dict]] = {"summarize": [], "translate": []}
    if en.paragraphs:
        ex["summarize"].append({"id": f"summarize-{en.md5}", "task": "summarize",
                                "source": "\n".join(en.paragraphs), "target": en.synopsis})
    if fr is not None:
        pairs = [("syn", en.synopsis, fr.synopsis)]
        if len(en.paragraphs) == len(fr.paragraphs):
            pairs += [(f"p{i}", a, b) for i, (a, b) in enumerate(zip(en.paragraphs, fr.paragraphs))]
        else:
            stats["translate_paragraph_count_mismatch"] += 1
        for tag, a, b in pairs:
            if a == b:
                stats["translate_untranslated_dropped"] += 1
                continue
            ex["translate"].append({"id": f"translate-{en.md5}-{tag}", "task": "translate",
                                    "source": a, "target": b})
    return ex


def build_splits(en: dict[str, Description], fr: dict[str, Description],
                 test_n: int = TEST_PER_TASK, val_n: int = VALIDATION_PER_TASK):
    stats = {"translate_paragraph_count_mismatch": 0, "translate_untranslated_dropped": 0,
             "fr_without_en": sum(1 for m in fr if m not in en),
             "duplicate_source_dropped": {"summarize": 0, "translate": 0},
             "boundary_dropped": {"summarize": 0, "translate": 0}}
    order = sorted(en, key=rank_key)
    splits = {"test": [], "validation": [], "train": []}
    seen = {"summarize": set(), "translate": set()}
    filled = {t: {"test": 0, "validation": 0} for t in seen}
    limits = {"test": test_n, "validation": val_n}
    for md5 in order:
        per_task = examples_for(en[md5], fr.get(md5), stats)
        for task, rows in per_task.items():
            kept = []
            for r in rows:
                if r["source"] in seen[task]:
                    stats["duplicate_source_dropped"][task] += 1
                    continue
                seen[task].add(r["source"])
                kept.append(r)
            if not kept:
                continue
            target = "train"
            for name in ("test", "validation"):
                if filled[task][name] < limits[name]:
                    target = name
                    break
            if target != "train":
                room = limits[target] - filled[task][target]
                if len(kept) > room:
                    stats["boundary_dropped"][task] += len(kept) - room
                    kept = kept[:room]
                filled[task][target] += len(kept)
            splits[target].extend(kept)
    return splits, stats


# ----------------------------------------------------------------- output ---

def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def write_output(path: str, rows: list[dict]) -> None:
    data = jsonl_bytes(rows)
    with replacing(path) as f:
        if path.endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
                gz.write(data)
        else:
            f.write(data)


def read_jsonl(path: str) -> list[dict]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def split_file(split: str) -> str:
    return f"{split}.jsonl.gz" if split == "train" else f"{split}.jsonl"


def find_split(data_dir: str, split: str) -> str:
    for name in (f"{split}.jsonl", f"{split}.jsonl.gz"):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"no {split}.jsonl[.gz] in {data_dir}: run `python -m free_train.data build` first")


def apt_lists_dir() -> str:
    try:
        out = subprocess.run(["apt-config", "shell", "D", "Dir::State::lists/d"],
                             check=True, stdout=subprocess.PIPE, text=True).stdout
        m = re.search(r"D='([^']*)'", out)
        if m:
            return m.group(1)
    except (OSError, subprocess.CalledProcessError):
        pass
    return "/var/lib/apt/lists"


def find_translation_files(lists_dir: str, lang: str) -> list[str]:
    files = []
    for ext in ("", ".lz4", ".gz", ".xz"):
        files += glob.glob(os.path.join(lists_dir, f"*_i18n_Translation-{lang}{ext}"))
    return sorted(files)


def build(en_files: list[str], fr_files: list[str], out_dir: str,
          test_n: int = TEST_PER_TASK, val_n: int = VALIDATION_PER_TASK, log=print) -> dict:
    if not en_files:
        raise SystemExit("no Translation-en files found: run `apt-get update -o Acquire::Languages=en,fr` "
                         "or pass --en FILE")
    names = [split_file(s) for s in ("test", "validation", "train")] + ["manifest.json"]
    refuse_overwriting_inputs([("--out", os.path.join(out_dir, name)) for name in names],
                              [("--en", p) for p in en_files] + [("--fr", p) for p in fr_files])
    en = read_descriptions(en_files, "en")
    fr = read_descriptions(fr_files, "fr")
    log(f"read {len(en)} English and {len(fr)} French descriptions")
    splits, stats = build_splits(en, fr, test_n, val_n)
    os.makedirs(out_dir, exist_ok=True)
    outputs = {}
    for split, rows in splits.items():
        name = split_file(split)
        path = os.path.join(out_dir, name)
        write_output(path, rows)
        counts = {t: sum(1 for r in rows if r["task"] == t) for t in ("summarize", "translate")}
        outputs[split] = {"file": name, "sha256": sha256_file(path), "bytes": os.path.getsize(path),
                          "examples": counts}
        log(f"{split:10s} {counts} -> {path}")
    manifest = {
        "builder": "python -m free_train.data build",
        "format": {"row": ["id", "task", "source", "target"],
                   "tasks": {"summarize": "long description (paragraphs joined by \\n) -> synopsis",
                             "translate": "English synopsis/paragraph -> Debian's French translation"}},
        "split": {"rule": f"rank descriptions by sha256('{SPLIT_SALT}' + Description-md5); drop duplicate "
                          f"sources per task keeping the lowest rank; per task the first {test_n} examples -> "
                          f"test, next {val_n} -> validation, rest -> train",
                  "test_per_task": test_n, "validation_per_task": val_n},
        "sources": [{"file": os.path.basename(p), "lang": lang, "sha256": sha256_file(p),
                     "bytes": os.path.getsize(p)}
                    for lang, ps in (("en", en_files), ("fr", fr_files)) for p in ps],
        "descriptions": {"en": len(en), "fr": len(fr)},
        "dropped": stats,
        "outputs": outputs,
    }
    write_manifest(out_dir, manifest)
    return manifest


def write_manifest(data_dir: str, manifest: dict) -> None:
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    write_text(os.path.join(data_dir, "manifest.json"), text)


# ------------------------------------------------------ man-page pairs ---

def token_counts(tok, rows: list[dict]) -> dict:
    """Rows and tokens per task as the trainer counts them (task prefix and </s> included)."""
    out = {}
    for task, prefix in TASK_PREFIXES.items():
        rs = [r for r in rows if r["task"] == task]
        out[task] = {"rows": len(rs),
                     "source_tokens": sum(len(e.ids) for e in tok.encode_batch([prefix + r["source"] for r in rs])),
                     "target_tokens": sum(len(e.ids) for e in tok.encode_batch([r["target"] for r in rs]))}
    return out


def checked_description_rows(train_path: str, train_out: dict) -> tuple[list[dict], str]:
    """The train file's package-description rows, refused unless they are the manifest's.

    A train file straight from `build` is known by the file's hash; once man-page rows were
    added, by the hash of the description rows' JSONL, which add-manpages records."""
    rows = read_jsonl(train_path)
    desc = [r for r in rows if not r["id"].startswith(manpages.ID_PREFIX)]
    digest = hashlib.sha256(jsonl_bytes(desc)).hexdigest()
    expected = train_out.get("descriptions_sha256")
    if expected is None and len(desc) == len(rows) and sha256_file(train_path) == train_out["sha256"]:
        expected = digest
    if digest != expected:
        raise SystemExit(f"{train_path}: the package-description rows are not the manifest's; rebuild "
                         "them with `build` from the Translation files it names")
    return desc, digest


def checked_held_out_rows(data_dir: str, outputs: dict) -> list[dict]:
    """Validation and test rows, refused unless the files are the manifest's."""
    rows = []
    for split in ("validation", "test"):
        path = os.path.join(data_dir, outputs[split]["file"])
        if sha256_file(path) != outputs[split]["sha256"]:
            raise SystemExit(f"{path} is not the file the manifest names")
        rows += read_jsonl(path)
    return rows


def read_manpage_packages(debs_dir: str, check_sha256: bool = True) -> tuple[dict, dict, list[dict]]:
    """English and French pages ({page: gzipped roff}) of the pinned packages in debs_dir, and
    the manifest's record of each package; refuses a missing or different package."""
    pages = {"en": {}, "fr": {}}
    sources = []
    for name, sha, lang in manpages.PACKAGES:
        path = os.path.join(debs_dir, name)
        if not os.path.isfile(path):
            raise SystemExit(f"{path} is missing: fetch the packages with `{manpages.FETCH}` in {debs_dir}")
        digest = sha256_file(path)
        if check_sha256 and digest != sha:
            raise SystemExit(f"{path}: sha256 is {digest}, not {sha} (bookworm's {name})")
        with open(path, "rb") as f:
            for page, (page_lang, gz) in manpages.read_pages(f.read()).items():
                if page_lang == lang:
                    pages[lang][page] = gz
        sources.append({"file": name, "sha256": digest, "bytes": os.path.getsize(path)})
    return pages["en"], pages["fr"], sources


def add_manpages(debs_dir: str, data_dir: str, tokenizer_path: str, check_sha256: bool = True,
                 log=print) -> dict:
    """Replace the man-page rows of data_dir's train file (see manpages.py's docstring)."""
    en_pages, fr_pages, sources = read_manpage_packages(debs_dir, check_sha256)
    manifest_path = os.path.join(data_dir, "manifest.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    outputs = manifest["outputs"]
    train_path = os.path.join(data_dir, outputs["train"]["file"])
    # The train file and the manifest are rewritten on purpose, from what was read of them.
    debs = [("--debs", os.path.join(debs_dir, name)) for name, _, _ in manpages.PACKAGES]
    refuse_overwriting_inputs([("--data", train_path), ("--data", manifest_path)],
                              [("--tokenizer", tokenizer_path), *debs])
    held_out = checked_held_out_rows(data_dir, outputs)
    desc, desc_digest = checked_description_rows(train_path, outputs["train"])
    tok = Tokenizer.from_file(tokenizer_path)
    desc_counts = token_counts(tok, desc)
    budget = desc_counts["translate"]["target_tokens"]

    dropped = {k: 0 for k in manpages.PAGE_DROP_REASONS + manpages.DROP_REASONS + manpages.SELECT_DROP_REASONS}
    candidates = manpages.pairs_from_pages(en_pages, fr_pages, dropped)
    n_segments = len(candidates) + sum(dropped[k] for k in manpages.DROP_REASONS)
    unique = manpages.dedupe(candidates,
                             {manpages.norm(r["source"]) for r in held_out},
                             {manpages.norm(r["target"]) for r in held_out},
                             {manpages.norm(r["source"]) for r in desc if r["task"] == "translate"},
                             dropped)
    man_rows, man_tokens = manpages.select(unique, tok, TASK_PREFIXES["translate"], budget, dropped)
    pages = {"english": len(en_pages), "french": len(fr_pages),
             "paired": len(fr_pages) - sum(dropped[k] for k in manpages.PAGE_DROP_REASONS)}
    log(f"pages {pages}, {n_segments} segments: {len(man_rows)} pairs kept "
        f"({man_tokens['target']} target tokens of {budget} allowed), dropped {dropped}")

    write_output(train_path, desc + man_rows)
    rows = desc + man_rows
    outputs["train"].update({
        "sha256": sha256_file(train_path), "bytes": os.path.getsize(train_path),
        "examples": {t: sum(1 for r in rows if r["task"] == t) for t in TASK_PREFIXES},
        "descriptions_sha256": desc_digest,
        "origins": {"descriptions": desc_counts,
                    "manpages": {"translate": {"rows": len(man_rows), "source_tokens": man_tokens["source"],
                                               "target_tokens": man_tokens["target"]}}}})
    tokenizer = {"file": os.path.relpath(tokenizer_path), "sha256": sha256_file(tokenizer_path)}
    manifest["manpages"] = manpages.manifest_entry(sources, tokenizer, pages, n_segments, len(man_rows),
                                                   dropped, budget)
    write_manifest(data_dir, manifest)
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m free_train.data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build data/ from apt's Translation files")
    b.add_argument("--lists-dir", default=None, help="apt lists folder (default: apt-config's Dir::State::lists)")
    b.add_argument("--en", nargs="*", default=None, help="Translation-en files (default: all in the lists folder)")
    b.add_argument("--fr", nargs="*", default=None, help="Translation-fr files (default: all in the lists folder)")
    b.add_argument("--out", default="data", help="output folder (default: data)")
    b.add_argument("--test", type=int, default=TEST_PER_TASK)
    b.add_argument("--validation", type=int, default=VALIDATION_PER_TASK)
    m = sub.add_parser("add-manpages", help="replace train's man-page translate pairs (manpages-l10n)")
    m.add_argument("--debs", required=True, metavar="DIR",
                   help=f"folder with the four pinned packages (fetch them there with `{manpages.FETCH}`)")
    m.add_argument("--data", default="data", help="folder with the manifest and the three files (default: data)")
    m.add_argument("--tokenizer", default="models/free-t5-mini/tokenizer.json",
                   help="counts tokens for the caps (default: the demo model's)")
    a = ap.parse_args(argv)
    if a.cmd == "add-manpages":
        add_manpages(a.debs, a.data, a.tokenizer)
        return
    lists = a.lists_dir or apt_lists_dir()
    en_files = a.en if a.en is not None else find_translation_files(lists, "en")
    fr_files = a.fr if a.fr is not None else find_translation_files(lists, "fr")
    build(en_files, fr_files, a.out, a.test, a.validation)


if __name__ == "__main__":
    main()
