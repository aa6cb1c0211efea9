"""The JSON job schema shared by the agent and the controller, and the door to the result schema.

Defined once, here, because the agent must run without the controller's
dependencies: the controller imports this module, never the other way round.
Plain dicts and validation functions, since Python 3.6 has no dataclasses.
The result document has modules of its own (``result_schema`` validates,
``result_builder`` builds on the agent, ``result_reader`` reads on the
controller); its names are importable from here too.
"""

from .boards import power_spec_types
from .interference import DEFAULT_THRESHOLDS as INTERFERENCE_THRESHOLDS
from .result_reader import ResultView, read_result
from .result_schema import (
    ERROR_KINDS,
    JOB_STATUSES,
    READABLE_RESULT_VERSIONS,
    RESULT_SCHEMA_VERSION,
    SUMMARY_FIELDS,
    backend_document,
    validate_result,
)
from .schema_fields import SchemaError, optional, require

__all__ = [
    "BACKEND_DELEGATES",
    "BACKEND_FORMATS",
    "DELEGATES",
    "ERROR_KINDS",
    "JOB_SCHEMA_VERSION",
    "JOB_STATUSES",
    "PRECISIONS",
    "READABLE_RESULT_VERSIONS",
    "RESULT_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "SUMMARY_FIELDS",
    "TIMING_DEFAULTS",
    "TIMING_LIMIT",
    "ResultView",
    "SchemaError",
    "backend_document",
    "make_job",
    "read_result",
    "validate_job",
    "validate_result",
]

# The job document's version. Results carry their own (RESULT_SCHEMA_VERSION), so a result
# that gains a sub-document does not make every stored job unreadable to a new agent.
JOB_SCHEMA_VERSION = 1
SCHEMA_VERSION = JOB_SCHEMA_VERSION

# What each inference backend (agent/backends) accepts as "delegate"; a job without "backend" means tflite.
# For onnxruntime the delegate is the execution provider: cpu, cuda (CUDAExecutionProvider), tensorrt.
# tensorrt (the backend) and TFLite's GPU delegate run on a GPU: delegate "gpu".
BACKEND_DELEGATES = {"tflite": ("cpu", "edgetpu", "gpu"), "onnxruntime": ("cpu", "cuda", "tensorrt"),
                     "tensorrt": ("gpu",)}
DEFAULT_BACKEND = "tflite"
# Every delegate some backend takes, in a stable order (a matrix's `delegates` is checked against it).
DELEGATES = tuple(dict.fromkeys(d for names in BACKEND_DELEGATES.values() for d in names))
# The model file format each backend reads (the controller pairs models with backends by it).
BACKEND_FORMATS = {"tflite": "tflite", "onnxruntime": "onnx", "tensorrt": "onnx"}
# Precisions a matrix may ask for; a job without "precision" runs the model file's own types.
PRECISIONS = ("fp32", "fp16", "int8")

# Defaults follow TFLite's benchmark_model: warm up for at least one run and
# half a second, then time at least 50 runs and one second, and stop starting
# new runs after 150 s whatever the minimums say.
TIMING_DEFAULTS = {
    "warmup_min_runs": 1,
    "warmup_min_seconds": 0.5,
    "min_runs": 50,
    "min_seconds": 1.0,
    "max_seconds": 150.0,
}

# Runs or seconds: beyond this a value is a typo, and infinity or NaN would make the
# controller's timeouts overflow; ten million seconds is about four months.
TIMING_LIMIT = 10 ** 7

# A power-mode spec holds what some board family's power control takes (agent/boards), and how long to settle.
POWER_KEYS = dict(power_spec_types(), settle_seconds=(int, float))
# "ports": the inventory's port names, {"usb3-left": {"port": "2-1", "speed": 5000}}, so "port" may be a name.
EDGETPU_KEYS = {"port": (str,), "expect_speed": (int,), "device": (str,), "ports": (dict,)}
# SEEDS §3's ways to put several models on Edge TPUs (agent/multimodel.py).
PLACEMENTS = ("same-tpu", "separate-tpus", "cocompiled")
# "host": one benchmark at a time on the host (the default); "per-accelerator": the job locks only its
# devices (each TPU by port, "cpu" for CPU jobs), so a host with N TPUs runs up to N jobs at once.
CONCURRENCY_MODES = ("host", "per-accelerator")
MAX_PARTS = 16  # models of one multi-model job, or segments of one pipeline


