"""A small, bundled HCL parser: enough of the language for thepusher's config file.

thepusher must run on a bare Python standard library (TinyCore ships nothing else), and
the original tool's users already have configs written in HCL, so we parse it ourselves.
This module knows only syntax; what the blocks and keys *mean* lives in `config.py`.

Supported:
- comments: `# ...`, `// ...`, `/* ... */` (an unterminated block comment is an error);
- attributes `key = value`, ended by a newline (or by the `}` closing their block);
- blocks `type "label" other_label { body }` with zero or more string or bare labels;
- values: double-quoted strings with escapes `\\n \\t \\r \\" \\\\ \\uXXXX \\UXXXXXXXX`,
  heredocs `<<EOF` and `<<-EOF` (the `-` form strips the common indentation),
  integers, floats, negative numbers, `true`, `false`, `null`,
  lists `[a, b,]` and objects `{ key = value, "quoted key" : value }`.

Not supported (not needed by the config, so deliberately left out): template
interpolation (`${...}` is kept literally), expressions, function calls, variables.

Any malformed input raises `HCLError` carrying a 1-based line and column, and nothing
else: the parser is fed files people edit by hand, and a traceback is not an answer.
"""

import re
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, NamedTuple, Optional

__all__ = ["HCLError", "Attribute", "Block", "Body", "parse", "MAX_DEPTH"]

#: Deepest allowed nesting of blocks, lists and objects. Real configs use two or three
#: levels; the cap keeps hostile input from exhausting Python's recursion limit.
MAX_DEPTH = 64


class HCLError(Exception):
    """A syntax error, located so an editor can jump to it: `file:line:col: message`."""

    def __init__(self, message: str, line: int, col: int, filename: str = "<string>") -> None:
        super().__init__(f"{filename}:{line}:{col}: {message}")
        self.filename = filename
        self.line = line
        self.col = col
        self.message = message

    def __reduce__(self):  # keep the exception picklable despite the custom __init__
        return (type(self), (self.message, self.line, self.col, self.filename))


@dataclass
class Attribute:
    key: str
    value: Any
    line: int
    col: int


@dataclass
class Block:
    type: str
    labels: List[str]
    body: "Body"
    line: int
    col: int


@dataclass
class Body:
    attributes: List[Attribute]
    blocks: List[Block]


# ---------------------------------------------------------------------------- tokens

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


class _Token(NamedTuple):
    kind: str
    value: Any  # decoded value (str, int, float) or the punctuation character
    text: str  # source text, for error messages
    line: int
    col: int


def _describe(tok: _Token) -> str:
    """How a token reads in 'found ...': short, quoted, never a wall of text."""
    if tok.kind in (NEWLINE, EOF):
        return tok.kind
    text = tok.text if len(tok.text) <= 30 else tok.text[:27] + "..."
    if tok.kind in (PUNCT, IDENT):
        return f"'{text}'"
    return f"{tok.kind} {text}"


class _Lexer:
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

    def tokens(self) -> Iterator[_Token]:
        text, n = self.text, len(self.text)
        while True:
            while self.pos < n and text[self.pos] in _BLANKS:
                self.pos += 1
            if self.pos >= n:
                yield _Token(EOF, None, "", self.line, self._col(self.pos))
                return
            start, line, col = self.pos, self.line, self._col(self.pos)
            c = text[start]
            if c == "\n":
                yield _Token(NEWLINE, None, "\\n", line, col)
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
                    yield _Token(NEWLINE, None, "/*...*/", line, col)
            elif c in _PUNCTUATION:
                self.pos += 1
                yield _Token(PUNCT, c, c, line, col)
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
                yield _Token(IDENT, m.group(), m.group(), line, col)
            elif c == "'":
                raise self.error('unexpected character "\'": strings use double quotes', line, col)
            else:
                raise self.error(f"unexpected character {c!r}", line, col)

    def _string(self, line: int, col: int) -> _Token:
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
        return _Token(STRING, "".join(parts), text[start : self.pos], line, col)

    def _heredoc(self, line: int, col: int) -> _Token:
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
        return _Token(HEREDOC, value, "<<" + m.group(1) + marker, line, col)

    def _number(self, line: int, col: int) -> _Token:
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
        return _Token(NUMBER, value, literal, line, col)


# ---------------------------------------------------------------------------- parser


