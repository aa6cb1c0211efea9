"""The TFLite runtime finder's old home: ``facts`` and the controller's toolchain report still import it here.

The finder itself belongs to the TFLite backend (``agent/backends/tflite_loader.py``).
"""

from .backends.tflite_loader import CANDIDATES, RuntimeMissing, describe_runtime, load_delegate, load_runtime

__all__ = ["CANDIDATES", "RuntimeMissing", "describe_runtime", "load_delegate", "load_runtime"]
