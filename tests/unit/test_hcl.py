"""The bundled HCL parser: what it accepts, what it returns, and how it fails."""

import pickle
import textwrap

import pytest

from thepusher.config import hcl
from thepusher.config.hcl import HCLError, parse


def attrs(text: str) -> dict:
    """Top-level attributes of `text` as a plain dict."""
    return {a.key: a.value for a in parse(text).attributes}


def error_of(text: str, filename: str = "<string>") -> HCLError:
    with pytest.raises(HCLError) as info:
        parse(text, filename)
    return info.value


# ---------------------------------------------------------------- comments


def test_hash_and_double_slash_comments_are_ignored_to_end_of_line():
    assert attrs("# a comment\na = 1 # trailing\n// another\nb = 2 // trailing\n") == {"a": 1, "b": 2}


def test_block_comment_is_ignored_inside_a_line_and_across_lines():
    text = "/* header\n   spanning lines */\na = /* inline */ 1\nb = 2 /* x\n */ c = 3\n"
    assert attrs(text) == {"a": 1, "b": 2, "c": 3}


def test_block_comment_does_not_nest_so_a_star_slash_inside_ends_it():
    err = error_of("/* outer /* inner */ */\n")
    assert (err.line, err.col) == (1, 22)


def test_unterminated_block_comment_is_an_error_at_its_start():
    err = error_of("a = 1\n  /* never closed\nb = 2\n")
    assert (err.line, err.col) == (2, 3)
    assert "unterminated block comment" in err.message


def test_comment_markers_inside_strings_are_text():
    assert attrs('a = "x # y // z /* w */"\n') == {"a": "x # y // z /* w */"}


# ---------------------------------------------------------------- structure


def test_attributes_and_blocks_with_positions():
    body = parse('top = 1\nimage "u" {\n  filename = "f"\n}\n')
    assert body.attributes == [hcl.Attribute("top", 1, 1, 1)]
    [block] = body.blocks
    assert (block.type, block.labels, block.line, block.col) == ("image", ["u"], 2, 1)
    assert block.body.attributes == [hcl.Attribute("filename", "f", 3, 3)]
    assert block.body.blocks == []


def test_blocks_take_zero_or_more_string_or_bare_labels():
    body = parse('a {\n}\nb "x" {\n}\nc "x" "y" z {\n}\n')
    assert [(b.type, b.labels) for b in body.blocks] == [("a", []), ("b", ["x"]), ("c", ["x", "y", "z"])]


def test_nested_blocks_and_one_line_block():
    body = parse('outer "o" {\n  inner { k = 1 }\n  x = 2\n}\n')
    outer = body.blocks[0]
    assert [a.key for a in outer.body.attributes] == ["x"]
    assert outer.body.blocks[0].type == "inner"
    assert outer.body.blocks[0].body.attributes[0].value == 1


def test_empty_document_and_only_comments_give_an_empty_body():
    assert parse("") == hcl.Body([], [])
    assert parse("# nothing\n\n/* here */\n") == hcl.Body([], [])


def test_newline_terminates_an_attribute():
    err = error_of("a = 1 b = 2\n")
    assert (err.line, err.col) == (1, 7)
    assert err.message == "expected a newline after attribute 'a', found 'b'"


def test_duplicate_attribute_is_reported_at_the_second_one():
    err = error_of("x {\n  a = 1\n  b = 2\n  a = 3\n}\n")
    assert (err.line, err.col) == (4, 3)
    assert err.message == "duplicate attribute 'a' (first set at line 2)"


def test_same_key_in_different_bodies_is_not_a_duplicate():
    body = parse("a = 1\nx {\n  a = 2\n}\ny {\n  a = 3\n}\n")
    assert [b.body.attributes[0].value for b in body.blocks] == [2, 3]


def test_error_message_names_what_was_expected_and_what_was_found():
    text = "\n" * 11 + '        hosts ["10.0.0.1"]\n'
    err = error_of(text, "config.hcl")
    assert str(err) == "config.hcl:12:15: expected '=' after key 'hosts', found '['"
    assert (err.filename, err.line, err.col) == ("config.hcl", 12, 15)
    assert err.message == "expected '=' after key 'hosts', found '['"


