"""Find the TFLite interpreter module this device has, and say which one it is (the TFLite backend's runtime).

Devices carry different runtimes: tflite_runtime on most boards, its
successor ai_edge_litert on new ones, full TensorFlow on some hosts.
"""

import importlib

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
    """A facts-friendly description, without raising when nothing is installed."""
    try:
        name, version, _ = load_runtime()
    except RuntimeMissing as exc:
        return {"name": None, "version": None, "error": str(exc)}
    return {"name": name, "version": version, "error": None}


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
