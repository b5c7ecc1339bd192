"""English -> French pairs from Debian's French man pages (manpages-l10n), for train only.

Debian's translators keep the French man pages in ``manpages-l10n``, made with po4a: every
paragraph, heading and tag of an English page is one gettext entry, and the French page is the
English page with each translated entry replaced. That is many more real, reviewed translations
of technical prose than the package descriptions hold, so ``python -m free_train.data
add-manpages`` adds a capped, hashed subset of them to the translate task of the train split
(see data.py's docstring for why it is a separate step).

Read from bookworm's binary packages, which the package registry serves (its source tarball,
which holds the po files, it does not): the English pages of ``manpages`` and ``manpages-dev``
(the Linux man-pages project, 6.03) and the French pages of ``manpages-fr`` and
``manpages-fr-dev`` (4.18.1, translated from those same pages). A page present in both is cut
into segments at its block macros on both sides (roff.py); the French page's added
"TRADUCTION" section is set aside, and a page whose two segment lists differ in kind or number
gives nothing (none did in 4.18.1). Segment n of the English page and segment n of the French
page are one po4a entry, English msgid and French msgstr. A row's id is ``man:<page>:<n>``.

Reading a pair: verbatim segments (code examples, tables, synopses) and segments holding a
request the roff reader does not convert are dropped, and so are untranslated ones (French
equal to English, as po4a leaves untranslated and fuzzy entries). The markup is turned into
plain text the same way on both sides: po4a's ``B<..>``, ``I<..>``, ``R<..>``, ``CW<..>``
keep their content, ``E<lt>``/``E<gt>`` become ``<``/``>``, roff escapes become the characters
they print (``\\-`` -> ``-``, ``\\(em`` -> an em dash, ``\\ `` -> a space). A pair is dropped
when either side holds markup this cannot convert, when the English side is markup only
(nothing but tags, options, URLs or numbers outside the tags), when it has fewer than MIN_WORDS
words, or when the sides' placeholders differ (the set of bold literals, which are commands,
options, constants and function names the translators copy, plus options, numbers and URLs in
the text): a translator's rewording there would teach the model to drop or invent code.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
import unicodedata
from dataclasses import dataclass

from . import roff

# The bookworm packages, pinned by hash so the subset can be rebuilt from the same bytes:
# (file, sha256, language of its pages).
PACKAGES = (
    ("manpages_6.03-2_all.deb", "efa1ba4cd19ad7baeae959c9209a7eb74be2ebb858bcabb412597bfc9f588c91", "en"),
    ("manpages-dev_6.03-2_all.deb", "96f55cb5e26231d5567c89b692bced63825a14a2d5bd18fdf16ea2ed44eb9838", "en"),
    ("manpages-fr_4.18.1-1_all.deb", "ec29759cc0e4a44dc7719c1e32869d0060667049e584f09556f0d982b969ea33", "fr"),
    ("manpages-fr-dev_4.18.1-1_all.deb", "25f5a53208d92f0a69a89e349edfb3068e6e6e4e0673fe712dd0d3b0c5b1512d", "fr"),
)
FETCH = "apt-get download manpages=6.03-2 manpages-dev=6.03-2 manpages-fr=4.18.1-1 manpages-fr-dev=4.18.1-1"
LICENCE = ("French translations (manpages-l10n): GPL-3+; English pages (Linux man-pages): each "
           "page's own licence, mostly Linux-man-pages-copyleft, GPL-2+ or BSD (debian/copyright "
           "of the manpages package)")
TRAILER = "TRADUCTION"  # the section po4a's French pages add at the end: the translators' credits

SELECT_SALT = "free-wasm-manpages-v1:"
MIN_WORDS = 3
MAX_TOKENS = 256
ID_PREFIX = "man:"

PAGE_RE = re.compile(r"^(?:\./)?usr/share/man/(?:(fr)/)?(man[^/]+/[^/]+)\.gz$")
WORD_RE = re.compile(r"[^\W\d_]{2,}")
OPTION_RE = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")
NUMBER_RE = re.compile(r"\d+")
URL_RE = re.compile(r"\b(?:https?|ftp)://[^\s<>()\"]+|\b[\w.+-]+@[\w-]+\.[\w.-]+")
# Innermost po4a font tag: its content holds no '<' or '>' except E<..> entities.
TAG_RE = re.compile(r"(B|I|R|CW)<((?:[^<>]|E<\w+>)*)>")
ENTITY_RE = re.compile(r"E<(\w+)>")
ENTITIES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"'}

# roff escapes as they appear in msgids (po4a keeps them): one alternation, longest forms first.
ESCAPE_RE = re.compile(r"\\(?:\((..)|\[([^\]]*)\]|\*\((..)|\*\[([^\]]*)\]|\*(.)"
                       r"|f\(..|f\[[^\]]*\]|f.|s[+-]?\d|s\(\d\d|s\[[^\]]*\]|(.))", re.S)
GLYPHS = {
    "em": "\u2014", "en": "\u2013", "hy": "-", "mi": "-", "pl": "+", "eq": "=", "aq": "'",
    "dq": '"', "lq": "\u201c", "rq": "\u201d", "oq": "\u2018", "cq": "\u2019", "ga": "`",
    "ti": "~", "ha": "^", "bu": "\u2022", "co": "\u00a9", "rg": "\u00ae", "tm": "\u2122",
    "de": "\u00b0", "mu": "\u00d7", "di": "\u00f7", "+-": "\u00b1", "<=": "\u2264",
    ">=": "\u2265", "!=": "\u2260", "==": "\u2261", "->": "\u2192", "<-": "\u2190",
    "rs": "\\", "sl": "/", "ba": "|", "bv": "|", "Fo": "\u00ab", "Fc": "\u00bb",
    "fo": "\u2039", "fc": "\u203a", "sc": "\u00a7", "ps": "\u00b6", "Eu": "\u20ac",
    "eu": "\u20ac", "Po": "\u00a3", "ss": "\u00df", "ae": "\u00e6", "oe": "\u0153",
    "AE": "\u00c6", "OE": "\u0152",
}
ACCENTS = {"'": "\u0301", "`": "\u0300", "^": "\u0302", ":": "\u0308", ",": "\u0327", "~": "\u0303"}
STRINGS = {"lq": "\u201c", "rq": "\u201d", "R": "\u00ae", "Tm": "\u2122", "aq": "'"}
SIMPLE = {"-": "-", " ": " ", "~": " ", "0": " ", "e": "\\", "\\": "\\", ".": ".", "'": "'",
          "`": "`", "&": "", "%": "", ":": "", "|": "", "^": "", ",": "", "/": "", ")": "",
          "c": ""}
DROP_REASONS = ("verbatim", "unknown_request", "untranslated", "unconvertible_markup",
                "markup_only", "too_short", "markup_mismatch")
PAGE_DROP_REASONS = ("no_english_page", "not_utf8", "misaligned")
SELECT_DROP_REASONS = ("duplicate_source", "in_validation_or_test", "duplicate_of_description_source",
                       "too_long", "over_token_budget")


class Unconvertible(ValueError):
    """Markup the plain-text conversion does not know; the pair is dropped, not guessed."""


# ------------------------------------------------------------------ pages ---

def deb_members(data: bytes):
    """(name, bytes) of the members of a Debian package (an ar archive)."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not a Debian package (no ar header)")
    pos = 8
    while pos + 60 <= len(data):
        name, size = data[pos:pos + 16].decode().strip().rstrip("/"), int(data[pos + 48:pos + 58])
        yield name, data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)  # members are 2-byte aligned