@pytest.mark.parametrize(
    "text, line, col, fragment",
    [
        ("x {\n  a = 1\n", 3, 1, "expected '}' to close the block opened at line 1, found end of file"),
        ("}\n", 1, 1, "unexpected '}'"),
        ('"a" = 1\n', 1, 1, "expected an attribute name or a block type"),
        ("a =\n", 1, 4, "expected a value after 'a =', found newline"),
        ("a = b\n", 1, 5, "found 'b' (strings need double quotes)"),
        ('x "l" = 1\n', 1, 7, "expected '{' to open block 'x', found '='"),
        ("a = [1 2]\n", 1, 8, "expected ',' or ']' in the list opened at line 1, found number 2"),
        ("a = [1,\n", 2, 1, "found end of file"),
        ("a = {b = 1 c = 2}\n", 1, 12, "expected ',', a newline or '}' after the value of 'b'"),
        ("a = {b 1}\n", 1, 8, "expected '=' or ':' after key 'b', found number 1"),
        ("a = {[] = 1}\n", 1, 6, "expected an object key"),
        ("a = {b = 1, b = 2}\n", 1, 13, "duplicate key 'b' in object"),
        ("a = 'x'\n", 1, 5, "strings use double quotes"),
        ("a = 1\n\x00\n", 2, 1, "unexpected character '\\x00'"),
        ("a = @\n", 1, 5, "unexpected character '@'"),
        ("a = /x\n", 1, 5, "unexpected character '/'"),
    ],
)
def test_syntax_errors_are_located_and_explained(text, line, col, fragment):
    err = error_of(text)
    assert (err.line, err.col) == (line, col), err
    assert fragment in err.message


# ---------------------------------------------------------------- strings


@pytest.mark.parametrize(
    "source, value",
    [
        (r'"plain"', "plain"),
        (r'""', ""),
        (r'"a\nb"', "a\nb"),
        (r'"a\tb"', "a\tb"),
        (r'"a\rb"', "a\rb"),
        (r'"say \"hi\""', 'say "hi"'),
        (r'"back\\slash"', "back\\slash"),
        (r'"\u00e9t\u00E9"', "été"),
        (r'"\U0001F600"', "\U0001f600"),
        (r'"${not} %{interpolated}"', "${not} %{interpolated}"),
        ('"unicode ünïcödé ✓"', "unicode ünïcödé ✓"),
    ],
)
def test_string_escapes_are_decoded(source, value):
    assert attrs(f"a = {source}\n") == {"a": value}


@pytest.mark.parametrize(
    "source, col, fragment",
    [
        (r'"a\qb"', 7, "invalid escape '\\q'"),
        (r'"\u12"', 6, "needs exactly 4 hex digits"),
        (r'"\u12zz"', 6, "needs exactly 4 hex digits"),
        (r'"\U0011FFFF"', 6, "not a Unicode character"),
        (r'"\uD800"', 6, "not a Unicode character"),
        ('"a\\', 7, "'\\' at the end of a line"),
    ],
)
def test_bad_escapes_are_errors_at_the_backslash(source, col, fragment):
    err = error_of(f"a = {source}\n")
    assert (err.line, err.col) == (1, col)
    assert fragment in err.message


def test_string_may_not_span_lines():
    err = error_of('a = "one\ntwo"\n')
    assert (err.line, err.col) == (1, 5)
    assert "unterminated string" in err.message


def test_heredoc_keeps_lines_and_their_newlines_verbatim():
    text = 'a = <<EOF\n  line 1\n\tline "2" \\n\nEOF\nb = 2\n'
    assert attrs(text) == {"a": '  line 1\n\tline "2" \\n\n', "b": 2}


def test_indented_heredoc_strips_common_indentation_and_allows_indented_marker():
    text = "x {\n  a = <<-END\n      one\n        two\n\n      three\n    END\n}\n"
    body = parse(text)
    assert body.blocks[0].body.attributes[0].value == "one\n  two\n\nthree\n"


def test_empty_heredoc_is_an_empty_string():
    assert attrs("a = <<EOF\nEOF\n") == {"a": ""}


