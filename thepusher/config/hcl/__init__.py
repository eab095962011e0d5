"""A small, bundled HCL parser: enough of the language for thepusher's config file.

thepusher must run on a bare Python standard library (TinyCore ships nothing else), and
the original tool's users already have configs written in HCL, so we parse it ourselves.
This package knows only syntax; what the blocks and keys *mean* lives in `schema.py`
and `load.py`.

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

from thepusher.config.hcl.nodes import Attribute, Block, Body, HCLError
from thepusher.config.hcl.parser import MAX_DEPTH, Parser

__all__ = ["HCLError", "Attribute", "Block", "Body", "parse", "MAX_DEPTH"]


def parse(text: str, filename: str = "<string>") -> Body:
    """Parse HCL source into a `Body`; raise `HCLError` (and only that) if it is malformed."""
    if not isinstance(text, str):
        raise HCLError(f"expected text, got {type(text).__name__}", 1, 1, filename)
    # Windows line endings and a leading byte-order mark are common in hand-edited files.
    text = text.replace("\r\n", "\n")
    if text.startswith("\ufeff"):
        text = text[1:]
    parser = Parser(text, filename)
    try:
        return parser.body()
    except RecursionError:  # unreachable with MAX_DEPTH in place; a last line of defence
        raise parser.error("input nests too deeply") from None