def read_pages(deb: bytes) -> dict[str, tuple[str, bytes]]:
    """{page ("man2/close.2"): (language "en"/"fr", gzipped roff)} of a package's man pages;
    links (one page under several names) are skipped."""
    for name, body in deb_members(deb):
        if name.startswith("data.tar"):
            pages = {}
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                for member in tar:
                    m = PAGE_RE.match(member.name)
                    if m and member.isfile():
                        pages[m.group(2)] = (m.group(1) or "en", tar.extractfile(member).read())
            return pages
    raise ValueError("no data.tar member")


def page_segments(gz: bytes) -> list[roff.Segment] | None:
    """A page's segments, or None when it is not UTF-8."""
    try:
        return roff.segments(gzip.decompress(gz).decode("utf-8"))
    except UnicodeDecodeError:
        return None


def without_trailer(fr: list[roff.Segment]) -> list[roff.Segment]:
    """The French page without the credits section po4a appends."""
    for i in range(len(fr) - 1, -1, -1):
        if fr[i].kind == "SH" and fr[i].text.strip() == TRAILER:
            return fr[:i]
    return fr


def aligned(en: list[roff.Segment], fr: list[roff.Segment]) -> bool:
    return [s.kind for s in en] == [s.kind for s in fr]


# ---------------------------------------------------------------- markup ---