def test_heredoc_inside_a_list_and_line_numbers_after_it():
    body = parse("a = [<<EOF\nx\nEOF\n, 2]\nb = 3\n")
    assert body.attributes[0].value == ["x\n", 2]
    assert (body.attributes[1].line, body.attributes[1].col) == (5, 1)


def test_unterminated_heredoc_is_an_error_at_its_start():
    err = error_of("a = 1\nb = <<EOF\nnever\nclosed\n")
    assert (err.line, err.col) == (2, 5)
    assert "unterminated heredoc" in err.message and "EOF" in err.message


def test_heredoc_needs_a_marker_and_a_newline():
    assert "heredoc marker" in error_of("a = <<\nx\n\n").message
    assert "heredoc marker" in error_of("a = <<EOF x\nEOF\n").message


# ---------------------------------------------------------------- other values


def test_numbers_booleans_and_null():
    text = "i = 42\nn = -7\nf = 1.5\ng = -0.25\ne = 1e3\nE = 2.5E-2\nt = true\nfa = false\nnu = null\nz = 007\n"
    assert attrs(text) == {
        "i": 42,
        "n": -7,
        "f": 1.5,
        "g": -0.25,
        "e": 1000.0,
        "E": 0.025,
        "t": True,
        "fa": False,
        "nu": None,
        "z": 7,
    }
    assert type(attrs("i = 42\n")["i"]) is int
    assert type(attrs("f = 1.0\n")["f"]) is float


@pytest.mark.parametrize("literal", ["192.168.1.1", "1.", "1e", "12abc", "1.2.3", "1_000"])
def test_malformed_numbers_are_errors_that_hint_at_quotes(literal):
    err = error_of(f"a = {literal}\n")
    assert (err.line, err.col) == (1, 5)
    assert "invalid number" in err.message


def test_numbers_out_of_range_are_errors_not_crashes():
    assert "out of range" in error_of("a = 1e999\n").message
    assert "out of range" in error_of("a = " + "9" * 5000 + "\n").message


def test_lists_multiline_nested_with_trailing_comma():
    text = 'a = []\nb = [1, "two", true, null,]\nc = [\n  [1, 2],\n  [],\n\n  {k = "v"},\n]\n'
    assert attrs(text) == {"a": [], "b": [1, "two", True, None], "c": [[1, 2], [], {"k": "v"}]}


def test_objects_with_equals_or_colon_quoted_keys_commas_or_newlines():
    text = textwrap.dedent(
        """\
        m = {
          plain = 1
          "quoted key" : "v", other = [1, 2]
          nested = { deeper = { x = -1.5 }, "y": {} }
        }
        e = {}
        one_line = { a = 1, b = 2, }
        """
    )
    assert attrs(text) == {
        "m": {
            "plain": 1,
            "quoted key": "v",
            "other": [1, 2],
            "nested": {"deeper": {"x": -1.5}, "y": {}},
        },
        "e": {},
        "one_line": {"a": 1, "b": 2},
    }


# ---------------------------------------------------------------- robustness


def test_crlf_line_endings_and_byte_order_mark_are_accepted():
    body = parse('\ufeffa = "x"\r\nb = <<EOF\r\nline\r\nEOF\r\n')
    assert {a.key: a.value for a in body.attributes} == {"a": "x", "b": "line\n"}
    assert body.attributes[1].line == 2


def test_nesting_up_to_the_cap_is_fine_and_beyond_it_is_an_error():
    ok = "a = " + "[" * hcl.MAX_DEPTH + "]" * hcl.MAX_DEPTH + "\n"
    assert parse(ok).attributes[0].key == "a"
    err = error_of("a = " + "[" * (hcl.MAX_DEPTH + 1) + "]" * (hcl.MAX_DEPTH + 1) + "\n")
    assert "nesting deeper than" in err.message
    assert (err.line, err.col) == (1, 5 + hcl.MAX_DEPTH)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a = " + "[" * 100000, id="lists"),
        pytest.param("a = " + "{x = " * 100000, id="objects"),
        pytest.param("b {\n" * 100000, id="blocks"),
        pytest.param("b {\n" * 30 + "a = " + "[{x = " * 50000, id="mixed"),
    ],
)
def test_pathologically_deep_input_is_an_hcl_error_not_a_recursion_error(text):
    assert "nesting deeper than" in error_of(text).message


