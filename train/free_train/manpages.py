"""English -> French pairs from Debian's man-page translations (manpages-l10n), for train only.

Debian's ``manpages-l10n`` source package keeps one gettext catalogue per man page and
language (``po/fr/man1/ls.1.po``), made with po4a: every entry's msgid is one paragraph (or
heading, or tag) of the English page and its msgstr the French translation. That is many more
real, reviewed translations of technical prose than the package descriptions hold, so
``python -m free_train.data add-manpages`` adds a capped, hashed subset of them to the
translate task of the train split (see data.py's docstring for why it is a separate step).

Only the pages' catalogues are read (``po/fr/man*/*.po``; not ``po/fr/common/``, compendia of
messages shared by many pages, nor retired pages elsewhere), sorted by path. A row's id is
``man:<page>:<n>``, n the entry's position in its catalogue.

Reading: entries are parsed with their multi-line strings and C escapes; obsolete (``#~``),
fuzzy, header, plural and untranslated entries are dropped, and so are verbatim blocks
(``no-wrap`` text: code examples and tables, not prose). The markup is turned into plain text
the same way on both sides: po4a's ``B<..>``, ``I<..>``, ``R<..>``, ``CW<..>`` keep their
content, ``E<lt>``/``E<gt>`` become ``<``/``>``, roff escapes become the characters they print
(``\\-`` -> ``-``, ``\\(em`` -> an em dash, ``\\fB`` -> nothing, ``\\ `` -> a space). A pair
is dropped when either side holds markup this cannot convert, when the English side is markup
only (nothing but tags, options, URLs or numbers outside the tags), when it has fewer than
MIN_WORDS words, or when the sides' placeholders differ (the set of bold literals, which are
commands, options, constants and function names the translators copy, plus options, numbers
and URLs in the text): a translator's rewording there would teach the model to drop or invent
code.
"""
from __future__ import annotations

import hashlib
import re
import tarfile
import unicodedata
from dataclasses import dataclass, field

# The bookworm version; the pin is checked so the subset can be rebuilt from the same bytes.
PACKAGE = "manpages-l10n"
VERSION = "4.18.1-1"
ORIG_FILE = "manpages-l10n_4.18.1.orig.tar.gz"
ORIG_SHA256 = "af76935e3357af5d44dbdfbf0ddb0a668ab851873bd2b4a0231af0d83846ae3a"
ORIG_URL = "https://deb.debian.org/debian/pool/main/m/manpages-l10n/" + ORIG_FILE
LICENCE = "GPL-3+"

SELECT_SALT = "free-wasm-manpages-v1:"
MIN_WORDS = 3
MAX_TOKENS = 256
ID_PREFIX = "man:"

PO_MEMBER_RE = re.compile(r"(?:^|/)po/fr/man[^/]*/([^/]+)\.po$")
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
DROP_REASONS = ("header", "obsolete", "fuzzy", "plural", "untranslated", "verbatim",
                "unconvertible_markup", "markup_only", "too_short", "markup_mismatch")
SELECT_DROP_REASONS = ("duplicate_source", "in_validation_or_test", "duplicate_of_description_source",
                       "too_long", "over_token_budget")


class Unconvertible(ValueError):
    """Markup the plain-text conversion does not know; the pair is dropped, not guessed."""


# --------------------------------------------------------------- po files ---

@dataclass
class PoEntry:
    msgid: str = ""
    msgstr: str = ""
    flags: set[str] = field(default_factory=set)
    kind: str = ""  # po4a's "#. type:" comment: "Plain text", "SH", "TP", ...
    obsolete: bool = False
    plural: bool = False
    index: int = 0  # position in the file, for the row id


PO_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def unescape_po(s: str) -> str:
    """The value of a po string literal's body (C escapes; one pass, so \\\\n stays \\ + n)."""
    return re.sub(r"\\(.)", lambda m: PO_ESCAPES.get(m.group(1), "\\" + m.group(1)), s)


