"""What a parse gives back: a tree of bodies, blocks and attributes, or an HCLError.

Every node keeps the line and column it starts at, and so does the error: the meaning
of a config is checked after parsing (config/load.py), and those messages, too, must
point at the place in the file that is wrong.
"""

from dataclasses import dataclass
from typing import Any, List


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