def test_binary_junk_is_an_hcl_error():
    junk = bytes(range(256)).decode("latin-1") * 4
    error_of(junk)
    error_of("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")


def test_non_text_input_is_an_hcl_error():
    with pytest.raises(HCLError):
        parse(b"a = 1")  # type: ignore[arg-type]


def test_hcl_error_survives_pickling():
    err = error_of("a = \n", "f.hcl")
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.line, copy.col, copy.filename, copy.message) == (
        str(err),
        err.line,
        err.col,
        err.filename,
        err.message,
    )


# ---------------------------------------------------------------- properties
# Hypothesis is a test requirement (tests/requirements.txt); without it only these skip.

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover

    def test_property_tests_need_hypothesis():
        pytest.importorskip("hypothesis")

else:
    HCL_ALPHABET = st.sampled_from(
        list('{}[]=:,"\\\n #/*<-EOFab_01.ue\t') + ["true", "null", "<<EOF\n", "\nEOF\n"]
    )

    @settings(max_examples=500, deadline=None)
    @given(st.text())
    def test_arbitrary_text_raises_only_hcl_error(text):
        try:
            parse(text)
        except HCLError:
            pass

    @settings(max_examples=1000, deadline=None)
    @given(st.lists(HCL_ALPHABET, max_size=60).map("".join))
    def test_arbitrary_hcl_like_text_raises_only_hcl_error(text):
        try:
            parse(text)
        except HCLError as e:
            assert e.line >= 1 and e.col >= 1

    # A small emitter for the round trip: the parser must read back what it is shown.

    IDENTS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}", fullmatch=True).filter(
        lambda s: s not in ("true", "false", "null")
    )
    SCALARS = (
        st.text(max_size=20)
        | st.integers(min_value=-(10**30), max_value=10**30)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.booleans()
        | st.none()
    )
    VALUES = st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )

    def quote(s: str) -> str:
        out = []
        for ch in s:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\r":
                out.append("\\r")
            elif ch == "\t":
                out.append("\\t")
            elif ord(ch) < 0x20 or ch == "\x7f":
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'

    def emit(value, indent=""):
        if isinstance(value, str):
            return quote(value)
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return repr(value)
        if isinstance(value, list):
            return (
                "[\n" + "".join(f"{indent}  {emit(v, indent + '  ')},\n" for v in value) + indent + "]"
            )
        items = "".join(f"{indent}  {quote(k)} : {emit(v, indent + '  ')}\n" for k, v in value.items())
        return "{\n" + items + indent + "}"

    BODIES = st.recursive(
        st.builds(
            lambda a: hcl.Body(a, []),
            st.dictionaries(IDENTS, VALUES, max_size=4).map(
                lambda d: [hcl.Attribute(k, v, 0, 0) for k, v in d.items()]
            ),
        ),
        lambda inner: st.builds(
            lambda a, b: hcl.Body(a.attributes, b),
            inner,
            st.lists(
                st.builds(
                    lambda t, ls, body: hcl.Block(t, ls, body, 0, 0),
                    IDENTS,
                    st.lists(st.text(max_size=6), max_size=2),
                    inner,
                ),
                max_size=3,
            ),
        ),
        max_leaves=6,
    )

    def emit_body(body, indent=""):
        out = []
        for a in body.attributes:
            out.append(f"{indent}{a.key} = {emit(a.value, indent)}\n")
        for b in body.blocks:
            labels = "".join(" " + quote(x) for x in b.labels)
            out.append(f"{indent}{b.type}{labels} {{\n{emit_body(b.body, indent + '  ')}{indent}}}\n")
        return "".join(out)

    def strip_positions(body):
        return (
            [(a.key, a.value) for a in body.attributes],
            [(b.type, b.labels, strip_positions(b.body)) for b in body.blocks],
        )

    @settings(max_examples=150, deadline=None)
    @given(BODIES)
    def test_generated_documents_round_trip(body):
        text = emit_body(body)
        assert strip_positions(parse(text)) == strip_positions(body), text