class _Parser:
    """Recursive descent over the token stream with one token of lookahead."""

    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        self._tokens = _Lexer(text, filename).tokens()
        self.tok = next(self._tokens)
        self.depth = 0

    def advance(self) -> _Token:
        tok = self.tok
        if tok.kind != EOF:
            self.tok = next(self._tokens)
        return tok

    def error(self, message: str, tok: Optional[_Token] = None) -> HCLError:
        tok = tok or self.tok
        return HCLError(message, tok.line, tok.col, self.filename)

    def is_punct(self, char: str) -> bool:
        return self.tok.kind == PUNCT and self.tok.value == char

    def skip_newlines(self) -> None:
        while self.tok.kind == NEWLINE:
            self.advance()

    def enter(self, opener: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nesting deeper than {MAX_DEPTH} levels", opener)

    def body(self, opener: Optional[_Token] = None) -> Body:
        """Attributes and blocks up to `}` (inside a block: `opener` is its '{') or end of file."""
        attributes: List[Attribute] = []
        blocks: List[Block] = []
        seen: Dict[str, Attribute] = {}
        while True:
            self.skip_newlines()
            tok = self.tok
            if tok.kind == EOF:
                if opener is not None:
                    raise self.error(
                        f"expected '}}' to close the block opened at line {opener.line}, "
                        "found end of file"
                    )
                return Body(attributes, blocks)
            if self.is_punct("}"):
                if opener is None:
                    raise self.error("unexpected '}': no block is open here")
                return Body(attributes, blocks)
            if tok.kind != IDENT:
                raise self.error(f"expected an attribute name or a block type, found {_describe(tok)}")
            self.advance()
            if self.is_punct("="):
                self.advance()
                value = self.value(f"after '{tok.value} ='")
                if tok.value in seen:
                    raise self.error(
                        f"duplicate attribute '{tok.value}' (first set at line {seen[tok.value].line})",
                        tok,
                    )
                seen[tok.value] = attr = Attribute(tok.value, value, tok.line, tok.col)
                attributes.append(attr)
                self.end_of_item(f"attribute '{tok.value}'", opener)
            elif self.tok.kind in (STRING, IDENT) or self.is_punct("{"):
                blocks.append(self.block(tok))
                self.end_of_item(f"block '{tok.value}'", opener)
            else:
                raise self.error(f"expected '=' after key '{tok.value}', found {_describe(self.tok)}")

    def end_of_item(self, what: str, opener: Optional[_Token]) -> None:
        """An attribute or block ends at a newline, the end of the file or its block's '}'."""
        if self.tok.kind in (NEWLINE, EOF) or (opener is not None and self.is_punct("}")):
            return
        raise self.error(f"expected a newline after {what}, found {_describe(self.tok)}")

    def block(self, type_tok: _Token) -> Block:
        labels: List[str] = []
        while self.tok.kind in (STRING, IDENT):
            labels.append(self.advance().value)
        if not self.is_punct("{"):
            raise self.error(
                f"expected '{{' to open block '{type_tok.value}', found {_describe(self.tok)}"
            )
        opener = self.advance()
        self.enter(opener)
        body = self.body(opener)
        self.advance()  # the closing '}', checked by body()
        self.depth -= 1
        return Block(type_tok.value, labels, body, type_tok.line, type_tok.col)

    def value(self, where: str) -> Any:
        tok = self.tok
        if tok.kind in (STRING, HEREDOC, NUMBER):
            self.advance()
            return tok.value
        if tok.kind == IDENT:
            literals = {"true": True, "false": False, "null": None}
            if tok.value in literals:
                self.advance()
                return literals[tok.value]
            raise self.error(
                f"expected a value {where}, found '{tok.value}' (strings need double quotes)"
            )
        if self.is_punct("["):
            return self.list()
        if self.is_punct("{"):
            return self.object()
        raise self.error(f"expected a value {where}, found {_describe(tok)}")

    def list(self) -> List[Any]:
        opener = self.advance()
        self.enter(opener)
        items: List[Any] = []
        while True:
            self.skip_newlines()
            if self.is_punct("]"):
                break
            items.append(self.value("in list"))
            self.skip_newlines()
            if self.is_punct(","):
                self.advance()
            elif not self.is_punct("]"):
                raise self.error(
                    f"expected ',' or ']' in the list opened at line {opener.line}, "
                    f"found {_describe(self.tok)}"
                )
        self.advance()
        self.depth -= 1
        return items

    def object(self) -> Dict[str, Any]:
        opener = self.advance()
        self.enter(opener)
        result: Dict[str, Any] = {}
        while True:
            self.skip_newlines()
            if self.is_punct("}"):
                break
            key_tok = self.tok
            if key_tok.kind not in (IDENT, STRING):
                raise self.error(
                    f"expected an object key or '}}' in the object opened at line {opener.line}, "
                    f"found {_describe(key_tok)}"
                )
            self.advance()
            if not (self.is_punct("=") or self.is_punct(":")):
                raise self.error(
                    f"expected '=' or ':' after key '{key_tok.value}', found {_describe(self.tok)}"
                )
            self.advance()
            value = self.value(f"for key '{key_tok.value}'")
            if key_tok.value in result:
                raise self.error(f"duplicate key '{key_tok.value}' in object", key_tok)
            result[key_tok.value] = value
            if self.is_punct(","):
                self.advance()
            elif not (self.tok.kind == NEWLINE or self.is_punct("}")):
                raise self.error(
                    f"expected ',', a newline or '}}' after the value of '{key_tok.value}', "
                    f"found {_describe(self.tok)}"
                )
        self.advance()
        self.depth -= 1
        return result


def parse(text: str, filename: str = "<string>") -> Body:
    """Parse HCL source into a `Body`; raise `HCLError` (and only that) if it is malformed."""
    if not isinstance(text, str):
        raise HCLError(f"expected text, got {type(text).__name__}", 1, 1, filename)
    # Windows line endings and a leading byte-order mark are common in hand-edited files.
    text = text.replace("\r\n", "\n")
    if text.startswith("\ufeff"):
        text = text[1:]
    parser = _Parser(text, filename)
    try:
        return parser.body()
    except RecursionError:  # unreachable with MAX_DEPTH in place; a last line of defence
        raise parser.error("input nests too deeply") from None
