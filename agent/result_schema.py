"""The result document's schema: what an agent's result must hold, checked once where it arrives.

Versions: 2 adds the ``backend`` sub-document (runtime, version, delegate,
device, precision), required when a job succeeded. Version 1 is still read:
an agent that was not redeployed yet, or a result it left in a device's spool
before an upgrade, sends it; the reader derives its backend from ``runtime``.

Optional sub-documents are validated when present, as far as the controller
reads them (the store keeps the whole document as the result's detail).
Later parts (interference, multi-model jobs) go in as new optional
sub-documents with a checker each in SUBDOCUMENTS, not as new top-level fields.
"""

from .schema_fields import SchemaError, finite, optional, optional_finite, require

RESULT_SCHEMA_VERSION = 2
READABLE_RESULT_VERSIONS = (1, 2)

JOB_STATUSES = ("succeeded", "failed", "skipped")
# unsupported: this host cannot run the cell (e.g. no libedgetpu); the job is skipped, never retried.
ERROR_KINDS = ("benchmark", "infrastructure", "unsupported")
SUMMARY_FIELDS = ("mean_ms", "median_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "std_ms")

TEXT = (str,)
NUMBER = (int, float)


def backend_document(runtime, version=None, delegate=None, device=None, precision=None, **more):
    """The ``backend`` sub-document: what ran. ``more``: a backend's own facts (provider, engine_build_ms)."""
    doc = {"runtime": runtime, "version": version, "delegate": delegate, "device": device, "precision": precision}
    doc.update(more)
    return doc


def validate_result(doc):
    """Check a result document; return it unchanged, or raise SchemaError naming the field."""
    where = "result"
    if not isinstance(doc, dict):
        raise SchemaError("result: expected a JSON object, got {}".format(type(doc).__name__))
    version = require(doc, "schema", (int,), where)
    if version not in READABLE_RESULT_VERSIONS:
        raise SchemaError("result: schema version {} is not supported (this controller reads {})".format(
            version, ", ".join(str(v) for v in READABLE_RESULT_VERSIONS)))
    require(doc, "job_id", TEXT, where)
    optional(doc, "spool_key", TEXT, where)
    status = require(doc, "status", TEXT, where)
    if status not in JOB_STATUSES:
        raise SchemaError("result: field 'status' must be one of {}, got {!r}".format(
            ", ".join(JOB_STATUSES), status))
    if status == "succeeded":
        _check_timing(require(doc, "timing", (dict,), where))
        if version >= 2 and doc.get("backend") is None:
            raise SchemaError("result: missing field 'backend' (a succeeded result of schema {} says what "
                              "ran)".format(version))
    else:
        _check_error(require(doc, "error", (dict,), where))
    for field, check in SUBDOCUMENTS:
        part = optional(doc, field, (dict,), where)
        if part is not None:
            check(part, "result." + field)
    optional(doc, "throttled", (bool,), where)
    optional(doc, "power_restored", (list,), where)
    for field in ("started_at", "finished_at"):
        optional_finite(doc, field, where)
    return doc


def _check_timing(timing):
    where = "result.timing"
    samples = require(timing, "samples_ns", (list,), where)
    # The store keeps samples as 64-bit integers: a larger one would fail there, not here.
    if not samples or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2 ** 63
                              for s in samples):
        raise SchemaError("result.timing: field 'samples_ns' must be a non-empty list of integers "
                          "from 0 to 2**63-1")
    require(timing, "warmup_runs", (int,), where)
    for field in ("init_ms", "first_inference_ms"):
        finite(require(timing, field, NUMBER, where), field, where)
    for field in ("warmup_seconds", "timed_seconds"):
        optional_finite(timing, field, where)
    summary = require(timing, "summary", (dict,), where)
    require(summary, "count", (int,), where + ".summary")
    for field in SUMMARY_FIELDS:
        finite(require(summary, field, NUMBER, where + ".summary"), field, where + ".summary")


def _check_error(error):
    kind = require(error, "kind", TEXT, "result.error")
    if kind not in ERROR_KINDS:
        raise SchemaError("result.error: field 'kind' must be one of {}".format(", ".join(ERROR_KINDS)))
    require(error, "message", TEXT, "result.error")


def _check_runtime(runtime, where):
    optional(runtime, "name", TEXT, where)
    optional(runtime, "version", TEXT, where)


def _check_backend(backend, where):
    require(backend, "runtime", TEXT, where)
    for field in ("version", "delegate", "device", "precision"):
        optional(backend, field, TEXT, where)


def _check_power(power, where):
    for field in ("requested", "before", "measured", "recovered", "restore"):
        optional(power, field, (dict,), where)
    optional(power, "switched", (bool,), where)
    requested = power.get("requested")
    if requested is not None:
        require(requested, "name", TEXT, where + ".requested")
    measured = power.get("measured")
    if measured is not None:
        optional(measured, "name", TEXT, where + ".measured")
        optional(measured, "nvpmodel", (int,), where + ".measured")
        optional(measured, "ok", (bool,), where + ".measured")
    restore = power.get("restore")
    if restore is not None:
        optional(restore, "ok", (bool,), where + ".restore")


def _check_edgetpu(edgetpu, where):
    # simulated: "stand-in" when the Edge TPU was the simulated lab's stand-in library, absent on hardware.
    for field in ("port", "device", "type", "simulated"):
        optional(edgetpu, field, TEXT, where)
    optional_finite(edgetpu, "speed", where)  # Mb/s; USB low speed is 1.5


def _check_conditions(conditions, where):
    for moment in ("before", "after"):
        snapshot = optional(conditions, moment, (dict,), where)
        if snapshot is not None:
            optional(snapshot, "throttled", (bool,), where + "." + moment)
            optional_finite(snapshot, "max_temperature_c", where + "." + moment)
    during = optional(conditions, "during", (dict,), where)
    if during is not None:
        inside = where + ".during"
        optional(during, "available", (bool,), inside)
        optional(during, "throttled", (bool,), inside)
        for field in ("average_w", "energy_j", "energy_per_inference_mj", "duration_s"):
            optional_finite(during, field, inside)


# Each optional sub-document and its checker, in the order they are checked.
SUBDOCUMENTS = (
    ("runtime", _check_runtime),
    ("backend", _check_backend),
    ("power", _check_power),
    ("edgetpu", _check_edgetpu),
    ("conditions", _check_conditions),
)
