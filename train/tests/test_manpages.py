"""The man-page translate pairs: roff segments, page pairing, markup, selection, add-manpages."""
import gzip
import io
import tarfile

import pytest

from free_train.data import build, read_jsonl

# An English page and the French page po4a would make of it: font macros become \f escapes,
# untranslated entries stay English, a credits section is appended.
EN_PAGE = r""".\" Copyright and licence comments are not text.
.TH FROB 1 2023-01-01 "frob 1.0"
.SH NAME
frob \- frobnicate files
.SH SYNOPSIS
.nf
.B frob
.RI [ options ] " file" ...
.fi
.SH DESCRIPTION
.B frob
reads each
.I FILE
and prints it \(em with a "quote", a
back\eslash and <tags>. \" a trailing comment
.PP
Do not follow symbolic links at all.
.TP
.BR \-v ", " \-\-verbose
Print every file name as it is frobbed by the program.
.TP
.B \-l
With
.BR \-l ,
list the frobs in a long format.
.TP
.BI \-o " file"
Write the frobs to the given output file instead.
.PP
Sizes are given in units of 1024 bytes.
.PP
This uses an unknown \(zz glyph in its text.
.PP
.UR https://example.org/frob
.UE
.SS Frobbing large files
See
.BR frob.conf (5)
for the settings\ of
the daemon.
.PP
Too short.
"""

FR_PAGE = r""".\" Copyright and licence comments are not text.
.\"*******************************************************************
.\" This file was generated with po4a. Translate the source file.
.\"*******************************************************************
.TH FROB 1 "1 janvier 2023" "frob 1.0"
.SH NOM
frob \- Frobniquer des fichiers
.SH SYNOPSIS
.nf
\fBfrob\fP [\fIoptions\fP] \fI fichier\fP ...
.fi
.SH DESCRIPTION
\fBfrob\fP lit chaque \fIFICHIER\fP et l'affiche \(em avec une «\ citation\ », une
contre\eoblique et des <balises>.
.PP
Do not follow symbolic links at all.
.TP 
\fB\-v\fP, \fB\-\-verbose\fP
Afficher le nom de chaque fichier à mesure que le programme le frobnique.
.TP 
\fB\-l\fP
Avec \fB\-L\fP, afficher les frobs en format long.
.TP 
\fB\-o\fP\fI fichier\fP
Écrire les frobs dans le fichier de sortie donné.
.PP
Les tailles sont données en unités de 2048 octets.
.PP
Ceci utilise un glyphe \(zz inconnu dans son texte.
.PP
.UR https://example.org/frob
.UE
.SS "Frobnication des grands fichiers"
Consultez \fBfrob.conf\fP(5) pour les réglages du démon.
.PP
Trop court.
.SH TRADUCTION
La traduction française de cette page de manuel a été créée par des traducteurs.
"""


def test_segments_split_at_block_macros_in_po4a_markup():
    from free_train.roff import segments
    en, fr = segments(EN_PAGE), segments(FR_PAGE)
    kinds = ["SH", "text", "SH", "verbatim", "SH", "text", "text", "TP", "text", "TP", "text", "TP", "text",
             "text", "text", "text", "SS", "text", "text"]
    assert [s.kind for s in en] == kinds
    assert [s.kind for s in fr] == kinds + ["SH", "text"]
    assert en[5].text == ('B<frob>\nreads each\nI<FILE>\nand prints it \\(em with a "quote", a\n'
                          'back\\eslash and E<lt>tagsE<gt>.')  # comments gone, < > as entities
    assert fr[5].text == ("B<frob> lit chaque I<FICHIER> et l'affiche \\(em avec une «\\ citation\\ », une\n"
                          "contre\\eoblique et des E<lt>balisesE<gt>.")
    assert en[7].text == fr[7].text == "B<\\-v>, B<\\-\\-verbose>"  # .BR alternates fonts, no blanks
    assert en[11].text == "B<\\-o>I< file>" and fr[11].text == "B<\\-o>I< fichier>"
    assert en[3].verbatim and en[3].text.startswith(".B frob\n")
    assert en[15].unknown == fr[15].unknown == ".UR"
    assert en[16].text == "Frobbing large files" and fr[16].text == "Frobnication des grands fichiers"


