"""A config block as load.py read it: kept even when it has errors, so that the checks
across blocks (combinations.py, identity.py) still see it."""

from dataclasses import dataclass
from typing import Any, Dict, Optional

from thepusher.config import hcl


@dataclass
class Entry:
    """A block as read, kept even when it has errors so cross-checks still see it."""

    type: str
    name: Optional[str]  # None when the block lacks its single label
    what: str  # how messages name it: "clientgroup 'g'", or "clientgroup block"
    block: hcl.Block
    fields: Dict[str, Any]  # converted values of the keys that were valid
    attrs: Dict[str, hcl.Attribute]
    blocks: Dict[str, hcl.Block]  # the blocks inside it (`disk`), by type
    complete: bool  # no error inside this block
