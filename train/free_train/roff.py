"""A man page's roff source as a list of segments, each in po4a's markup, for pairing pages.

Debian's French man pages (``manpages-fr``, ``manpages-fr-dev``) are made by po4a from the
English pages of the same release: every paragraph, heading and tag of the English page is one
gettext entry, and the French page is the English page with each entry replaced by its
translation (untranslated and fuzzy entries stay English). So the two pages split at the same
block macros give segments that correspond one to one, as po4a's entries did.

``segments(text)`` splits a page at block macros (``.SH``, ``.SS``, ``.PP``, ``.TP``, ``.IP``,
``.RS``, ``.nf`` ...), the way po4a's man module cuts entries. A segment's text uses po4a's
markup, which both sides can then share: font macros (``.B``, ``.BR``, ``.IR`` ...) and font
escapes (``\\fB..\\fP``) become ``B<..>`` / ``I<..>`` tags, ``<`` and ``>`` become ``E<lt>`` /
``E<gt>``; every other roff escape stays for the plain-text conversion (manpages.to_plain).
Verbatim blocks (``.nf``/``.fi``, ``.EX``/``.EE``, tables) are segments flagged ``verbatim``; a
request this reader does not understand marks its segment ``unknown`` rather than guessing, so
such a segment still holds its place in the alignment but gives no pair.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Requests that end the current segment and start a new one; the value says what their
# arguments are: "heading" (SH, SS: the arguments, or the next line, are a segment), "tag"
# (IP: the first argument is a segment), "next-tag" (TP, TQ: the next line is a segment),
# None (nothing).
BLOCK = {"SH": "heading", "SS": "heading", "IP": "tag", "TP": "next-tag", "TQ": "next-tag",
         "PP": None, "P": None, "LP": None, "HP": None, "RS": None, "RE": None, "br": None,
         "sp": None, "in": None, "ti": None, "ad": None, "na": None, "nh": None, "hy": None,
         "ne": None, "PD": None, "ta": None, "bp": None, "INDENT": None, "UNINDENT": None}
VERBATIM_OPEN = {"nf": "fi", "EX": "EE", "TS": "TE"}
SKIP = {"TH"}  # the title line: no prose
FONT_MACROS = {"B": "B", "I": "I", "SB": "B", "SM": "R", "R": "R"}
ALTERNATING = {"BR": "BR", "RB": "RB", "BI": "BI", "IB": "IB", "IR": "IR", "RI": "RI"}
# Font names of \f escapes -> po4a's tag letter (R: roman, no tag).
FONTS = {"B": "B", "I": "I", "R": "R", "1": "R", "2": "I", "3": "B", "BI": "B", "CW": "CW",
         "CR": "CW", "CB": "B", "CI": "I", "": "R"}

REQUEST_RE = re.compile(r"^[.'][ \t]*([^\s\\]+)[ \t]*(.*)$")
COMMENT_RE = re.compile(r'(?:^|(?<=[^\\]))\\["#].*$')
FONT_ESCAPE_RE = re.compile(r"\\f(?:\[([^\]]*)\]|\((..)|(.))")


@dataclass
class Segment:
    kind: str  # "text", "SH", "SS", "TP", "IP" (a tag), "verbatim"
    text: str = ""  # po4a markup, lines joined by "\n"
    unknown: str = ""  # the first request this reader could not convert ("" when none)

    @property
    def verbatim(self) -> bool:
        return self.kind == "verbatim"


def split_args(s: str) -> list[str]:
    """A macro's arguments: blank-separated, "double quoted" ones may hold blanks ("" is ")."""
    out, i, n = [], 0, len(s)
    while i < n:
        while i < n and s[i] in " \t":
            i += 1
        if i >= n:
            break
        if s[i] == '"':
            i += 1
            arg = []
            while i < n:
                if s[i] == '"':
                    if i + 1 < n and s[i + 1] == '"':
                        arg.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                arg.append(s[i])
                i += 1
            out.append("".join(arg))
        else:
            j = i
            while j < n and s[j] not in " \t":
                j += 1
            out.append(s[i:j])
            i = j
    return out


