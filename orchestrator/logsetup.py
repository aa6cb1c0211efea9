"""`-v`, `-vv` and `--log-file`: farm's own log and paramiko's, with secrets taken out before they are written.

Without either option nothing is configured: paramiko's handshake tracebacks stay silent (its logger has
a NullHandler, orchestrator/transport/ssh.py) and failures reach the user as one sentence. With them
the root logger gets a handler, so the ``orchestrator``, ``paramiko`` and ``fabric`` loggers all reach it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

# What must never reach a log file, however a library formats it. Each pattern keeps what names the secret
# (the user, the key type, the variable) and replaces only the secret itself.
_REDACTIONS = (
    # a password in a URL: postgresql://farm:s3cret@db/x, https://user:token@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@", re.IGNORECASE), r"\1***@"),
    # a private key's body, whatever its type
    (re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(-----END \1PRIVATE KEY-----|$)", re.DOTALL),
     r"-----BEGIN \1PRIVATE KEY----- *** -----END \1PRIVATE KEY-----"),
    # NAME=value or name: value where the name says it is a secret (password, passphrase, token, secret, api key)
    (re.compile(r"(\b[\w.-]*(?:password|passwd|passphrase|secret|token|api[_-]?key)[\w.-]*\b['\"]?\s*[=:]\s*)"
                r"(['\"]?)[^\s'\",;]+\2", re.IGNORECASE), r"\1\2***\2"),
    # a libpq connection string's password=... (also caught above) and an Authorization header
    (re.compile(r"(Authorization:\s*\w+\s+)\S+", re.IGNORECASE), r"\1***"),
)


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Formats the record's message once, redacted, so no handler can print the raw arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a library's bad format string must not stop the log
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(threadName)s] %(message)s"
LEVELS = {0: logging.WARNING, 1: logging.INFO}  # 2 and more: DEBUG (paramiko's packet-level log included)


def configure(verbosity: int, log_file: Path | None) -> None:
    """-v: farm's and paramiko's INFO on stderr; -vv: DEBUG. --log-file: everything at DEBUG into the file."""
    if verbosity <= 0 and log_file is None:
        return
    root = logging.getLogger()
    redacting = RedactingFilter()
    handlers: list[logging.Handler] = []
    if verbosity > 0:
        stderr = logging.StreamHandler()
        stderr.setLevel(LEVELS.get(verbosity, logging.DEBUG))
        handlers.append(stderr)
    if log_file is not None:
        log_file = log_file.expanduser()
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setLevel(logging.DEBUG)
        handlers.append(to_file)
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(redacting)  # on the handler: a filter on a logger does not see its children's records
        root.addHandler(handler)
    root.setLevel(min(handler.level for handler in handlers))
    logging.captureWarnings(True)
