"""Words for a crontab line and a systemd unit, written so each scheduler hands back exactly the text given.

cron reads a command line twice: first its own rule (an unescaped `%` ends the command, and what follows
is fed to it as standard input, with `%` as newlines), then `/bin/sh`. systemd reads ExecStart= and
Environment= with C escapes, quotes and `%` specifiers, and ExecStart= also expands `$`.
"""

from __future__ import annotations

import shlex

from ..errors import FarmError


def cron_word(word: str, what: str) -> str:
    """One shell word for a crontab command, with every `%` escaped as cron requires.

    cron drops the backslash of `\\%` only when that backslash is not itself escaped, so a `%` must
    never follow a backslash of the word's own: each `%` is therefore put between single-quoted pieces
    (shlex.quote never ends a piece with a bare backslash), where the shell reads it as a plain `%`.
    """
    if "\n" in word or "\r" in word:
        # cron has no escape for a newline: the rest would become a crontab line of its own.
        raise FarmError(f"{what} {word!r} holds a newline, which a crontab line cannot carry: remove it "
                        "(or use --systemd, whose units can)")
    if not word:
        return "''"
    return "\\%".join(shlex.quote(piece) if piece else "" for piece in word.split("%"))


def cron_assignment(name: str, value: str) -> str:
    return f"{name}={cron_word(value, f'the value of {name}')}"


def cron_unescape(command: str) -> str:
    """The shell text cron runs for a command we wrote: `\\%` becomes `%`, other backslashes stay."""
    out = []
    escaped = False
    for char in command:
        if escaped:
            if char == "%":
                out[-1] = "%"
            else:
                out.append(char)
            escaped = False
            continue
        out.append(char)
        escaped = char == "\\"
    return "".join(out)


def _systemd_escape(text: str) -> str:
    out = []
    for char in text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%"):
        out.append(f"\\x{ord(char):02x}" if ord(char) < 0x20 or ord(char) == 0x7F else char)
    return "".join(out)


def systemd_exec_word(word: str) -> str:
    """One quoted word of ExecStart=: specifiers (`%%`) and variables (`$$`) kept literal, C-escaped."""
    return '"' + _systemd_escape(word).replace("$", "$$") + '"'


def systemd_environment(name: str, value: str) -> str:
    """An Environment= line; systemd expands specifiers there but not `$`."""
    return f'Environment="{_systemd_escape(f"{name}={value}")}"'


def systemd_path(path: str) -> str:
    """A path for WorkingDirectory=, which takes no quotes or C escapes but does expand specifiers."""
    if any(ord(char) < 0x20 for char in path):
        raise FarmError(f"the working directory {path!r} holds a control character, which a systemd unit cannot "
                        "name: install from another directory")
    return path.replace("%", "%%")


def systemd_words(text: str, exec_line: bool) -> list[str]:
    """Split a line's value written by systemd_exec_word or systemd_environment back into its words."""
    words: list[str] = []
    index = 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        word, index = _systemd_word(text, index, exec_line)
        words.append(word)
    return words


def _systemd_word(text: str, index: int, exec_line: bool) -> tuple[str, int]:
    quote = text[index] if text[index] in "\"'" else ""
    index += 1 if quote else 0
    out = []
    while index < len(text):
        char = text[index]
        if (quote and char == quote) or (not quote and char.isspace()):
            return "".join(out), index + 1
        if char == "\\" and index + 1 < len(text):
            following = text[index + 1]
            if following == "x":
                out.append(chr(int(text[index + 2:index + 4], 16)))
                index += 4
                continue
            out.append({"n": "\n", "t": "\t", "r": "\r"}.get(following, following))
            index += 2
            continue
        if char in "%$" and text[index + 1:index + 2] == char and (char == "%" or exec_line):
            index += 1
        out.append(char)
        index += 1
    return "".join(out), index
