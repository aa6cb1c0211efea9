"""The controller's reads of a result document: typed values, wherever the document keeps them.

Validate once where a result arrives (``read_result``, or ``validate_result``
then ``ResultView``); after that the store, the dispatcher and the measured
columns read it only through these accessors. A view does not validate: the
store's own seed data and tests pass partial documents, and every accessor
answers None for a part that is absent.
"""

from typing import Any, Dict, List, Optional

from .result_schema import validate_result


class ResultView(object):
    """One result document, read field by field."""

    def __init__(self, doc: Dict[str, Any]) -> None:
        self.doc = doc

    # -- identity and outcome ---------------------------------------------------------------------

    @property
    def schema_version(self) -> Optional[int]:
        return self.doc.get("schema")

    @property
    def job_id(self) -> Optional[str]:
        value = self.doc.get("job_id")
        return None if value is None else str(value)

    @property
    def spool_key(self) -> Optional[str]:
        return self.doc.get("spool_key")

    @property
    def status(self) -> Optional[str]:
        return self.doc.get("status")

    @property
    def succeeded(self) -> bool:
        return self.doc.get("status") == "succeeded"

    @property
    def error_kind(self) -> Optional[str]:
        return self._part("error").get("kind")

    @property
    def error_message(self) -> Optional[str]:
        return self._part("error").get("message")

    # -- timing (present when the job succeeded) --------------------------------------------------

    @property
    def samples_ns(self) -> List[int]:
        return list(self._part("timing").get("samples_ns") or [])

    @property
    def summary(self) -> Dict[str, float]:
        """count, mean_ms, median_ms, p90_ms, p99_ms, min_ms, max_ms, std_ms."""
        return dict(self._part("timing").get("summary") or {})

    @property
    def init_ms(self) -> Optional[float]:
        return self._part("timing").get("init_ms")

    @property
    def first_inference_ms(self) -> Optional[float]:
        return self._part("timing").get("first_inference_ms")

    @property
    def warmup_runs(self) -> Optional[int]:
        return self._part("timing").get("warmup_runs")

    @property
    def median_ms(self) -> Optional[float]:
        return self.summary.get("median_ms")

    # -- what ran ---------------------------------------------------------------------------------

    @property
    def backend(self) -> Dict[str, Any]:
        """runtime, version, delegate, device, precision; a version 1 result's derived from ``runtime``."""
        backend = self.doc.get("backend")
        if backend is not None:
            return dict(backend)
        runtime = self._part("runtime")
        tpu = self.doc.get("edgetpu")
        # Version 1 did not say the delegate: an Edge TPU document means the job loaded its delegate.
        return {"runtime": runtime.get("name"), "version": runtime.get("version"),
                "delegate": "edgetpu" if tpu else None, "device": (tpu or {}).get("device"), "precision": None}

    @property
    def runtime_name(self) -> Optional[str]:
        return self.backend.get("runtime")

    @property
    def runtime_version(self) -> Optional[str]:
        return self.backend.get("version")

    # -- settings measured around the run ---------------------------------------------------------

    @property
    def power_measured(self) -> Dict[str, Any]:
        """The power mode the agent verified the board was in (name, nvpmodel or governor), {} if none."""
        return dict(self._part("power").get("measured") or {})

    @property
    def usb_speed(self) -> Optional[float]:
        """The Edge TPU's USB speed in Mb/s, as the agent found it right before the job."""
        return self._part("edgetpu").get("speed")

    @property
    def edgetpu_device(self) -> Optional[str]:
        return self._part("edgetpu").get("device")

    @property
    def simulated(self) -> Optional[str]:
        """"stand-in" when the result was measured on the simulated lab's Edge TPU, None on hardware."""
        return self._part("edgetpu").get("simulated")

    @property
    def throttled(self) -> Optional[bool]:
        return self.doc.get("throttled")

    @property
    def average_power_w(self) -> Optional[float]:
        """Average power over the timed loop; None where the board has no power monitor."""
        return self._power_during("average_w")

    @property
    def energy_per_inference_mj(self) -> Optional[float]:
        return self._power_during("energy_per_inference_mj")

    # -- the whole document -----------------------------------------------------------------------

    def detail(self) -> Dict[str, Any]:
        """The document as the store keeps it beside the samples table: without the samples."""
        timing = self._part("timing")
        return dict(self.doc, timing={k: v for k, v in timing.items() if k != "samples_ns"})

    def _power_during(self, field: str) -> Optional[float]:
        during = self._part("conditions").get("during") or {}
        return during.get(field) if during.get("available") else None

    def _part(self, field: str) -> Dict[str, Any]:
        return self.doc.get(field) or {}


def read_result(doc: Any) -> ResultView:
    """Validate a result as it arrives and view it; raises SchemaError naming the field."""
    return ResultView(validate_result(doc))