def parse_po(text: str) -> list[PoEntry]:
    """Entries of a po file, obsolete ones included (flagged), in file order."""
    entries: list[PoEntry] = []
    cur, part = PoEntry(), None  # part: the string that continuation lines extend

    def finish():
        nonlocal cur, part
        if part is not None:
            cur.index = len(entries)
            entries.append(cur)
        cur, part = PoEntry(), None

    for raw in text.split("\n"):
        line = raw.strip()
        obsolete = line.startswith("#~")
        if obsolete:
            line = line[2:].strip()
        if not line:
            finish()
            continue
        if line.startswith("#"):
            if part in ("msgstr", "plural"):  # a comment after a msgstr opens the next entry
                finish()
            if line.startswith("#,"):
                cur.flags |= {f.strip() for f in line[2:].split(",")}
            elif line.startswith("#. type:"):
                cur.kind = line[len("#. type:"):].strip()
            continue
        m = re.match(r'(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+"(.*)"$', line)
        if m:
            key, n, body = m.groups()
            if key in ("msgid", "msgctxt") and part in ("msgstr", "plural"):
                finish()
            cur.obsolete |= obsolete
            if key == "msgid_plural" or n not in (None, "0"):
                cur.plural, part = True, "plural"
            elif key == "msgctxt":
                part = "msgctxt"
            else:
                part = "msgid" if key == "msgid" else "msgstr"
                setattr(cur, part, unescape_po(body))
        elif line.startswith('"') and line.endswith('"') and part in ("msgid", "msgstr"):
            setattr(cur, part, getattr(cur, part) + unescape_po(line[1:-1]))
    finish()
    return entries


def read_po_files(orig_path: str):
    """Yield (page, po text) for the French man-page catalogues in the orig tarball, by name."""
    # One forward pass (seeking back in a gzip stream decompresses it again from the start);
    # the French catalogues are a small part of it and are sorted by name in memory, so the
    # rows do not depend on the tarball's member order.
    found = []
    with tarfile.open(orig_path, "r|gz") as tar:
        for member in tar:
            m = PO_MEMBER_RE.search(member.name)
            if m and member.isfile():
                found.append((member.name, m.group(1), tar.extractfile(member).read()))
    for _, page, data in sorted(found):
        yield page, data.decode("utf-8")


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

def drop_reason(e: PoEntry) -> str | None:
    """Why a po entry gives no pair before its markup is looked at (None: it may give one)."""
    if e.obsolete:
        return "obsolete"
    if not e.msgid:
        return "header"
    if "fuzzy" in e.flags:
        return "fuzzy"
    if e.plural:
        return "plural"
    if not e.msgstr.strip() or e.msgstr == e.msgid:
        return "untranslated"
    if "no-wrap" in e.flags and (e.kind == "Plain text" or "\n" in e.msgid):
        return "verbatim"
    return None


def pair_from_entry(e: PoEntry) -> tuple[str | None, tuple[str, str] | None]:
    """(drop reason, None) or (None, (English, French)) in plain text."""
    reason = drop_reason(e)
    if reason:
        return reason, None
    try:
        en, fr = to_plain(e.msgid), to_plain(e.msgstr)
    except Unconvertible:
        return "unconvertible_markup", None
    if is_markup_only(en):
        return "markup_only", None
    if word_count(en.text) < MIN_WORDS:
        return "too_short", None
    if en.text == fr.text:
        return "untranslated", None
    if placeholders(en) != placeholders(fr):
        return "markup_mismatch", None
    return None, (en.text, fr.text)


def pairs_from_po(page: str, text: str, dropped: dict) -> list[dict]:
    """Translate rows of one page's catalogue; counts each dropped entry under its reason."""
    rows = []
    for e in parse_po(text):
        reason, pair = pair_from_entry(e)
        if reason:
            dropped[reason] += 1
            continue
        rows.append({"id": f"{ID_PREFIX}{page}:{e.index}", "task": "translate",
                     "source": pair[0], "target": pair[1]})
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


def manifest_entry(source: dict, tokenizer: dict, n_files: int, n_entries: int, kept: int,
                   dropped: dict, budget: int) -> dict:
    """The manifest's record of the man-page pairs: where from, under which rule, what went."""
    return {
        "builder": f"python -m free_train.data add-manpages --orig {ORIG_FILE}",
        "source": {"package": PACKAGE, "version": VERSION, **source, "url": ORIG_URL,
                   "read": "po/fr/man*/*.po", "licence": LICENCE,
                   "licence_note": "debian/copyright: 'Files: *' (the translations) GPL-3+; the English "
                                   "msgids quote the original man pages, which carry their own licences"},
        "rule": "one pair per po entry (English msgid -> French msgstr, markup made plain text the same "
                "way on both sides); drop obsolete, header, fuzzy, plural, untranslated and verbatim "
                f"entries, unconvertible markup, markup-only ones, fewer than {MIN_WORDS} English words, "
                "sides whose bold literals, options, numbers or URLs differ; one pair per English source "
                "(whitespace- and case-normalised; the first by page name and position), none whose "
                "source or target is in validation or test, none whose source is a package-description "
                f"translate source; rank by sha256('{SELECT_SALT}' + source), skip pairs over "
                f"{MAX_TOKENS} tokens a side, keep ranks while the targets fit the budget",
        "tokenizer": tokenizer,
        "target_token_budget": budget,
        "po_files": n_files,
        "entries": n_entries,
        "dropped": dropped,
        "kept": kept,
    }
