"""Read a user's file only if it is a regular file of bounded size, checked before reading.

A 50 MB inventory once parsed for minutes in gigabytes of memory, `farm models add /dev/zero`
read without end, and a FIFO hung the open. The size limits are environment variables:
FARM_MAX_YAML_MB for inventories and matrix files, FARM_MAX_MODEL_MB for model files.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .env_limits import positive_env
from .errors import InputError

YAML_LIMIT_ENV = "FARM_MAX_YAML_MB"
MODEL_LIMIT_ENV = "FARM_MAX_MODEL_MB"
DEFAULT_YAML_MB = 1  # about 15,000 hosts; PyYAML takes seconds per megabyte
DEFAULT_MODEL_MB = 1024
_CHUNK = 1 << 20


def limit_bytes(env: str, default_mb: int) -> int:
    return int(positive_env(env, float, default_mb, unit="number of megabytes") * 1024 * 1024)


def read_yaml_file(path: str | Path) -> bytes:
    return read_bounded(path, limit_bytes(YAML_LIMIT_ENV, DEFAULT_YAML_MB), YAML_LIMIT_ENV, "file")


def read_model_file(path: str | Path) -> bytes:
    return read_bounded(path, limit_bytes(MODEL_LIMIT_ENV, DEFAULT_MODEL_MB), MODEL_LIMIT_ENV, "model file")


def read_bounded(path: str | Path, limit: int, env: str, what: str) -> bytes:
    name = str(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise wait for one forever.
        descriptor = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise InputError(name, f"{what} not found") from None
    except OSError as exc:
        raise InputError(name, f"cannot read {what}: {exc.strerror}") from None
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        raise InputError(name, f"cannot read {what}: it is {_kind(status.st_mode)}, not a regular file")
    with os.fdopen(descriptor, "rb", buffering=0) as handle:
        size = status.st_size
        if size > limit:
            raise InputError(name, f"the {what} is {_mb(size)}, more than the {_mb(limit)} farm reads "
                             f"(raise {env} to allow more)")
        chunks = []
        taken = 0
        try:
            while chunk := handle.read(_CHUNK):
                taken += len(chunk)
                if taken > limit:  # it grew while being read
                    raise InputError(name, f"the {what} grew past the {_mb(limit)} farm reads "
                                     f"(raise {env} to allow more)")
                chunks.append(chunk)
        except OSError as exc:
            raise InputError(name, f"cannot read {what}: {exc.strerror}") from None
    return b"".join(chunks)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB" if size >= 1024 * 1024 else f"{size} bytes"