def make_job(job_id, model_path, model_sha256, delegate="cpu", threads=1,
             timing=None, options=None, power=None, edgetpu=None, backend=None, precision=None,
             interference=None, models=None, segments=None, placement=None, concurrency=None):
    """Build a job document with defaults filled in, then validate it.

    ``power``: None to leave the board as it is, else a power mode spec such as
    {"name": "5W", "nvpmodel": 1} or {"name": "powersave", "governor": "powersave"}.
    ``edgetpu``: for delegate edgetpu, {"port": "2-1", "expect_speed": 5000}, all optional.
    ``backend``: a name from BACKEND_DELEGATES; None leaves it out, which means tflite, so
    the documents of TFLite jobs stay what agents before the backends knew.
    ``interference``: thresholds that differ from ``interference.DEFAULT_THRESHOLDS`` (None: the defaults).
    """
    doc = {
        "schema": SCHEMA_VERSION,
        "job_id": job_id,
        "model": {"path": model_path, "sha256": model_sha256},
        "delegate": delegate,
        "threads": threads,
        "timing": dict(TIMING_DEFAULTS),
        "options": dict(options or {}),
        "power": power,
        "edgetpu": edgetpu,
    }
    if timing:
        doc["timing"].update(timing)
    if backend is not None:
        doc["backend"] = backend
    if precision is not None:
        doc["precision"] = precision
    if interference:
        doc["interference"] = dict(interference)
    # Left out when unused, so one-model jobs keep the documents agents before multi-model jobs knew.
    for field, value in (("models", models), ("segments", segments), ("placement", placement),
                         ("concurrency", concurrency)):
        if value is not None:
            doc[field] = value
    return validate_job(doc)


def validate_job(doc):
    """Check a job document; return it with timing defaults filled in."""
    where = "job"
    if not isinstance(doc, dict):
        raise SchemaError("job: expected a JSON object, got {}".format(type(doc).__name__))
    schema = require(doc, "schema", (int,), where)
    if schema != SCHEMA_VERSION:
        raise SchemaError("job: schema version {} is not supported (this agent speaks {})".format(
            schema, SCHEMA_VERSION))
    job_id = require(doc, "job_id", (str,), where)
    if not job_id or len(job_id) > 200:
        raise SchemaError("job: field 'job_id' must be 1 to 200 characters")
    model = require(doc, "model", (dict,), where)
    require(model, "path", (str,), "job.model")
    sha = require(model, "sha256", (str,), "job.model")
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise SchemaError("job.model: field 'sha256' must be 64 lowercase hex digits")
    backend = optional(doc, "backend", (str,), where)
    if backend is not None and backend not in BACKEND_DELEGATES:
        raise SchemaError("job: field 'backend' must be one of {}, got {!r}".format(
            ", ".join(sorted(BACKEND_DELEGATES)), backend))
    delegates = BACKEND_DELEGATES[backend or DEFAULT_BACKEND]
    # None: the model file's own types; a backend refuses what it cannot run.
    precision = optional(doc, "precision", (str,), where)
    if precision is not None and precision not in PRECISIONS:
        raise SchemaError("job: field 'precision' must be one of {}, got {!r}".format(", ".join(PRECISIONS),
                                                                                     precision))
    delegate = require(doc, "delegate", (str,), where)
    if delegate not in delegates:
        raise SchemaError("job: field 'delegate' must be one of {}, got {!r}".format(
            ", ".join(delegates), delegate))
    threads = require(doc, "threads", (int,), where)
    if not 1 <= threads <= 256:
        raise SchemaError("job: field 'threads' must be between 1 and 256, got {}".format(threads))
    timing = dict(TIMING_DEFAULTS)
    timing.update(_optional_object(doc, "timing"))
    for field in TIMING_DEFAULTS:
        value = require(timing, field, (int, float), "job.timing")
        if value < 0:
            raise SchemaError("job.timing: field '{}' must not be negative".format(field))
        if not value <= TIMING_LIMIT:  # also refuses NaN: every comparison with it is False
            raise SchemaError("job.timing: field '{}' must be at most {} and a number, got {!r}".format(
                field, TIMING_LIMIT, value))
    unknown = sorted(set(timing) - set(TIMING_DEFAULTS))
    if unknown:
        raise SchemaError("job.timing: unknown field '{}'".format(unknown[0]))
    power = doc.get("power")
    if power is not None:
        if not isinstance(power, dict):
            raise SchemaError("job: field 'power' must be an object or null")
        require(power, "name", (str,), "job.power")
        for key, kinds in POWER_KEYS.items():
            if key in power and power[key] is not None:
                require(power, key, kinds, "job.power")
    edgetpu = doc.get("edgetpu")
    if edgetpu is not None:
        if not isinstance(edgetpu, dict):
            raise SchemaError("job: field 'edgetpu' must be an object or null")
        for key, kinds in EDGETPU_KEYS.items():
            if key in edgetpu and edgetpu[key] is not None:
                require(edgetpu, key, kinds, "job.edgetpu")
    _check_interference_settings(doc)
    for field in ("models", "segments"):
        _check_parts(doc, field)
    if doc.get("models") is not None and doc.get("segments") is not None:
        raise SchemaError("job: a job holds either 'models' (several models) or 'segments' (a pipeline), not both")
    if doc.get("segments") is not None and len(doc["segments"]) < 2:
        raise SchemaError("job: field 'segments' must list at least 2 segment models")
    placement = optional(doc, "placement", (str,), where)
    if placement is not None and placement not in PLACEMENTS:
        raise SchemaError("job: field 'placement' must be one of {}, got {!r}".format(", ".join(PLACEMENTS),
                                                                                     placement))
    _check_concurrency(doc.get("concurrency"))
    out = dict(doc)
    out["power"] = power
    out["edgetpu"] = edgetpu
    out["timing"] = timing
    out["options"] = _optional_object(doc, "options")
    return out


