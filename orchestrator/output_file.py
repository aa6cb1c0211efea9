"""Write a command's output file (-o), turning each way that can fail into one sentence."""

from __future__ import annotations

from pathlib import Path

from .errors import FarmError, InfrastructureError


def write_output(path: Path, text: str) -> None:
    if path.is_dir():
        raise FarmError(f"cannot write {path}: it is a directory; give a file name, e.g. {path / 'results.csv'}")
    if not path.parent.is_dir():
        raise FarmError(f"cannot write {path}: the folder {path.parent} does not exist; create it first")
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise InfrastructureError(f"cannot write {path}: {exc.strerror or exc}") from None  # a full disk: exit 4
