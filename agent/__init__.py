"""The farm agent: runs on the device, standard library plus an inference runtime.

Must stay importable on Python 3.6 (the system Python of JetPack 4): no dataclasses,
no ``from __future__ import annotations``, no walrus, no positional-only args.
"""

__version__ = "0.1.0"
