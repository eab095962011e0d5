"""The per-host words of preImage/postImage: `#HOSTNAME#`, `#IP#`, `#MAC#`, `#GROUP#`,
`#IMAGE#`, `#MASTER#` and `#VAR:name#`, and the THEPUSHER_* environment they also go in.

Scripts run with `sh -c`, and the words are put into the command as they are, unquoted.
So the config only admits values that cannot change what the shell reads: host names
by the hostname rules, vars from a small set of characters (SAFE_VALUE); load.py refuses
a script whose `#GROUP#`/`#IMAGE#` would bring in anything else. The config room holds
this so that check-config and the client agree on what a script uses.
"""

import re
from typing import Dict, List, Mapping, Optional, Sequence

# `#VAR:name#` takes a name that is also an environment variable's (THEPUSHER_VAR_NAME).
WORD = re.compile(r"#(MASTER|HOSTNAME|IP|MAC|GROUP|IMAGE|VAR:([A-Za-z_][A-Za-z0-9_]*))#")
VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# One RFC 1123 label, as /etc/hostname holds it: letters, digits, inner hyphens, 1-63.
HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
# Nothing sh reads as more than a word's letters: no spaces, quotes, $, `, ;, |, &, <, >,
# (, ), *, ?, [, ], ~, #, \ or newlines.
SAFE_VALUE = re.compile(r"^[A-Za-z0-9._,:/@+-]*$")
SAFE_CHARACTERS = "letters, digits and . _ , : / @ + -"


def hostname_problem(name: str) -> Optional[str]:
    """Why `name` cannot be a host's name, or None."""
    if HOSTNAME.match(name):
        return None
    return (f"must be a hostname: 1 to 63 letters, digits and inner hyphens (no dots, "
            f"spaces or '_'), found {name!r}")


def var_problem(name: str, value: Optional[str], others: Sequence[str] = ()) -> Optional[str]:
    """Why `name = value` cannot be one of a host's vars (beside `others`), or None; a
    value of None is one that is not a string. Names become environment variables
    (THEPUSHER_VAR_NAME) and values go into `sh -c` commands unquoted."""
    if not VAR_NAME.match(name):
        return (f"var name {name!r} must be letters, digits and '_', not starting with a "
                f"digit (it is also the variable THEPUSHER_VAR_{name.upper()})")
    twin = next((o for o in others if o.upper() == name.upper()), None)
    if twin is not None:
        return f"vars {twin!r} and {name!r} are both the variable THEPUSHER_VAR_{name.upper()}"
    if value is None:
        return f"var {name!r} must be a string"
    if not SAFE_VALUE.match(value):
        return (f"var {name!r} = {value!r}: only {SAFE_CHARACTERS} (scripts get it "
                f"unquoted, so nothing a shell would read as more than letters)")
    return None


class MissingVar(Exception):
    """A script names `#VAR:x#` and this host has no var x: never an empty string."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def vars_used(script: str) -> List[str]:
    """The var names a script's `#VAR:name#` words ask for, in order, each once."""
    return list(dict.fromkeys(m.group(2) for m in WORD.finditer(script) if m.group(2)))


def uses(script: str, word: str) -> bool:
    """Whether `#WORD#` occurs in the script (e.g. uses(s, "GROUP"))."""
    return any(m.group(1) == word for m in WORD.finditer(script))


def default_hostname(address: str) -> str:
    """The `#HOSTNAME#` of a host the config names not: its address with '-' for '.' and
    ':' (10.0.0.21 -> 10-0-0-21), a valid hostname that still says which machine it is."""
    return re.sub(r"[.:]", "-", address) or "localhost"


def values(*, master: str, hostname: str, address: str, mac: str, group: str, image: str,
           host_vars: Mapping[str, str]) -> Dict[str, str]:
    """Every word a script may use, by its name between the #s ("VAR:room" for vars)."""
    out = {"MASTER": master, "HOSTNAME": hostname or default_hostname(address),
           "IP": address, "MAC": mac, "GROUP": group, "IMAGE": image}
    out.update((f"VAR:{name}", value) for name, value in host_vars.items())
    return out


def substitute(script: str, words: Mapping[str, str]) -> str:
    """The script with every word replaced in one pass; MissingVar for an unknown var."""
    def one(m: "re.Match[str]") -> str:
        if m.group(1) not in words:
            raise MissingVar(m.group(2))
        return words[m.group(1)]
    return WORD.sub(one, script)


def environment(words: Mapping[str, str]) -> Dict[str, str]:
    """The same values as THEPUSHER_HOSTNAME, ..., THEPUSHER_VAR_ROOM (names upper-cased)."""
    return {"THEPUSHER_" + name.replace(":", "_").upper(): value for name, value in words.items()}
