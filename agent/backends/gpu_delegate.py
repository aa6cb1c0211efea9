"""The TFLite GPU delegate, where a device has it: loaded as an external delegate, skipped with the reason if not.

TensorFlow builds it as ``libtensorflowlite_gpu_delegate.so`` (bazel target
``//tensorflow/lite/delegates/gpu:libtensorflowlite_gpu_delegate.so``); the
tflite-runtime wheels do not ship it, so a host that has one built names it in
``options.gpu_delegate_library`` or puts it on the loader's path.
"""

from .base import JobFailed
from .tflite_loader import RuntimeMissing, load_delegate

GPU_DELEGATE_LIBRARY = "libtensorflowlite_gpu_delegate.so"


def load_gpu_delegate(interpreter_module, library=None):
    """The loaded GPU delegate; JobFailed (skipped) when this host has none, naming what it would need."""
    library = library or GPU_DELEGATE_LIBRARY
    try:
        return load_delegate(interpreter_module, library, {})
    except (ValueError, OSError, RuntimeMissing) as exc:
        raise JobFailed("unsupported", "the TFLite GPU delegate {} cannot be loaded on this host ({}); build it "
                        "from TensorFlow (//tensorflow/lite/delegates/gpu:libtensorflowlite_gpu_delegate.so) and "
                        "name it in options.gpu_delegate_library".format(library, " ".join(str(exc).split())),
                        status="skipped")
