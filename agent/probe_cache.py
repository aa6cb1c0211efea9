"""What a probe of installed software found, kept on the host while the files it read are unchanged.

Reporting ONNX Runtime's execution providers means importing it (numpy with it): 90 of a
simulated board's 95 ms of ``facts``, and seconds for TensorRT on a Jetson. A check asks the
same question of an unchanged install every time, so the answer is kept in the agent's state
folder under a key of everything it depends on: the interpreter, the agent, the files the
import would load (found with ``importlib.util.find_spec``, which imports nothing), and the
variables that steer loading. Upgrading a runtime replaces its files and so changes the key;
the next probe imports it again. The same holds for a tool's answer about its own config
(``cached_for_files``: a Jetson's power modes, parsed by ``nvpmodel`` from its config file).
``FARM_PROBE_CACHE=0`` turns the cache off.
"""

import importlib.util
import json
import os
import sys

from . import __version__, atomic

CACHE_ENV = "FARM_PROBE_CACHE"
FILE_NAME = "probe-cache.json"
KEEP = 32  # entries: a few interpreters x a few installs each
# Variables that change what an import finds or loads (the lab's stand-ins read FARM_*).
STEERING = ("PYTHONPATH", "LD_LIBRARY_PATH", "LD_PRELOAD", "CUDA_VISIBLE_DEVICES", "PATH")


def _file_identity(path):
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [path, info.st_ino, info.st_size, info.st_mtime_ns]


def module_identity(name):
    """Where ``name`` would be imported from and that file's identity, without importing it; None if absent."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None
    if spec is None:
        return None
    origin = spec.origin if spec.has_location else None
    found = [name, _file_identity(origin) if origin else None]
    # A package's folder changes when an install adds or removes one of its files (the compiled extension).
    for folder in spec.submodule_search_locations or ():
        found.append(_file_identity(folder))
    return found


def probe_key(name, identities):
    steering = {k: v for k, v in sorted(os.environ.items()) if k in STEERING or k.startswith("FARM_")}
    parts = [name, sys.executable, sys.version, __version__, steering, identities]
    # The key is the text itself, not a hash of it: hashlib's OpenSSL start would cost more than the lookup.
    return json.dumps(parts, sort_keys=True, default=str)


def _cache_path():
    from .restore_state import state_dir  # imported when asked: restore_state imports the sysfs layer

    return os.path.join(state_dir(), FILE_NAME)


def cached(name, modules, probe):
    """``probe()``'s answer for this install of ``modules``: from the cache when the install is unchanged."""
    return _answer(name, lambda: [module_identity(m) for m in modules], probe)


def cached_for_files(name, paths, probe):
    """``probe()``'s answer while the files at ``paths`` (a tool and its config) are unchanged."""
    return _answer(name, lambda: [_file_identity(p) for p in paths], probe)


def _answer(name, identities, probe):
    if os.environ.get(CACHE_ENV, "1") == "0":
        return probe()
    key = probe_key(name, identities())
    path = _cache_path()
    entries = atomic.read_json(path)
    if not isinstance(entries, dict):
        entries = {}
    entry = entries.get(key)
    if isinstance(entry, dict) and "answer" in entry:
        return entry["answer"]
    answer = probe()
    if not answer:
        return answer  # nothing found (no modes parsed) is asked again next time, not kept
    entries.pop(key, None)
    entries[key] = {"probe": name, "answer": answer}
    # The file is written with sorted keys, so which entries go is arbitrary: a host rarely has more than a few.
    while len(entries) > KEEP:
        entries.pop(next(iter(entries)))
    try:
        atomic.write_json(path, entries, sync=False)
    except (OSError, IOError, TypeError, ValueError):
        pass  # a read-only state folder: the probe just runs every time
    return answer
