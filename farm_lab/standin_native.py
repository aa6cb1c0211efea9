"""Native fronts for the stand-in vcgencmd and nvpmodel, so a lab host's per-contact tool costs what a board's does.

On a real board vcgencmd and nvpmodel are native binaries of a few ms; the stand-ins in ``standins/``
are Python scripts, a full interpreter start (10-20 ms of CPU) on every contact the agent makes
(``vcgencmd get_throttled`` on a Pi, ``nvpmodel -q`` on a Jetson). ``build()`` compiles a small C front
per tool (``standins/native/``) with the C compiler, as ``standin_libedgetpu`` builds its library;
``install()`` puts each front where the Python stand-in was in the lab's published tools folder, and
the Python stand-in beside it as ``TOOL.py``. A front answers the per-contact queries itself, byte
for byte as the script would (tests/test_standin_native.py runs both on the same board states), and
execs ``python3 TOOL.py ARGS`` for everything else, so ``nvpmodel -m`` and the rest keep one
implementation. Without a C compiler the lab publishes the Python stand-ins alone, as before.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from .standin_libedgetpu import find_compiler

SOURCES = Path(__file__).resolve().parent / "standins" / "native"
TOOLS = ("vcgencmd", "nvpmodel")


class CompilerMissing(RuntimeError):
    """No C compiler on this machine: the lab's hosts run the Python stand-ins for every call."""


def build(cache: Path) -> dict[str, Path]:
    """{tool: its compiled front in ``cache``}, built once per source version (safe if two labs build at once)."""
    sources = sorted(SOURCES.glob("*.[ch]"))
    digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in sources)).hexdigest()[:16]
    folder = Path(cache) / "standin-native" / digest
    built = {tool: folder / tool for tool in TOOLS}
    if all(path.is_file() for path in built.values()):
        return built
    cc = find_compiler()
    if cc is None:
        raise CompilerMissing("the lab's native vcgencmd and nvpmodel are built from C source and this machine has no "
                              "C compiler (tried $CC, cc, gcc): lab hosts run the Python stand-ins on every call, "
                              "about 15 ms of CPU each instead of 1 (install gcc and run 'farm lab up' again)")
    folder.mkdir(parents=True, exist_ok=True)
    for directory in (folder.parent, folder):
        directory.chmod(0o755)
    for tool, target in built.items():
        temporary = target.with_name(f".{tool}.{os.getpid()}")
        done = subprocess.run([cc, "-O2", "-Wall", "-Wno-format-truncation", "-o", str(temporary),
                               str(SOURCES / f"{tool}.c")], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"building the native {tool} with {cc} failed: {done.stderr.strip()[-2000:]}")
        temporary.chmod(0o755)
        temporary.replace(target)  # atomic: a concurrent build leaves one whole file
    return built


def install(tools: Path, built: dict[str, Path]) -> None:
    """In the published tools folder ``tools``: each Python stand-in moves to TOOL.py, its front takes its name."""
    for tool, front in built.items():
        script = tools / tool
        script.replace(tools / f"{tool}.py")
        shutil.copyfile(front, script)
        script.chmod(0o755)
