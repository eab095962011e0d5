"""Text into tokens: strings with their escapes, heredocs, numbers, names, punctuation.

Newlines are tokens, since in HCL they end attributes; comments are not, except that a
block comment spanning lines separates like a newline. Each token keeps its source
text, so that a message can quote what it found (`describe`).
"""

import re
from typing import Any, Iterator, List, NamedTuple

from thepusher.config.hcl.nodes import HCLError

IDENT = "identifier"
STRING = "string"
HEREDOC = "heredoc"
NUMBER = "number"
PUNCT = "punctuation"
NEWLINE = "newline"
EOF = "end of file"

_PUNCTUATION = "{}[]=:,"
_IDENT_START = re.compile(r"[A-Za-z_]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_NUMBER_JUNK = re.compile(r"[A-Za-z0-9_.+-]*")  # what follows a malformed number, for the message
_PLAIN_STRING_RUN = re.compile(r'[^"\\\n]+')
_HEX = re.compile(r"[0-9A-Fa-f]+")
_HEREDOC_START = re.compile(r"<<(-?)([A-Za-z_][A-Za-z0-9_-]*)[ \t]*\n")
_BLANKS = " \t\r\f\v"
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_ESCAPE_HELP = 'supported: \\n \\t \\r \\" \\\\ \\uXXXX \\UXXXXXXXX'


class Token(NamedTuple):
    kind: str
    value: Any  # decoded value (str, int, float) or the punctuation character
    text: str  # source text, for error messages
    line: int
    col: int


def describe(tok: Token) -> str:
    """How a token reads in 'found ...': short, quoted, never a wall of text."""
    if tok.kind in (NEWLINE, EOF):
        return tok.kind
    text = tok.text if len(tok.text) <= 30 else tok.text[:27] + "..."
    if tok.kind in (PUNCT, IDENT):
        return f"'{text}'"
    return f"{tok.kind} {text}"


class Lexer:
    """Turns text into tokens lazily, so an error early in the file is reported first."""

    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.filename = filename
        self.pos = 0
        self.line = 1
        self.line_start = 0  # index of the first character of the current line

    def error(self, message: str, line: int, col: int) -> HCLError:
        return HCLError(message, line, col, self.filename)

    def _col(self, pos: int) -> int:
        return pos - self.line_start + 1

    def _newlines(self, start: int, end: int) -> None:
        """Account for the newlines in text[start:end] when moving past it."""
        count = self.text.count("\n", start, end)
        if count:
            self.line += count
            self.line_start = self.text.rindex("\n", start, end) + 1

    def tokens(self) -> Iterator[Token]:
        text, n = self.text, len(self.text)
        while True:
            while self.pos < n and text[self.pos] in _BLANKS:
                self.pos += 1
            if self.pos >= n:
                yield Token(EOF, None, "", self.line, self._col(self.pos))
                return
            start, line, col = self.pos, self.line, self._col(self.pos)
            c = text[start]
            if c == "\n":
                yield Token(NEWLINE, None, "\\n", line, col)
                self.pos += 1
                self.line += 1
                self.line_start = self.pos
            elif c == "#" or text.startswith("//", start):
                end = text.find("\n", start)
                self.pos = n if end < 0 else end  # the newline itself is still a token
            elif text.startswith("/*", start):
                end = text.find("*/", start + 2)
                if end < 0:
                    raise self.error("unterminated block comment: '/*' has no closing '*/'", line, col)
                self.pos = end + 2
                self._newlines(start, self.pos)
                if self.line != line:  # a comment spanning lines separates like a newline
                    yield Token(NEWLINE, None, "/*...*/", line, col)
            elif c in _PUNCTUATION:
                self.pos += 1
                yield Token(PUNCT, c, c, line, col)
            elif c == '"':
                yield self._string(line, col)
            elif text.startswith("<<", start):
                yield self._heredoc(line, col)
            elif c in "-0123456789" and _NUMBER.match(text, start):
                yield self._number(line, col)
            elif _IDENT_START.match(c):
                m = _IDENT.match(text, start)
                assert m is not None
                self.pos = m.end()
                yield Token(IDENT, m.group(), m.group(), line, col)
            elif c == "'":
                raise self.error('unexpected character "\'": strings use double quotes', line, col)
            else:
                raise self.error(f"unexpected character {c!r}", line, col)

    def _string(self, line: int, col: int) -> Token:
        text, start = self.text, self.pos
        pos = start + 1
        parts: List[str] = []
        while True:
            m = _PLAIN_STRING_RUN.match(text, pos)
            if m:
                parts.append(m.group())
                pos = m.end()
            if pos >= len(text) or text[pos] == "\n":
                raise self.error(
                    "unterminated string: missing closing '\"' before end of line", line, col
                )
            if text[pos] == '"':
                break
            # a backslash escape
            esc = text[pos + 1 : pos + 2]
            if esc in _ESCAPES:
                parts.append(_ESCAPES[esc])
                pos += 2
            elif esc in ("u", "U"):
                width = 4 if esc == "u" else 8
                digits = text[pos + 2 : pos + 2 + width]
                if len(digits) != width or not _HEX.fullmatch(digits):
                    raise self.error(
                        f"invalid escape: '\\{esc}' needs exactly {width} hex digits",
                        line,
                        self._col(pos),
                    )
                code = int(digits, 16)
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                    raise self.error(
                        f"invalid escape '\\{esc}{digits}': not a Unicode character",
                        line,
                        self._col(pos),
                    )
                parts.append(chr(code))
                pos += 2 + width
            elif esc in ("", "\n"):
                raise self.error("invalid escape: '\\' at the end of a line", line, self._col(pos))
            else:
                shown = esc if esc.isprintable() else repr(esc)
                raise self.error(
                    f"invalid escape '\\{shown}' in string; {_ESCAPE_HELP}", line, self._col(pos)
                )
        self.pos = pos + 1
        return Token(STRING, "".join(parts), text[start : self.pos], line, col)

    def _heredoc(self, line: int, col: int) -> Token:
        """`<<MARK` up to a line holding only MARK; every content line keeps its newline."""
        text, start = self.text, self.pos
        m = _HEREDOC_START.match(text, start)
        if not m:
            raise self.error(
                "expected a heredoc marker and a newline after '<<', e.g. '<<EOF'", line, col
            )
        indented, marker = m.group(1) == "-", m.group(2)
        lines: List[str] = []
        pos = m.end()
        while True:
            if pos >= len(text):
                raise self.error(
                    f"unterminated heredoc: no line '{marker}' closes '<<{m.group(1)}{marker}'",
                    line,
                    col,
                )
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            current = text[pos:end]
            if current.strip(_BLANKS) == marker:
                pos = end  # the newline after the marker ends the attribute
                break
            lines.append(current)
            pos = end + 1
        if indented:
            widths = [len(s) - len(s.lstrip(" \t")) for s in lines if s.strip(_BLANKS)]
            cut = min(widths) if widths else 0
            lines = [s[cut:] if s.strip(_BLANKS) else s.lstrip(" \t") for s in lines]
        self.pos = pos
        self._newlines(start, pos)
        value = "".join(s.rstrip("\r") + "\n" for s in lines)
        return Token(HEREDOC, value, "<<" + m.group(1) + marker, line, col)

    def _number(self, line: int, col: int) -> Token:
        text, start = self.text, self.pos
        m = _NUMBER.match(text, start)
        assert m is not None
        end = m.end()
        if end < len(text) and (text[end] == "." or _IDENT.match(text, end) or text[end].isdigit()):
            junk = _NUMBER_JUNK.match(text, start)
            shown = junk.group() if junk else m.group()
            raise self.error(f"invalid number '{shown}' (strings need double quotes)", line, col)
        literal = m.group()
        try:
            if m.group(1) or m.group(2):
                value: Any = float(literal)
                if value in (float("inf"), float("-inf")):
                    raise ValueError("out of range")
            else:
                value = int(literal)
        except ValueError:  # overflowing floats, or more digits than int() accepts
            raise self.error(f"number '{literal[:30]}' is out of range", line, col) from None
        self.pos = end
        return Token(NUMBER, value, literal, line, col)