def test_split_args_and_inline_fonts():
    from free_train.roff import inline, split_args
    assert split_args(' a "b c"  "say ""hi""" d') == ["a", "b c", 'say "hi"', "d"]
    assert inline(r"\fBbold\fR, \f(CWcode\fP and \f[I]it\f[] x<y") == "B<bold>, CW<code> and I<it> xE<lt>y"
    assert inline(r"\f(ZZodd\fR") == "?<odd>"  # an unknown font: to_plain refuses it


def gz(text: str) -> bytes:
    return gzip.compress(text.encode("utf-8"))


def test_pairs_from_pages_drop_reasons():
    from free_train.manpages import DROP_REASONS, PAGE_DROP_REASONS, pairs_from_pages
    dropped = dict.fromkeys(PAGE_DROP_REASONS + DROP_REASONS, 0)
    merged = FR_PAGE.replace(".PP\nTrop court.", "Trop court.")  # a translator merged two entries
    rows = pairs_from_pages(
        {"man1/frob.1": gz(EN_PAGE), "man1/merged.1": gz(EN_PAGE), "man1/latin.1": gz(EN_PAGE)},
        {"man1/frob.1": gz(FR_PAGE), "man1/merged.1": gz(merged), "man8/frobd.8": gz(FR_PAGE),
         "man1/latin.1": gzip.compress(FR_PAGE.encode("latin-1"))},
        dropped)
    assert dropped == {"no_english_page": 1, "not_utf8": 1, "misaligned": 1,
                       "verbatim": 1, "unknown_request": 1,
                       "untranslated": 5,  # SYNOPSIS, DESCRIPTION, "Do not follow...", the -v and -l tags
                       "unconvertible_markup": 1,  # \(zz
                       "markup_only": 1,  # the -o file tag
                       "too_short": 2,  # NAME/NOM, "Too short."
                       "markup_mismatch": 2}  # -l/-L and 1024/2048
    assert [r["id"] for r in rows] == [f"man:man1/frob.1:{n}" for n in (1, 5, 8, 12, 16, 17)]
    assert all(r["task"] == "translate" and set(r) == {"id", "task", "source", "target"} for r in rows)
    by_n = {int(r["id"].rsplit(":", 1)[1]): r for r in rows}
    # the markup becomes plain text the same way on both sides
    assert by_n[5]["source"] == 'frob reads each FILE and prints it \u2014 with a "quote", a back\\slash and <tags>.'
    assert by_n[5]["target"] == \
        "frob lit chaque FICHIER et l'affiche \u2014 avec une « citation », une contre\\oblique et des <balises>."
    assert by_n[1]["source"] == "frob - frobnicate files"
    assert by_n[16]["target"] == "Frobnication des grands fichiers"
    assert by_n[17]["source"] == "See frob.conf(5) for the settings of the daemon."


def make_deb(files: dict, links: dict | None = None) -> bytes:
    """A Debian package (ar: debian-binary, control.tar.xz, data.tar.xz) holding files."""
    def tar_xz(entries: dict, links: dict) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:xz") as tar:
            for name, data in entries.items():
                info = tarfile.TarInfo("./" + name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            for name, target in links.items():
                info = tarfile.TarInfo("./" + name)
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
        return buf.getvalue()

    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", tar_xz({"control": b"Package: x\n"}, {})),
               ("data.tar.xz", tar_xz(files, links or {}))]
    out = b"!<arch>\n"
    for name, data in members:
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    return out


def test_read_pages_from_a_package():
    from free_train.manpages import read_pages
    deb = make_deb({"usr/share/man/man1/frob.1.gz": gz(EN_PAGE), "usr/share/man/fr/man8/frobd.8.gz": gz(FR_PAGE),
                    "usr/share/doc/frob/copyright": b"x"}, links={"usr/share/man/man1/frobber.1.gz": "frob.1.gz"})
    pages = read_pages(deb)
    assert {k: v[0] for k, v in pages.items()} == {"man1/frob.1": "en", "man8/frobd.8": "fr"}  # links skipped
    assert gzip.decompress(pages["man1/frob.1"][1]).decode() == EN_PAGE
    with pytest.raises(ValueError, match="ar header"):
        read_pages(b"not a package")


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


