"""The Edge TPU for the TFLite backend: which TPU a job gets, and its delegate loaded with clear failures.

Discovery in sysfs stays in ``agent/edgetpu.py``; this module turns its answer
into the job's choice and the delegate, and says why when either cannot be had.
"""

from .. import edgetpu
from .base import JobFailed
from .tflite_loader import RuntimeMissing, load_delegate

EDGETPU_LIBRARY = "libedgetpu.so.1"


def select_tpu(request):
    """The Edge TPU a job asks for, resolved to usb:N now, right before the delegate loads.

    Indexes shift when a TPU loads its firmware and re-enumerates, so the port
    (a sysfs path or an inventory name) is resolved at the last moment. A
    missing library does not stop the resolution: the result still says which
    TPU, port and speed the job would have used.
    """
    request = dict(request or {})
    ports = request.pop("ports", None) or {}
    found = edgetpu.discover()
    try:
        tpu = edgetpu.resolve(request, ports=ports, found=found, need_library=False)
    except edgetpu.EdgeTpuError as exc:
        # A missing or wrong TPU fails the job: the matrix already skips cells the facts rule out,
        # so reaching here means the hardware changed since the facts were read.
        missing = found["library"].get("error")
        raise JobFailed("infrastructure", "{} ({}){}".format(
            exc.message, exc.reason, "; and " + missing if missing else ""))
    tpu["library"] = found["library"]
    if found["library"].get("simulated"):
        # Every result measured on the simulated lab's stand-in says so, in the store and in reports.
        tpu["simulated"] = edgetpu.STANDIN_MARK
    tpu["pycoral"] = found["pycoral"]
    tpu["order"] = found["order"]
    return tpu


def load_tpu_delegate(interpreter_module, tpu, requested_device):
    """The loaded delegate for ``tpu`` (None: the job named no port, so ``requested_device`` or the first TPU).

    A library the discovery already found missing skips the job, naming the TPU
    it would have used; any other failure to load is the host's fault.
    """
    options = {}
    device = (tpu or {}).get("device") or requested_device
    if device:
        options["device"] = str(device)
    try:
        return load_delegate(interpreter_module, EDGETPU_LIBRARY, options)
    except (ValueError, OSError, RuntimeMissing) as exc:
        library = (tpu or {}).get("library") or {}
        if tpu is not None and not library.get("path"):
            # The runtime tried and the library is not there: this host cannot run the cell.
            raise JobFailed("unsupported", "{}; the job would have used {} ({})".format(
                library.get("error") or "{} is not installed".format(EDGETPU_LIBRARY), device,
                _tpu_text(tpu)), status="skipped")
        raise JobFailed("infrastructure", "cannot load the Edge TPU delegate {} for {}: {}".format(
            EDGETPU_LIBRARY, device or "the first Edge TPU", exc))


def _tpu_text(tpu):
    if tpu.get("type") == "pci":
        return "PCIe {}".format(tpu.get("path"))
    return "port {} at {} Mb/s".format(tpu.get("port"), tpu.get("speed"))
