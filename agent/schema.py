"""The JSON job/result schema shared by the agent and the controller.

Defined once, here, because the agent must run without the controller's
dependencies: the controller imports this module, never the other way round.
Plain dicts and validation functions, since Python 3.6 has no dataclasses.
"""

SCHEMA_VERSION = 1

DELEGATES = ("cpu", "edgetpu")

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

JOB_STATUSES = ("succeeded", "failed", "skipped")
POWER_KEYS = {"nvpmodel": (int,), "jetson_clocks": (bool,), "governor": (str,), "settle_seconds": (int, float)}
# "ports": the inventory's port names, {"usb3-left": {"port": "2-1", "speed": 5000}}, so "port" may be a name.
EDGETPU_KEYS = {"port": (str,), "expect_speed": (int,), "device": (str,), "ports": (dict,)}
# unsupported: this host cannot run the cell (e.g. no libedgetpu); the job is skipped, never retried.
ERROR_KINDS = ("benchmark", "infrastructure", "unsupported")


class SchemaError(ValueError):
    """A document does not match the schema; the message names the field."""


def _require(doc, field, kinds, where):
    if field not in doc:
        raise SchemaError("{}: missing field '{}'".format(where, field))
    value = doc[field]
    # bool is an int subclass: a threads count of True is a bug, not a 1.
    if isinstance(value, bool) and bool not in kinds:
        raise SchemaError("{}: field '{}' must be {}, got {!r}".format(
            where, field, _kind_names(kinds), value))
    if not isinstance(value, kinds):
        raise SchemaError("{}: field '{}' must be {}, got {!r}".format(
            where, field, _kind_names(kinds), value))
    return value


def _kind_names(kinds):
    names = {bool: "a boolean", int: "an integer", float: "a number",
             str: "a string", dict: "an object", list: "a list"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def make_job(job_id, model_path, model_sha256, delegate="cpu", threads=1,
             timing=None, options=None, power=None, edgetpu=None):
    """Build a job document with defaults filled in, then validate it.

    ``power``: None to leave the board as it is, else a power mode spec such as
    {"name": "5W", "nvpmodel": 1} or {"name": "powersave", "governor": "powersave"}.
    ``edgetpu``: for delegate edgetpu, {"port": "2-1", "expect_speed": 5000}, all optional.
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
    return validate_job(doc)


def validate_job(doc):
    """Check a job document; return it with timing defaults filled in."""
    where = "job"
    if not isinstance(doc, dict):
        raise SchemaError("job: expected a JSON object, got {}".format(type(doc).__name__))
    schema = _require(doc, "schema", (int,), where)
    if schema != SCHEMA_VERSION:
        raise SchemaError("job: schema version {} is not supported (this agent speaks {})".format(
            schema, SCHEMA_VERSION))
    job_id = _require(doc, "job_id", (str,), where)
    if not job_id or len(job_id) > 200:
        raise SchemaError("job: field 'job_id' must be 1 to 200 characters")
    model = _require(doc, "model", (dict,), where)
    _require(model, "path", (str,), "job.model")
    sha = _require(model, "sha256", (str,), "job.model")
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise SchemaError("job.model: field 'sha256' must be 64 lowercase hex digits")
    delegate = _require(doc, "delegate", (str,), where)
    if delegate not in DELEGATES:
        raise SchemaError("job: field 'delegate' must be one of {}, got {!r}".format(
            ", ".join(DELEGATES), delegate))
    threads = _require(doc, "threads", (int,), where)
    if not 1 <= threads <= 256:
        raise SchemaError("job: field 'threads' must be between 1 and 256, got {}".format(threads))
    timing = dict(TIMING_DEFAULTS)
    timing.update(_optional_object(doc, "timing"))
    for field in TIMING_DEFAULTS:
        value = _require(timing, field, (int, float), "job.timing")
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
        _require(power, "name", (str,), "job.power")
        for key, kinds in POWER_KEYS.items():
            if key in power and power[key] is not None:
                _require(power, key, kinds, "job.power")
    edgetpu = doc.get("edgetpu")
    if edgetpu is not None:
        if not isinstance(edgetpu, dict):
            raise SchemaError("job: field 'edgetpu' must be an object or null")
        for key, kinds in EDGETPU_KEYS.items():
            if key in edgetpu and edgetpu[key] is not None:
                _require(edgetpu, key, kinds, "job.edgetpu")
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


def validate_result(doc):
    """Check the parts of a result document the controller relies on."""
    where = "result"
    if not isinstance(doc, dict):
        raise SchemaError("result: expected a JSON object, got {}".format(type(doc).__name__))
    _require(doc, "schema", (int,), where)
    _require(doc, "job_id", (str,), where)
    status = _require(doc, "status", (str,), where)
    if status not in JOB_STATUSES:
        raise SchemaError("result: field 'status' must be one of {}, got {!r}".format(
            ", ".join(JOB_STATUSES), status))
    if status == "succeeded":
        timing = _require(doc, "timing", (dict,), where)
        samples = _require(timing, "samples_ns", (list,), "result.timing")
        # The store keeps samples as 64-bit integers: a larger one would fail there, not here.
        if not samples or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2 ** 63
                                  for s in samples):
            raise SchemaError("result.timing: field 'samples_ns' must be a non-empty list of integers "
                              "from 0 to 2**63-1")
        _require(timing, "warmup_runs", (int,), "result.timing")
        for field in ("init_ms", "first_inference_ms"):
            _finite(_require(timing, field, (int, float), "result.timing"), field, "result.timing")
        summary = _require(timing, "summary", (dict,), "result.timing")
        _require(summary, "count", (int,), "result.timing.summary")
        for field in SUMMARY_FIELDS:
            _finite(_require(summary, field, (int, float), "result.timing.summary"), field, "result.timing.summary")
    else:
        error = _require(doc, "error", (dict,), where)
        kind = _require(error, "kind", (str,), "result.error")
        if kind not in ERROR_KINDS:
            raise SchemaError("result.error: field 'kind' must be one of {}".format(", ".join(ERROR_KINDS)))
        _require(error, "message", (str,), "result.error")
    # The controller reads these with .get(): present, they must be objects.
    for field in ("runtime", "power", "conditions", "edgetpu"):
        if doc.get(field) is not None:
            _require(doc, field, (dict,), where)
    return doc


SUMMARY_FIELDS = ("mean_ms", "median_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "std_ms")


def _finite(value, field, where):
    # Comparisons, not math.isfinite: that overflows on a huge int; NaN fails every comparison.
    if not -1e300 < value < 1e300:
        raise SchemaError("{}: field '{}' must be a finite number, got {!r}".format(where, field, value))
    return value
