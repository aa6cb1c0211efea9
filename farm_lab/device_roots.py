"""Lay out lab hosts' device roots: each board's laid out once per ``up``, then copied whole per host.

Laying a root out is its identity, then ``board_hardware``'s power and USB
layers, which rewrite part of it: about three times the work of copying the
finished tree (38 against 13 ms for a Jetson Nano's 114 files on a quiet
machine here). Every host gets its own copy, not links to shared files: the
stand-in tools (nvpmodel, governors) write into their host's root. The copy is
Python's, not ``cp -a``: coreutils' cp took 55-190 ms for the same tree here.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from . import board_hardware
from .account import Account
from .boards import Board, write_device_root


class DeviceRoots:
    def __init__(self, templates: Path, account: Account, libedgetpu: Path | None) -> None:
        self.templates = templates
        self.account = account
        self.libedgetpu = libedgetpu
        self._built: set[str] = set()
        self._lock = threading.Lock()

    def lay_out(self, board: Board, root: Path) -> None:
        """Make ``root`` the device root of ``board``, replacing whatever was there, owned by the lab user."""
        template = self._template(board)
        if root.exists():
            shutil.rmtree(root)
        root.parent.mkdir(parents=True, exist_ok=True)
        # Links stay links (they are relative, within the root); modes are copied, timestamps need not be.
        shutil.copytree(template, root, symlinks=True, copy_function=shutil.copy)
        self.account.chown(root)  # stand-in tools (nvpmodel, governors) may change its files

    def _template(self, board: Board) -> Path:
        template = self.templates / board.name
        with self._lock:
            # Laid out afresh by every `up`: one left by an earlier run may come from other code.
            if board.name not in self._built:
                write_device_root(board, template)
                # nvpmodel, rails, USB accelerators, and the stand-in libedgetpu where the board has an Edge TPU
                board_hardware.install(board, template, self.libedgetpu)
                self._built.add(board.name)
        return template
