import gzip
import json
import os

from free_train.data import build, build_splits, parse_description, read_descriptions, read_jsonl

from conftest import MD5S


def test_parse_description_paragraphs_and_bullets():
    d = parse_description("Synopsis here\n First line\n wrapped.\n .\n List:\n  * one\n  * two that\n    wraps\n .\n End.", "x")
    assert d.synopsis == "Synopsis here"
    assert d.paragraphs == ["First line wrapped.", "List:\n* one\n* two that wraps", "End."]


def test_read_descriptions(translation_files):
    en_path, fr_path = translation_files
    en = read_descriptions([en_path], "en")
    fr = read_descriptions([fr_path], "fr")
    assert set(en) == {MD5S["m1"], MD5S["m2"], MD5S["m3"], MD5S["m4"]}
    assert en[MD5S["m4"]].paragraphs == []
    assert fr[MD5S["m1"]].synopsis == "outil pour frobniquer des widgets"
    assert len(fr[MD5S["m1"]].paragraphs) == 3


def test_build_tasks_dedupe_and_split(translation_files, tmp_path):
    en_path, fr_path = translation_files
    out = tmp_path / "all"
    manifest = build([en_path], [fr_path], str(out), test_n=0, val_n=0, log=lambda *a: None)
    all_rows = read_jsonl(str(out / "train.jsonl.gz"))
    summ = [r for r in all_rows if r["task"] == "summarize"]
    trans = [r for r in all_rows if r["task"] == "translate"]
    # alpha and alpha-doc share their long description: one summary survives; gamma has none
    assert len(summ) == 2
    assert {r["target"] for r in summ} <= {"Tool to frobnicate widgets", "Library for reading beta files",
                                          "Tool to frobnicate widgets (documentation)"}
    assert "Library for reading beta files" in {r["target"] for r in summ}
    # alpha: synopsis + 3 paragraphs (same count); beta: paragraph counts differ -> synopsis only
    assert len(trans) == 5
    pairs = {r["source"]: r["target"] for r in trans}
    assert pairs["Tool to frobnicate widgets"] == "outil pour frobniquer des widgets"
    assert pairs["Features:\n* fast frobnication\n* small footprint which is very useful on embedded systems"] \
        == "Fonctionnalités :\n* frobnication rapide\n* faible empreinte"
    assert pairs["Library for reading beta files"] == "bibliothèque pour lire les fichiers beta"
    for r in all_rows:
        assert set(r) == {"id", "task", "source", "target"}
    assert manifest["dropped"]["fr_without_en"] == 1
    assert manifest["dropped"]["duplicate_source_dropped"]["summarize"] == 1
    assert manifest["sources"][0]["sha256"] and manifest["outputs"]["train"]["sha256"]

    out = tmp_path / "split"
    manifest = build([en_path], [fr_path], str(out), test_n=1, val_n=1, log=lambda *a: None)
    rows = {s: read_jsonl(str(out / manifest["outputs"][s]["file"])) for s in ("test", "validation", "train")}
    # a description never straddles splits of one task, and counts follow test_n / val_n
    for task in ("summarize", "translate"):
        assert sum(r["task"] == task for r in rows["test"]) == 1
        assert sum(r["task"] == task for r in rows["validation"]) == 1
    md5_split = {}
    for s, rs in rows.items():
        for r in rs:
            key = (r["task"], r["id"].split("-")[1])
            assert md5_split.setdefault(key, s) == s
    with open(out / "manifest.json") as f:
        assert json.load(f)["outputs"]["test"]["examples"] == {"summarize": 1, "translate": 1}


def test_build_is_deterministic(translation_files, tmp_path):
    en_path, fr_path = translation_files
    m1 = build([en_path], [fr_path], str(tmp_path / "a"), 1, 1, log=lambda *a: None)
    m2 = build([en_path], [fr_path], str(tmp_path / "b"), 1, 1, log=lambda *a: None)
    assert {k: v["sha256"] for k, v in m1["outputs"].items()} == {k: v["sha256"] for k, v in m2["outputs"].items()}
    with gzip.open(tmp_path / "a" / "train.jsonl.gz", "rt") as f:
        f.read()


def test_split_order_independent_of_file_order(translation_files):
    en_path, fr_path = translation_files
    en = read_descriptions([en_path], "en")
    fr = read_descriptions([fr_path], "fr")
    a, _ = build_splits(en, fr, 1, 1)
    b, _ = build_splits(dict(reversed(list(en.items()))), fr, 1, 1)
    assert a == b