def escape_angles(s: str) -> str:
    """< and > as po4a's entities, in one pass (a second pass would rewrite E<lt>'s own >)."""
    return re.sub(r"[<>]", lambda m: "E<lt>" if m.group(0) == "<" else "E<gt>", s)


def tagged(font: str, s: str) -> str:
    """s in font (a tag letter of FONTS' values), as po4a writes it."""
    return s if font == "R" or not s else f"{font}<{s}>"


def inline(line: str) -> str:
    """A text line's font escapes as po4a tags; other escapes are left for to_plain."""
    out, font, prev, pos = [], "R", "R", 0
    line = escape_angles(line)
    for m in FONT_ESCAPE_RE.finditer(line):
        out.append(tagged(font, line[pos:m.start()]))
        name = next(g for g in m.groups() if g is not None)
        new = prev if name == "P" else FONTS.get(name)
        if new is None:
            new = "?"  # an unknown font: to_plain refuses "?<"
        prev, font, pos = font, new, m.end()
    out.append(tagged(font, line[pos:]))
    return "".join(out)


def font_macro(name: str, args: list[str]) -> str:
    """.B/.I/... (one font for all arguments, joined by blanks) or .BR/.IR/... (two fonts in
    turn, arguments joined without blanks) as po4a markup."""
    if name in FONT_MACROS:
        return tagged(FONT_MACROS[name], inline(" ".join(args)))
    fonts = ALTERNATING[name]
    return "".join(tagged(FONTS[fonts[i % 2]], inline(a)) for i, a in enumerate(args))


class _Reader:
    def __init__(self):
        self.out: list[Segment] = []
        self.cur: Segment | None = None
        self.pending: str | None = None  # "heading" or "tag": the next line is its own segment
        self.pending_kind = ""
        self.verbatim_end: str | None = None
        self.skip_to_dots = False

    def close(self):
        if self.cur is not None and (self.cur.text.strip() or self.cur.unknown):
            self.out.append(self.cur)
        self.cur = None

    def add(self, text: str, kind: str = "text"):
        if self.pending:
            self.close()
            self.out.append(Segment(self.pending_kind, text))
            self.pending = None
            return
        if self.cur is None:
            self.cur = Segment(kind)
        self.cur.text = f"{self.cur.text}\n{text}" if self.cur.text else text

    def mark_unknown(self, request: str):
        if self.cur is None:
            self.cur = Segment("text")
        self.cur.unknown = self.cur.unknown or request

    def request(self, name: str, rest: str):
        if name in ("de", "ig", "am"):
            self.skip_to_dots = True
            return
        if name in VERBATIM_OPEN:
            self.close()
            self.cur = Segment("verbatim")
            self.verbatim_end = VERBATIM_OPEN[name]
            return
        if name in SKIP:
            return
        if name in BLOCK:
            self.close()
            what = BLOCK[name]
            args = split_args(rest)
            if what == "heading":
                if args:
                    self.out.append(Segment(name, inline(" ".join(args))))
                else:
                    self.pending, self.pending_kind = "heading", name
            elif what == "tag":
                if args and args[0]:
                    self.out.append(Segment("IP", inline(args[0])))
            elif what == "next-tag":
                self.pending, self.pending_kind = "tag", "TP"
            return
        if name in FONT_MACROS or name in ALTERNATING:
            self.add(font_macro(name, split_args(rest)))
            return
        self.mark_unknown("." + name)

    def line(self, raw: str):
        if self.skip_to_dots:
            self.skip_to_dots = raw.strip() != ".."
            return
        line = COMMENT_RE.sub("", raw).rstrip()
        m = REQUEST_RE.match(line)
        if self.verbatim_end:
            if m and m.group(1) == self.verbatim_end:
                self.close()
                self.verbatim_end = None
            elif line.strip():
                self.cur.text = f"{self.cur.text}\n{line}" if self.cur.text else line
            return
        if m:
            self.request(m.group(1), m.group(2))
        elif line.strip() and line.strip() not in (".", "'"):
            self.add(inline(line))


def segments(text: str) -> list[Segment]:
    """The page's segments in order (see the module docstring)."""
    r = _Reader()
    for raw in text.split("\n"):
        r.line(raw)
    r.close()
    return r.out
