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


# ------------------------------------------------------------ man pages ---

PO_FIXTURE = r'''# French translation of manpages
msgid ""
msgstr ""
"Project-Id-Version: manpages-l10n\n"
"Content-Type: text/plain; charset=UTF-8\n"

#. type: SH
#, no-wrap
msgid "DESCRIPTION"
msgstr "DESCRIPTION"

#. type: Plain text
msgid ""
"B<frob> reads each I<\\,FILE\\/> and prints it \\(em with a \"quote\", a "
"back\\\\slash and E<lt>tagsE<gt>."
msgstr ""
"B<frob> lit chaque I<\\,FICHIER\\/> et l'affiche \\(em avec une «\\ citation\\ », "
"une contre\\\\oblique et des E<lt>balisesE<gt>."

#. type: Plain text
#, fuzzy
msgid "Print the version number and exit."
msgstr "Afficher la version."

#. type: Plain text
msgid "Do not follow symbolic links at all."
msgstr ""

#. type: Plain text
msgid "Same text in both languages here."
msgstr "Same text in both languages here."

#. type: TP
#, no-wrap
msgid "B<-v>, I<file>"
msgstr "B<-v>, I<fichier>"

#. type: Plain text
msgid "E<lt>https://example.org/frobE<gt>"
msgstr "E<lt>https://example.org/frob/frE<gt>"

#. type: Plain text
#, no-wrap
msgid ""
"  frob -v file\n"
"  frob -q file\n"
msgstr ""
"  frob -v fichier\n"
"  frob -q fichier\n"

#. type: Plain text
msgid "Too short."
msgstr "Trop court."

#. type: Plain text
msgid "With B<-l>, list the frobs in a long format."
msgstr "Avec B<-L>, afficher les frobs en format long."

#. type: Plain text
msgid "Sizes are given in units of 1024 bytes."
msgstr "Les tailles sont données en unités de 2048 octets."

#. type: Plain text
msgid "This uses an unknown \\(zz glyph in its text."
msgstr "Ceci utilise un glyphe \\(zz inconnu dans son texte."

#. type: SS
#, no-wrap
msgid "Frobbing large files"
msgstr "Frobnication des grands fichiers"

#. type: Plain text
msgid "See B<frob.conf>(5)  for the settings\\ of\n the daemon."
msgstr "Consultez B<frob.conf>(5) pour les réglages du démon."

#~ msgid "An old paragraph that was removed."
#~ msgstr "Un ancien paragraphe qui a été supprimé."
'''


def test_parse_po_strings_escapes_and_flags():
    from free_train.manpages import parse_po
    entries = parse_po(PO_FIXTURE)
    assert entries[0].msgid == "" and entries[0].msgstr.startswith("Project-Id-Version: manpages-l10n\n")
    e = entries[2]
    # continuation lines joined; \" -> ", \\ -> \ (the roff escapes stay for to_plain)
    assert e.kind == "Plain text"
    assert e.msgid == ('B<frob> reads each I<\\,FILE\\/> and prints it \\(em with a "quote", a '
                       'back\\\\slash and E<lt>tagsE<gt>.')
    assert "fuzzy" in entries[3].flags and "no-wrap" in entries[1].flags
    assert entries[8].msgid == "  frob -v file\n  frob -q file\n"
    assert entries[-1].obsolete and entries[-1].msgstr == "Un ancien paragraphe qui a été supprimé."
    assert [x.index for x in entries] == list(range(len(entries)))


def test_po_pairs_drop_reasons():
    from free_train.manpages import DROP_REASONS, pairs_from_po
    dropped = dict.fromkeys(DROP_REASONS, 0)
    rows = pairs_from_po("frob.1", PO_FIXTURE, dropped)
    assert dropped == {"header": 1, "obsolete": 1, "fuzzy": 1, "plural": 0,
                       "untranslated": 3,  # empty, equal msgstr, and DESCRIPTION (equal)
                       "verbatim": 1, "unconvertible_markup": 1,
                       "markup_only": 2,  # B<-v>, I<file> and a bare URL
                       "too_short": 1, "markup_mismatch": 2}  # -l/-L and 1024/2048
    assert [r["id"] for r in rows] == ["man:frob.1:2", "man:frob.1:13", "man:frob.1:14"]
    assert all(r["task"] == "translate" and set(r) == {"id", "task", "source", "target"} for r in rows)
    by_id = {r["id"]: r for r in rows}
    # the markup becomes plain text the same way on both sides
    assert by_id["man:frob.1:2"]["source"] == \
        'frob reads each FILE and prints it \u2014 with a "quote", a back\\slash and <tags>.'
    assert by_id["man:frob.1:2"]["target"] == \
        "frob lit chaque FICHIER et l'affiche \u2014 avec une « citation », une contre\\oblique et des <balises>."
    assert by_id["man:frob.1:13"]["target"] == "Frobnication des grands fichiers"
    assert by_id["man:frob.1:14"]["source"] == "See frob.conf(5) for the settings of the daemon."


def test_to_plain_markup():
    from free_train.manpages import Unconvertible, is_markup_only, to_plain
    p = to_plain("B<--block-size>=I<\\,SIZE\\/> uses \\fBbold\\fR, \\-\\-x, \\(lqq\\(rq, caf\\('e and B<a I<b> c>")
    assert p.text == "--block-size=SIZE uses bold, --x, \u201cq\u201d, caf\u00e9 and a b c"
    assert p.bold == frozenset({"--block-size", "a b c"})
    for markup_only in ("B<-v>", "I<file>", "B<ls> [I<OPTION>]... [I<FILE>]...", "https://example.org/x",
                        "42", "\\fB\\-v\\fR"):
        assert is_markup_only(to_plain(markup_only)), markup_only
    assert not is_markup_only(to_plain("B<ls> lists files"))
    for bad in ("B<unclosed", "a \\n[reg] b", "E<eacute>"):
        try:
            to_plain(bad)
        except Unconvertible:
            continue
        raise AssertionError(bad)


