"""Ansible host patterns: ``www[01:50].example.com``, ``db-[a:f]``, ``[1:9:2]``, and ``host:port``."""

from __future__ import annotations

import re
import string

# A hostile "[0:999999999]" must not build a billion names.
MAX_HOSTS_PER_PATTERN = 10_000
RANGE = re.compile(r"\[([^\[\]]*)\]")


class PatternError(ValueError):
    """Why a host pattern cannot be expanded (the caller adds the file and line)."""


def split_port(pattern: str) -> tuple[str, int | None]:
    """``badwolf.example.com:5309`` is a host and its port, as in Ansible's INI hosts.

    Only a colon outside brackets counts (``[1:9]`` is a range), and only one: more is
    an IPv6 address, which carries no port this way.
    """
    depth = 0
    colons = []
    for index, char in enumerate(pattern):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == ":" and depth == 0:
            colons.append(index)
    if len(colons) != 1:
        return pattern, None
    head, tail = pattern[:colons[0]], pattern[colons[0] + 1:]
    if not tail.isdigit():
        raise PatternError(f"'{tail}' after ':' in '{pattern}' is not a port number")
    return head, int(tail)


def expand(pattern: str) -> list[str]:
    """Every host name a pattern stands for, in order; a name without a range is itself."""
    match = RANGE.search(pattern)
    if not match:
        if "[" in pattern or "]" in pattern:
            raise PatternError(f"unbalanced '[' or ']' in host pattern '{pattern}'")
        return [pattern]
    head, tail = pattern[:match.start()], pattern[match.end():]
    names = []
    for value in _range(match.group(1), pattern):
        for rest in expand(tail):
            names.append(head + value + rest)
            if len(names) > MAX_HOSTS_PER_PATTERN:
                raise PatternError(f"'{pattern}' stands for more than {MAX_HOSTS_PER_PATTERN} hosts")
    return names


def _range(text: str, pattern: str) -> list[str]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise PatternError(f"'[{text}]' in '{pattern}' is not a range like [01:50] or [a:f]")
    begin, end = parts[0] or "0", parts[1]
    step_text = parts[2] if len(parts) == 3 else "1"
    if not end:
        raise PatternError(f"the range in '{pattern}' has no end")
    if not step_text.isdigit() or int(step_text) == 0:
        raise PatternError(f"the step '{step_text}' in '{pattern}' is not a positive number")
    step = int(step_text)
    letters = string.ascii_letters
    if len(begin) == 1 and len(end) == 1 and begin in letters and end in letters:
        first, last = letters.index(begin), letters.index(end)
        if first > last:
            raise PatternError(f"the range in '{pattern}' ends before it begins")
        return list(letters[first:last + 1:step])
    if not (begin.isdigit() and end.isdigit()):
        raise PatternError(f"'[{text}]' in '{pattern}' is neither a number nor a letter range")
    if int(begin) > int(end):
        raise PatternError(f"the range in '{pattern}' ends before it begins")
    if (int(end) - int(begin)) // step > MAX_HOSTS_PER_PATTERN:
        raise PatternError(f"'{pattern}' stands for more than {MAX_HOSTS_PER_PATTERN} hosts")
    width = 0
    if begin.startswith("0") and len(begin) > 1:
        # Ansible: a leading zero asks for fixed-width names, and both ends must say the same width.
        if len(begin) != len(end):
            raise PatternError(f"the range in '{pattern}' must give both ends the same width")
        width = len(begin)
    return [str(n).zfill(width) for n in range(int(begin), int(end) + 1, step)]