def write_debs(folder, en_pages: dict, fr_pages: dict):
    """The four pinned package names in folder, English pages in the first, French in the third."""
    from free_train.manpages import PACKAGES
    folder.mkdir(exist_ok=True)
    pages = {0: {f"usr/share/man/{p}.gz": gz(t) for p, t in en_pages.items()},
             2: {f"usr/share/man/fr/{p}.gz": gz(t) for p, t in fr_pages.items()}}
    for i, (name, _, _) in enumerate(PACKAGES):
        (folder / name).write_bytes(make_deb(pages.get(i, {})))


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
    leak_en = ".SH DESCRIPTION\n" + "".join(f".PP\n{s.upper()}\n" for s in sources) + ".PP\nSome fresh English words.\n"
    leak_fr = ".SH DESCRIPTION\n" + "".join(f".PP\nune nouvelle cible {chr(97 + i)}\n" for i in range(len(sources))) \
        + f".PP\n{held_out[0]['target'].upper()}\n"
    debs = tmp_path / "debs"
    write_debs(debs, {"man1/frob.1": EN_PAGE, "man7/leak.7": leak_en}, {"man1/frob.1": FR_PAGE, "man7/leak.7": leak_fr})
    m = add_manpages(str(debs), str(data), str(tok_path), check_sha256=False, log=lambda *a: None)
    rows = read_jsonl(str(data / "train.jsonl.gz"))
    assert rows[:len(desc_rows)] == desc_rows
    man = rows[len(desc_rows):]
    # frob.1's six pairs, in rank order while their targets fit the budget (the descriptions' own
    # translate targets, few with this tiny tokenizer), the rest counted
    assert {r["id"] for r in man} <= {f"man:man1/frob.1:{n}" for n in (1, 5, 8, 12, 16, 17)}
    assert len(man) >= 1 and len(man) + m["manpages"]["dropped"]["over_token_budget"] == 6
    assert {n: (data / n).read_bytes() for n in before} == before
    assert m["manpages"]["pages"] == {"english": 2, "french": 2, "paired": 2}
    assert m["manpages"]["dropped"]["in_validation_or_test"] == len(sources) + 1
    assert not {r["source"].casefold() for r in man} & {r["source"].casefold() for r in held_out}
    assert [p["file"] for p in m["manpages"]["source"]["packages"]] == [
        "manpages_6.03-2_all.deb", "manpages-dev_6.03-2_all.deb", "manpages-fr_4.18.1-1_all.deb",
        "manpages-fr-dev_4.18.1-1_all.deb"]
    origins = m["outputs"]["train"]["origins"]
    assert origins["manpages"]["translate"]["rows"] == len(man)
    assert origins["manpages"]["translate"]["target_tokens"] <= m["manpages"]["target_token_budget"] \
        == origins["descriptions"]["translate"]["target_tokens"]
    assert m["outputs"]["train"]["examples"]["translate"] == len(man) + sum(r["task"] == "translate" for r in desc_rows)

    # again: the same file (the old man rows replaced, not doubled)
    first = (data / "train.jsonl.gz").read_bytes()
    add_manpages(str(debs), str(data), str(tok_path), check_sha256=False, log=lambda *a: None)
    assert (data / "train.jsonl.gz").read_bytes() == first


def test_add_manpages_refuses_changed_inputs(translation_files, tmp_path):
    from free_train.data import add_manpages, write_output
    en_path, fr_path = translation_files
    data = tmp_path / "data"
    build([en_path], [fr_path], str(data), test_n=1, val_n=1, log=lambda *a: None)
    debs = tmp_path / "debs"
    with pytest.raises(SystemExit, match="is missing: fetch the packages with `apt-get download manpages=6.03-2"):
        add_manpages(str(debs), str(data), "unused", log=lambda *a: None)
    write_debs(debs, {"man1/frob.1": EN_PAGE}, {"man1/frob.1": FR_PAGE})
    with pytest.raises(SystemExit, match="sha256 is [0-9a-f]{64}, not efa1ba4c"):
        add_manpages(str(debs), str(data), "unused", log=lambda *a: None)
    rows = read_jsonl(str(data / "train.jsonl.gz"))
    write_output(str(data / "train.jsonl.gz"), rows + [{"id": "x", "task": "summarize", "source": "a", "target": "b"}])
    with pytest.raises(SystemExit, match="package-description rows"):
        add_manpages(str(debs), str(data), "unused", check_sha256=False, log=lambda *a: None)
