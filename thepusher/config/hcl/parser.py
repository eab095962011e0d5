"""Tokens into the tree of bodies, blocks, attributes and their values.

Written by hand so that every error says what was expected and what was found instead,
at that token's line and column: its reader is someone editing the file by hand.
Nesting is capped (MAX_DEPTH) rather than left to Python's recursion limit.
"""

from typing import Any, Dict, List, Optional

from thepusher.config.hcl.lexer import (EOF, HEREDOC, IDENT, NEWLINE, NUMBER, PUNCT, STRING, Lexer,
                                        Token, describe)
from thepusher.config.hcl.nodes import Attribute, Block, Body, HCLError

#: Deepest allowed nesting of blocks, lists and objects. Real configs use two or three
#: levels; the cap keeps hostile input from exhausting Python's recursion limit.
MAX_DEPTH = 64


class Parser:
    """Recursive descent over the token stream with one token of lookahead."""

    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        self._tokens = Lexer(text, filename).tokens()
        self.tok = next(self._tokens)
        self.depth = 0

    def advance(self) -> Token:
        tok = self.tok
        if tok.kind != EOF:
            self.tok = next(self._tokens)
        return tok

    def error(self, message: str, tok: Optional[Token] = None) -> HCLError:
        tok = tok or self.tok
        return HCLError(message, tok.line, tok.col, self.filename)

    def is_punct(self, char: str) -> bool:
        return self.tok.kind == PUNCT and self.tok.value == char

    def skip_newlines(self) -> None:
        while self.tok.kind == NEWLINE:
            self.advance()

    def enter(self, opener: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nesting deeper than {MAX_DEPTH} levels", opener)

    def body(self, opener: Optional[Token] = None) -> Body:
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
                raise self.error(f"expected an attribute name or a block type, found {describe(tok)}")
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
                raise self.error(f"expected '=' after key '{tok.value}', found {describe(self.tok)}")

    def end_of_item(self, what: str, opener: Optional[Token]) -> None:
        """An attribute or block ends at a newline, the end of the file or its block's '}'."""
        if self.tok.kind in (NEWLINE, EOF) or (opener is not None and self.is_punct("}")):
            return
        raise self.error(f"expected a newline after {what}, found {describe(self.tok)}")

    def block(self, type_tok: Token) -> Block:
        labels: List[str] = []
        while self.tok.kind in (STRING, IDENT):
            labels.append(self.advance().value)
        if not self.is_punct("{"):
            raise self.error(
                f"expected '{{' to open block '{type_tok.value}', found {describe(self.tok)}"
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
        raise self.error(f"expected a value {where}, found {describe(tok)}")

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
                    f"found {describe(self.tok)}"
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
                    f"found {describe(key_tok)}"
                )
            self.advance()
            if not (self.is_punct("=") or self.is_punct(":")):
                raise self.error(
                    f"expected '=' or ':' after key '{key_tok.value}', found {describe(self.tok)}"
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
                    f"found {describe(self.tok)}"
                )
        self.advance()
        self.depth -= 1
        return result