def _escape(m: re.Match) -> str:
    glyph, long_name, string2, string_long, string1, simple = m.groups()
    name = glyph or long_name
    if name is not None:
        if name in GLYPHS:
            return GLYPHS[name]
        if len(name) == 2 and name[0] in ACCENTS and name[1].isalpha():
            return unicodedata.normalize("NFC", name[1] + ACCENTS[name[0]])
        if re.fullmatch(r"u[0-9A-F]{4,5}", name):
            return chr(int(name[1:], 16))
        raise Unconvertible(m.group(0))
    string = string2 or string_long or string1
    if string is not None:
        if string in STRINGS:
            return STRINGS[string]
        raise Unconvertible(m.group(0))
    if simple is None:  # a font or size change: no text
        return ""
    if simple in SIMPLE:
        return SIMPLE[simple]
    raise Unconvertible(m.group(0))


@dataclass
class Plain:
    text: str  # what a reader of the page sees, whitespace collapsed
    bold: frozenset  # contents of B<..> tags (commands, options, constants, functions)
    bare: str  # the text outside any tag: what tells prose from markup


def to_plain(s: str) -> Plain:
    """po4a man markup -> plain text; raises Unconvertible for markup it does not know."""
    s = ESCAPE_RE.sub(_escape, s)
    bold: set[str] = set()

    def keep(m: re.Match) -> str:
        if m.group(1) == "B":
            bold.add(_collapse(ENTITY_RE.sub(_entity, m.group(2))))
        return m.group(2)

    text, bare = s, s
    while TAG_RE.search(text):  # innermost tags first, so nested tags come out whole
        text = TAG_RE.sub(keep, text)
        bare = TAG_RE.sub(" ", bare)
    if re.search(r"(?:\b[BIR]|CW)<", text):
        raise Unconvertible("unbalanced tag")
    return Plain(_collapse(ENTITY_RE.sub(_entity, text)), frozenset(bold),
                 _collapse(ENTITY_RE.sub(_entity, bare)))


def _entity(m: re.Match) -> str:
    if m.group(1) not in ENTITIES:
        raise Unconvertible(m.group(0))
    return ENTITIES[m.group(1)]


def _collapse(s: str) -> str:
    return " ".join(s.split())


def placeholders(p: Plain) -> frozenset:
    """What a faithful translation carries over unchanged."""
    text = p.text
    return p.bold | {("url", u) for u in URL_RE.findall(text)} \
        | {("opt", o) for o in OPTION_RE.findall(text)} | {("num", n) for n in NUMBER_RE.findall(text)}


def is_markup_only(p: Plain) -> bool:
    """No word outside the tags once URLs, options and numbers are set aside."""
    rest = OPTION_RE.sub(" ", URL_RE.sub(" ", p.bare))
    return not WORD_RE.search(rest)


def word_count(text: str) -> int:
    return len(WORD_RE.findall(text))


# ----------------------------------------------------------------- pairs ---

def pair_from_segments(en: roff.Segment, fr: roff.Segment) -> tuple[str | None, tuple[str, str] | None]:
    """(drop reason, None) or (None, (English, French)) in plain text."""
    if en.verbatim:
        return "verbatim", None
    if en.unknown or fr.unknown:
        return "unknown_request", None
    if en.text == fr.text:
        return "untranslated", None
    try:
        e, f = to_plain(en.text), to_plain(fr.text)
    except Unconvertible:
        return "unconvertible_markup", None
    if is_markup_only(e):
        return "markup_only", None
    if word_count(e.text) < MIN_WORDS:
        return "too_short", None
    if e.text == f.text:
        return "untranslated", None
    if placeholders(e) != placeholders(f):
        return "markup_mismatch", None
    return None, (e.text, f.text)