def _check_interference_settings(doc):
    """The job's ``interference`` object: thresholds (``agent/interference.py``), each a number or null."""
    settings = _optional_object(doc, "interference")
    for key, value in settings.items():
        if key not in INTERFERENCE_THRESHOLDS:
            raise SchemaError("job.interference: unknown field '{}' (known: {})".format(
                key, ", ".join(sorted(INTERFERENCE_THRESHOLDS))))
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value <= TIMING_LIMIT):
            raise SchemaError("job.interference: field '{}' must be a non-negative number or null, got {!r}".format(
                key, value))


def _check_parts(doc, field):
    """``models`` / ``segments``: [{"path", "sha256", "name"?, "edgetpu"?}], in the order they run."""
    parts = optional(doc, field, (list,), "job")
    if parts is None:
        return
    if not 1 <= len(parts) <= MAX_PARTS:
        raise SchemaError("job: field '{}' must list 1 to {} models".format(field, MAX_PARTS))
    for index, part in enumerate(parts):
        where = "job.{}[{}]".format(field, index)
        if not isinstance(part, dict):
            raise SchemaError("{}: expected an object".format(where))
        require(part, "path", (str,), where)
        sha = require(part, "sha256", (str,), where)
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise SchemaError("{}: field 'sha256' must be 64 lowercase hex digits".format(where))
        optional(part, "name", (str,), where)
        request = optional(part, "edgetpu", (dict,), where)
        for key, kinds in EDGETPU_KEYS.items():
            if request is not None and request.get(key) is not None:
                require(request, key, kinds, where + ".edgetpu")


def _check_concurrency(concurrency):
    if concurrency is None:
        return
    if not isinstance(concurrency, dict):
        raise SchemaError("job: field 'concurrency' must be an object or null")
    mode = require(concurrency, "mode", (str,), "job.concurrency")
    if mode not in CONCURRENCY_MODES:
        raise SchemaError("job.concurrency: field 'mode' must be one of {}, got {!r}".format(
            ", ".join(CONCURRENCY_MODES), mode))
    devices = optional(concurrency, "devices", (list,), "job.concurrency") or []
    if not all(isinstance(d, str) and d and len(d) <= 100 for d in devices):
        raise SchemaError("job.concurrency: field 'devices' must be a list of device names")
    if mode == "per-accelerator" and not devices:
        raise SchemaError("job.concurrency: a per-accelerator job names the devices it locks")


def _optional_object(doc, field):
    value = doc.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SchemaError("job: field '{}' must be an object or null, got {!r}".format(field, value))
    return dict(value)
