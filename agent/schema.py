"""The JSON job schema shared by the agent and the controller, and the door to the result schema.

Defined once, here, because the agent must run without the controller's
dependencies: the controller imports this module, never the other way round.
Plain dicts and validation functions, since Python 3.6 has no dataclasses.
The result document has modules of its own (``result_schema`` validates,
``result_builder`` builds on the agent, ``result_reader`` reads on the
controller); its names are importable from here too.
"""

from .boards import power_spec_types
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


def make_job(job_id, model_path, model_sha256, delegate="cpu", threads=1,
             timing=None, options=None, power=None, edgetpu=None, backend=None, precision=None):
    """Build a job document with defaults filled in, then validate it.

    ``power``: None to leave the board as it is, else a power mode spec such as
    {"name": "5W", "nvpmodel": 1} or {"name": "powersave", "governor": "powersave"}.
    ``edgetpu``: for delegate edgetpu, {"port": "2-1", "expect_speed": 5000}, all optional.
    ``backend``: a name from BACKEND_DELEGATES; None leaves it out, which means tflite, so
    the documents of TFLite jobs stay what agents before the backends knew.
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
    out = dict(doc)
    out["power"] = power
    out["edgetpu"] = edgetpu
    out["timing"] = timing
    out["options"] = _optional_object(doc, "options")
    return out


def _optional_object(doc, field):
    value = doc.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SchemaError("job: field '{}' must be an object or null, got {!r}".format(field, value))
    return dict(value)