def pairs_from_pages(en_pages: dict[str, bytes], fr_pages: dict[str, bytes], dropped: dict) -> list[dict]:
    """Translate rows of every French page with an English original, by page name; counts
    each dropped page and segment under its reason."""
    rows = []
    for page in sorted(fr_pages):
        if page not in en_pages:
            dropped["no_english_page"] += 1
            continue
        en, fr = page_segments(en_pages[page]), page_segments(fr_pages[page])
        if en is None or fr is None:
            dropped["not_utf8"] += 1
            continue
        fr = without_trailer(fr)
        if not aligned(en, fr):
            dropped["misaligned"] += 1
            continue
        for n, (e, f) in enumerate(zip(en, fr)):
            reason, pair = pair_from_segments(e, f)
            if reason:
                dropped[reason] += 1
                continue
            rows.append({"id": f"{ID_PREFIX}{page}:{n}", "task": "translate", "source": pair[0], "target": pair[1]})
    return rows


# ------------------------------------------------------------- selection ---

def norm(s: str) -> str:
    """The key for duplicates: whitespace collapsed, case folded."""
    return " ".join(s.split()).casefold()


def rank_key(source: str) -> str:
    return hashlib.sha256((SELECT_SALT + source).encode()).hexdigest()


def dedupe(rows: list[dict], blocked_sources: set[str], blocked_targets: set[str],
           taken_sources: set[str], dropped: dict) -> list[dict]:
    """One pair per English source (the first by page name and position), none that is in
    validation or test (either task; source or target), none whose source already is a
    package-description translate source."""
    out, seen = [], set()
    for r in rows:
        key = norm(r["source"])
        if key in seen:
            dropped["duplicate_source"] += 1
        elif key in blocked_sources or norm(r["target"]) in blocked_targets:
            dropped["in_validation_or_test"] += 1
        elif key in taken_sources:
            dropped["duplicate_of_description_source"] += 1
        else:
            out.append(r)
        seen.add(key)
    return out


def select(rows: list[dict], tok, prefix: str, budget: int, dropped: dict) -> tuple[list[dict], dict]:
    """Pairs in rank order (sha256 of salt + source), each side at most MAX_TOKENS tokens
    (prefix and </s> counted, as the trainer does), while the targets' tokens fit `budget`.
    Returns the rows and their token counts."""
    rows = sorted(rows, key=lambda r: rank_key(r["source"]))  # sources are unique by now
    src = tok.encode_batch([prefix + r["source"] for r in rows])
    tgt = tok.encode_batch([r["target"] for r in rows])
    kept, tokens = [], {"source": 0, "target": 0}
    for i, (r, s, t) in enumerate(zip(rows, src, tgt)):
        if len(s.ids) > MAX_TOKENS or len(t.ids) > MAX_TOKENS:
            dropped["too_long"] += 1
            continue
        if tokens["target"] + len(t.ids) > budget:
            # A prefix of the rank order: what is left is counted, not looked at.
            dropped["over_token_budget"] = len(rows) - i
            break
        kept.append(r)
        tokens["source"] += len(s.ids)
        tokens["target"] += len(t.ids)
    return kept, tokens


def manifest_entry(sources: list[dict], tokenizer: dict, pages: dict, n_segments: int, kept: int,
                   dropped: dict, budget: int) -> dict:
    """The manifest's record of the man-page pairs: where from, under which rule, what went."""
    return {
        "builder": "python -m free_train.data add-manpages --debs DIR",
        "source": {"packages": sources, "fetch": FETCH, "read": "usr/share/man/{,fr/}man*/*.gz",
                   "licence": LICENCE},
        "rule": "pages present in English and French, cut into segments at their block macros; the French "
                f"'{TRAILER}' section set aside; pages whose segment kinds differ give nothing; segment n "
                "English -> segment n French, markup made plain text the same way on both sides; drop "
                "verbatim segments, unknown requests, untranslated segments, unconvertible markup, "
                f"markup-only ones, fewer than {MIN_WORDS} English words, sides whose bold literals, "
                "options, numbers or URLs differ; one pair per English source (whitespace- and "
                "case-normalised; the first by page name and position), none whose source or target is "
                "in validation or test, none whose source is a package-description translate source; "
                f"rank by sha256('{SELECT_SALT}' + source), skip pairs over {MAX_TOKENS} tokens a side, "
                "keep ranks while the targets fit the budget",
        "tokenizer": tokenizer,
        "target_token_budget": budget,
        "pages": pages,
        "segments": n_segments,
        "dropped": dropped,
        "kept": kept,
    }