def test_manpages_dedupe_against_held_out():
    from free_train.manpages import SELECT_DROP_REASONS, dedupe
    rows = [{"id": f"man:x.1:{i}", "task": "translate", "source": s, "target": t} for i, (s, t) in enumerate([
        ("Print a frob.", "Afficher un frob."),
        ("print  a FROB.", "Afficher un autre frob."),        # same source, normalised
        ("A held-out source.", "Peu importe."),
        ("Some other text.", "Une cible  de TEST."),          # target in test, normalised
        ("A description source.", "Une source de description."),
        ("Kept text.", "Texte gardé."),
    ])]
    dropped = dict.fromkeys(SELECT_DROP_REASONS, 0)
    out = dedupe(rows, {"a held-out source."}, {"une cible de test."}, {"a description source."}, dropped)
    assert [r["id"] for r in out] == ["man:x.1:0", "man:x.1:5"]
    assert dropped["duplicate_source"] == 1 and dropped["in_validation_or_test"] == 2
    assert dropped["duplicate_of_description_source"] == 1


def _orig_tarball(path, members):
    import io
    import tarfile
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members:
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"manpages-l10n-4.18.1/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_add_manpages_keeps_description_rows(translation_files, tmp_path):
    from free_train.data import add_manpages
    from free_train.tokenizer import train_tokenizer, training_texts
    from conftest import synthetic_rows
    en_path, fr_path = translation_files
    data = tmp_path / "data"
    build([en_path], [fr_path], str(data), test_n=1, val_n=0, log=lambda *a: None)
    before = {n: (data / n).read_bytes() for n in ("test.jsonl", "validation.jsonl")}
    desc_rows = read_jsonl(str(data / "train.jsonl.gz"))
    held_out = read_jsonl(str(data / "test.jsonl")) + read_jsonl(str(data / "validation.jsonl"))
    tok_path = tmp_path / "tokenizer.json"
    train_tokenizer(training_texts(synthetic_rows(200)), 300).save(str(tok_path))

    # held-out sources (case changed) and a held-out target must not come back as man-page pairs
    sources = [r["source"] for r in held_out if "\n" not in r["source"]]
    extra = "\n".join(f'msgid "{s.upper()}"\nmsgstr "une nouvelle cible ici"\n' for s in sources)
    extra += f'\nmsgid "Some fresh English words."\nmsgstr "{held_out[0]["target"].upper()}"\n'
    page = PO_FIXTURE + "\n" + extra
    orig = tmp_path / "orig.tar.gz"
    _orig_tarball(orig, [("po/fr/man1/frob.1.po", page), ("po/fr/common/min-002.po", page),
                         ("po/de/man1/frob.1.po", page)])
    m = add_manpages(str(orig), str(data), str(tok_path), expect_sha256=None, log=lambda *a: None)
    rows = read_jsonl(str(data / "train.jsonl.gz"))
    assert rows[:len(desc_rows)] == desc_rows
    man = rows[len(desc_rows):]
    assert man and all(r["id"].startswith("man:frob.1:") for r in man)
    assert {n: (data / n).read_bytes() for n in before} == before
    assert m["manpages"]["po_files"] == 1  # common/ and other languages are not read
    assert m["manpages"]["dropped"]["in_validation_or_test"] == len(sources) + 1
    assert not {r["source"].casefold() for r in man} & {r["source"].casefold() for r in held_out}
    origins = m["outputs"]["train"]["origins"]
    assert origins["manpages"]["translate"]["rows"] == len(man)
    assert origins["manpages"]["translate"]["target_tokens"] <= m["manpages"]["target_token_budget"] \
        == origins["descriptions"]["translate"]["target_tokens"]
    assert m["outputs"]["train"]["examples"]["translate"] == len(man) + sum(r["task"] == "translate" for r in desc_rows)

    # again, from the members in another order: the same file (old man rows replaced, not doubled)
    first = (data / "train.jsonl.gz").read_bytes()
    _orig_tarball(orig, [("po/fr/man1/frob.1.po", page)][::-1] + [("po/fr/man8/other.8.po", 'msgid ""\nmsgstr ""\n')])
    add_manpages(str(orig), str(data), str(tok_path), expect_sha256=None, log=lambda *a: None)
    assert (data / "train.jsonl.gz").read_bytes() == first


def test_add_manpages_refuses_changed_inputs(translation_files, tmp_path):
    import pytest
    from free_train.data import add_manpages, write_output
    en_path, fr_path = translation_files
    data = tmp_path / "data"
    build([en_path], [fr_path], str(data), test_n=1, val_n=1, log=lambda *a: None)
    orig = tmp_path / "orig.tar.gz"
    _orig_tarball(orig, [("po/fr/man1/frob.1.po", PO_FIXTURE)])
    with pytest.raises(SystemExit, match="sha256"):
        add_manpages(str(orig), str(data), "unused", log=lambda *a: None)
    rows = read_jsonl(str(data / "train.jsonl.gz"))
    write_output(str(data / "train.jsonl.gz"), rows + [{"id": "x", "task": "summarize", "source": "a", "target": "b"}])
    with pytest.raises(SystemExit, match="package-description rows"):
        add_manpages(str(orig), str(data), "unused", expect_sha256=None, log=lambda *a: None)
