"""Find the TFLite interpreter module this device has, and say which one it is (the TFLite backend's runtime).

Devices carry different runtimes: tflite_runtime on most boards, its
successor ai_edge_litert on new ones, full TensorFlow on some hosts.
"""

import importlib
import importlib.util
import os

from ..sysfs import find

# Order matters: the small runtimes are what a device normally has; full
# TensorFlow is the last resort because importing it takes seconds.
CANDIDATES = (
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tensorflow", "tensorflow.lite.python.interpreter"),
)


class RuntimeMissing(RuntimeError):
    """No TFLite runtime can be imported on this device."""


_cached = None


def load_runtime():
    """Return (module_name, version, interpreter_module) or raise RuntimeMissing."""
    global _cached
    if _cached is not None:
        return _cached
    tried = []
    for name, interpreter_module in CANDIDATES:
        try:
            module = importlib.import_module(interpreter_module)
        except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
            tried.append("{} ({})".format(name, _first_line(exc)))
            continue
        _cached = (name, _version_of(name), module)
        return _cached
    raise RuntimeMissing(
        "no TFLite runtime found: tried " + "; ".join(tried)
        + ". Install tflite-runtime (pip install tflite-runtime) or ai-edge-litert for this Python."
    )


def describe_runtime():
    """A facts-friendly description, without raising when nothing is installed.

    Read from the installed package's metadata when it has one: importing the runtime (and numpy with
    it) was nine tenths of ``farm inventory check``'s work on a host beyond starting Python (0.3 s of
    a Pi's CPU, 2 s under load; README, "Fan-out cost model"). A job imports it anyway, and a runtime
    that is installed but cannot load fails that job with the import's own error.
    """
    if _cached is None:
        found = _installed_version()
        if found is not None:
            return {"name": found[0], "version": found[1], "error": None}
    try:
        name, version, _ = load_runtime()
    except RuntimeMissing as exc:
        return {"name": None, "version": None, "error": str(exc)}
    return {"name": name, "version": version, "error": None}


def _installed_version():
    """(name, version) of the first candidate installed with readable metadata, without importing it;
    None when the first one installed has none (or none is installed): then importing decides."""
    for name, _interpreter in CANDIDATES:
        try:
            spec = importlib.util.find_spec(name)  # a top-level name: found, not imported
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        locations = list(spec.submodule_search_locations or [])
        if len(locations) != 1:
            return None
        version = _metadata_version(os.path.dirname(locations[0]), name)
        return (name, version) if version else None
    return None


def _metadata_version(site, name):
    """The Version: line of ``name``'s one .dist-info (or Debian's .egg-info) in ``site``, else None."""
    found = find(os.path.join(site, name + "-*.dist-info", "METADATA"))
    found += find(os.path.join(site, name + "-*.egg-info", "PKG-INFO"))
    found += [path for path in find(os.path.join(site, name + "-*.egg-info")) if os.path.isfile(path)]
    if len(found) != 1:
        return None  # several installs side by side: only importing says which one loads
    try:
        with open(found[0]) as handle:
            for line in handle:
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip() or None
                if not line.strip():
                    break  # the headers end at the first blank line
    except (OSError, IOError, UnicodeDecodeError):
        return None
    return None


def _version_of(name):
    try:
        module = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a version we cannot read is not an error
        return None
    version = getattr(module, "__version__", None)
    if version is None and name == "tensorflow":
        version = getattr(getattr(module, "version", None), "VERSION", None)
    return version


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_delegate(interpreter_module, library, options):
    """Load an external delegate (libedgetpu) through whichever runtime we have."""
    loader = getattr(interpreter_module, "load_delegate", None)
    if loader is None:
        raise RuntimeMissing("this TFLite runtime cannot load external delegates")
    return loader(library, options)
