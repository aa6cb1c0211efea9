"""Interpreters for simulated boards: the Python (and TFLite runtime) each real board would have.

Each one is a venv in a cache shared by every lab on this machine, built once
and reused by later ``farm lab up`` runs and test sessions.

The lab's login user must be able to run them. pyenv's interpreters usually
live under ``/root``, which that user cannot even traverse, and pyenv links
``python`` against ``libpython`` by an absolute RUNPATH into that tree, so a
venv (which points back to its base) or a plain copy cannot work. When the
login user cannot run the interpreter where it is, its installation is copied
into the cache (the standard library without its test suite or site-packages)
and the RUNPATH is rewritten to ``$ORIGIN/../lib``, which makes the copy
relocatable; the venv is then built on that copy.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from .account import Account, LabError
from .boards import Runtime

READY = ".farm-lab-ready"
SYSTEM_CACHE = Path("/var/cache/farm-lab")


@dataclass(frozen=True)
class PythonEnv:
    version: str                # major.minor
    runtime: Runtime | None

    @property
    def key(self) -> str:
        if self.runtime is None:
            return f"py{self.version}-bare"
        return f"py{self.version}-{self.runtime.key}"

    @property
    def env_var(self) -> str:
        return "FARM_LAB_PYTHON" + self.version.replace(".", "")


def default_cache_dir(account: Account) -> Path:
    """Where venvs are kept: a system directory every lab user can read, or our own cache."""
    if os.environ.get("FARM_LAB_CACHE"):
        return Path(os.environ["FARM_LAB_CACHE"])
    if os.geteuid() == 0:
        return SYSTEM_CACHE
    return Path(platformdirs.user_cache_dir("farm")) / "lab"


def find_interpreter(version: str) -> Path:
    """A Python ``version`` on this machine: $FARM_LAB_PYTHONxy, then pyenv, then PATH."""
    variable = PythonEnv(version, None).env_var
    if os.environ.get(variable):
        path = Path(os.environ[variable]).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LabError(f"{variable}={path} is not an executable Python {version} interpreter.")
        return path
    tried = []
    for root in _pyenv_roots():
        versions = sorted((p for p in (root / "versions").glob(f"{version}.*")
                           if re.fullmatch(rf"{re.escape(version)}\.\d+", p.name)),
                          key=lambda p: int(p.name.rsplit(".", 1)[1]))
        for candidate in reversed(versions):
            python = candidate / "bin" / f"python{version}"
            if python.is_file():
                return python
        tried.append(f"{root}/versions/{version}.*")
    on_path = shutil.which(f"python{version}")
    if on_path:
        return Path(on_path)
    tried.append(f"python{version} on PATH")
    raise LabError(f"the lab needs Python {version} (its simulated boards run the agent with it) and none was "
                   f"found: tried {', '.join(tried)}. Install it with 'pyenv install {version}', or set "
                   f"{variable} to the path of a python{version} interpreter.")


def _pyenv_roots() -> list[Path]:
    roots = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(Path(os.environ["PYENV_ROOT"]))
    pyenv = shutil.which("pyenv")
    if pyenv:
        done = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip():
            roots.append(Path(done.stdout.strip()))
    # The account's real home: $HOME may point elsewhere (tests isolate it).
    roots.append(Path(pwd.getpwuid(os.geteuid()).pw_dir) / ".pyenv")
    unique: list[Path] = []
    for root in roots:
        if root not in unique and (root / "versions").is_dir():
            unique.append(root)
    return unique


def prepare(env: PythonEnv, cache: Path, account: Account, say: Callable[[str], None] = print) -> Path:
    """The interpreter for ``env``, built in ``cache`` the first time; usable by ``account``."""
    interpreter = find_interpreter(env.version)
    for directory in (cache, cache / "venvs", cache / "base"):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)  # whatever the umask: the lab user reads through these
    venv = cache / "venvs" / env.key
    python = venv / "bin" / "python"
    wanted = json.dumps({"interpreter": str(interpreter),
                         "requirements": list(env.runtime.requirements) if env.runtime else []}, sort_keys=True)
    # Shared on the cache, exclusive on this venv: the lab's Pythons build side by side (they are mostly
    # pip's unpacking and the copy's file writes), and two runs never build one venv together.
    with file_lock(cache / ".lock", shared=True), file_lock(cache / "venvs" / f".{env.key}.lock"):
        marker = venv / READY
        if marker.exists() and marker.read_text() == wanted and account.run([str(python), "-c", "pass"]).returncode == 0:
            return python
        label = f"Python {env.version}" + (f" with {env.runtime.label}" if env.runtime else " (no runtime)")
        say(f"Preparing {label} in {venv} (once; later labs reuse it)...")
        base = _base_for(interpreter, env.version, cache, account, say)
        if venv.exists():
            shutil.rmtree(venv)
        _check([str(base), "-m", "venv", *([] if env.runtime else ["--without-pip"]), str(venv)],
               f"create the {label} venv")
        if env.runtime:
            _check([str(python), "-m", "pip", "install", "--quiet", "--no-input", "--disable-pip-version-check",
                    *env.runtime.requirements], f"install {env.runtime.label} for Python {env.version}")
        _make_readable(venv)
        probe = f"import {env.runtime.module}" if env.runtime else "import json, zipfile"
        done = account.run([str(python), "-c", probe])
        if done.returncode != 0:
            raise LabError(f"the {label} venv at {venv} was built but the lab user {account.name} cannot use it: "
                           f"{_tail(done.stderr)}")
        marker.write_text(wanted)
    return python


def _base_for(interpreter: Path, version: str, cache: Path, account: Account, say: Callable[[str], None]) -> Path:
    """``interpreter`` itself when the lab user can run it, else a relocated copy of its installation."""
    if account.run([str(interpreter), "-c", "import encodings"]).returncode == 0:
        return interpreter
    probe = _check([str(interpreter), "-c", ("import sys, platform; print(sys.base_prefix); "
                    "print(platform.python_version())")], f"inspect {interpreter}")
    prefix_text, full_version = probe.stdout.splitlines()[:2]
    prefix = Path(prefix_text)
    copy = cache / "base" / full_version
    with file_lock(cache / "base" / f".{full_version}.lock"):  # venvs of one Python share its copy
        return _copy_base(prefix, version, full_version, copy, account, say)


def _copy_base(prefix: Path, version: str, full_version: str, copy: Path, account: Account,
               say: Callable[[str], None]) -> Path:
    python = copy / "bin" / f"python{version}"
    if (copy / READY).exists() and account.run([str(python), "-c", "import encodings"]).returncode == 0:
        return python
    say(f"Copying Python {full_version} from {prefix} to {copy}: the lab user {account.name} cannot read it there...")
    if copy.exists():
        shutil.rmtree(copy)
    _copy_installation(prefix, version, copy)
    _relocate(copy, prefix)
    _make_readable(copy)
    done = account.run([str(python), "-c", "import encodings, sys; print(sys.prefix)"])
    if done.returncode != 0:
        raise LabError(f"copied Python {full_version} to {copy}, but the lab user {account.name} still cannot run "
                       f"it: {_tail(done.stderr)}. Set {PythonEnv(version, None).env_var} to a Python {version} "
                       "that every user can run.")
    (copy / READY).write_text(str(prefix))
    return python


def _copy_installation(prefix: Path, version: str, copy: Path) -> None:
    stdlib = prefix / "lib" / f"python{version}"

    def skip(directory: str, names: list[str]) -> set[str]:
        here = Path(directory)
        if here == prefix:
            return {n for n in names if n not in ("bin", "lib")}
        if here == prefix / "bin":  # scripts there have shebangs into the original tree
            return {n for n in names if not n.startswith("python") or n.endswith("-config")}
        if here == prefix / "lib":
            return {n for n in names if n != stdlib.name and not n.startswith("libpython")}
        if here == stdlib:  # the test suite and the static library are half the size; venvs bring their own packages
            return {n for n in names if n in ("test", "site-packages") or n.startswith("config-")}
        return set()

    shutil.copytree(prefix, copy, symlinks=True, ignore=skip)
    (copy / "lib" / f"python{version}" / "site-packages").mkdir(exist_ok=True)


def _relocate(copy: Path, prefix: Path) -> None:
    """Point the copy's RUNPATH (``<prefix>/lib``) at its own lib directory, in place."""
    olds = {f"{prefix}/lib".encode(), f"{os.path.realpath(prefix)}/lib".encode()}
    targets = [(p, b"$ORIGIN/../lib") for p in (copy / "bin").iterdir()]
    targets += [(p, b"$ORIGIN") for p in (copy / "lib").glob("libpython*")]
    for path, new in targets:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if not data.startswith(b"\x7fELF"):
            continue
        patched = data
        for old in olds:
            # The string sits NUL-terminated in .dynstr; a shorter one padded with NULs
            # keeps every offset in the file valid.
            patched = patched.replace(old + b"\0", new + b"\0" * (len(old) - len(new) + 1))
        if patched != data:
            mode = path.stat().st_mode
            path.write_bytes(patched)
            path.chmod(mode)


def _make_readable(root: Path) -> None:
    """Let every user read (and run, where the owner may) what root built."""
    for directory, dirs, files in os.walk(root):
        os.chmod(directory, os.stat(directory).st_mode | 0o755)
        for name in files:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                continue
            mode = os.stat(path).st_mode
            os.chmod(path, mode | 0o044 | (0o011 if mode & 0o100 else 0))


def _check(argv: list[str], purpose: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise LabError(f"cannot {purpose}: {' '.join(argv)} failed: {_tail(done.stderr or done.stdout)}")
    return done


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"


@contextmanager
def file_lock(path: Path, shared: bool = False) -> Iterator[None]:
    """One at a time: two ``lab up`` runs (or test sessions) must not build one venv, or one lab, together.

    ``shared``: beside other shared holders, never beside an exclusive one (an older farm that built every
    venv under the cache's one exclusive lock)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
