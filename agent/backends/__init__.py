"""Inference backends by name: the job's ``backend`` picks one, the timing loop in ``bench`` runs them all.

A new runtime is one module with a ``Backend`` subclass, named in BACKENDS.
Modules are imported when a job asks for them: ``facts`` imports the TFLite
runtime finder from here, and the Edge TPU part of the TFLite backend
imports ``facts`` back, so importing every backend up front would be a cycle.
A backend's runtime itself is imported in ``load``/``preload`` (most hosts
lack most runtimes).
"""

import importlib

from .. import probe_cache
from .base import Backend, JobFailed, LoadOptions

DEFAULT_BACKEND = "tflite"

# name -> (module in this package, class)
BACKENDS = {
    "tflite": ("tflite", "TfliteBackend"),
    "onnxruntime": ("onnxruntime", "OnnxruntimeBackend"),
    "tensorrt": ("tensorrt", "TensorrtBackend"),
}
# Each backend class's ``runtime_modules`` (a test holds them equal), named here so that a probe answered
# from the cache imports no backend module: the TensorRT one alone brought hashlib's OpenSSL start.
RUNTIME_MODULES = {"onnxruntime": ("onnxruntime", "numpy"), "tensorrt": ("tensorrt", "cuda", "pycuda")}

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "RUNTIME_MODULES", "Backend", "JobFailed", "LoadOptions", "available", "for_job", "get",
           "preload"]


def get(name):
    """The Backend class registered as ``name``; JobFailed (infrastructure) for a name this agent lacks."""
    if name not in BACKENDS:
        raise JobFailed("infrastructure", "this agent has no backend '{}'; it has {}".format(
            name, ", ".join(sorted(BACKENDS))))
    module_name, class_name = BACKENDS[name]
    return getattr(importlib.import_module("." + module_name, __name__), class_name)


def for_job(job):
    """A backend instance for a validated job document (no ``backend`` field: tflite)."""
    return get(job.get("backend") or DEFAULT_BACKEND)(LoadOptions.from_job(job))


def available(known=None):
    """{name: {"name", "version", "error"}} for every backend: what this host can run.

    A backend whose probe imports its runtime (``runtime_modules``) is asked once per install of it.
    ``known``: answers the caller already has ({name: answer}), not asked again.
    """
    found = {}
    for name in sorted(BACKENDS):
        if known and name in known:
            found[name] = known[name]
        elif RUNTIME_MODULES.get(name):
            found[name] = probe_cache.cached(name, RUNTIME_MODULES[name], _prober(name))
        else:
            found[name] = get(name).available()
    return found


def _prober(name):
    return lambda: get(name).available()


def preload():
    """Import every backend's runtime once, so forked job processes find them loaded."""
    for name in BACKENDS:
        get(name).preload()
