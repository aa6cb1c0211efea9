"""The agent's one way to build a result document, one sub-document per step of a job.

``bench.run_job`` fills it as the job goes; what it builds is what
``result_schema.validate_result`` checks on the controller.
"""

from .result_schema import RESULT_SCHEMA_VERSION


class ResultBuilder(object):
    """A result document under construction; ``finish`` returns it."""

    def __init__(self, job_id, started_at):
        self.doc = {"schema": RESULT_SCHEMA_VERSION, "job_id": job_id, "started_at": started_at}

    def set_job_id(self, job_id):
        self.doc["job_id"] = job_id

    def power_restored(self, reports):
        """What the agent restored on this contact for earlier jobs that were killed (``contact.take_reports``)."""
        if reports:
            self.doc["power_restored"] = reports

    def conditions_before(self, snapshot):
        self.doc["conditions"] = {"before": snapshot}

    def power_requested(self, spec):
        if spec:
            self.doc["power"] = {"requested": spec}

    def power_applied(self, settings):
        """``power.applied``'s live settings: kept by reference, since it fills in "restore" on exit."""
        self.doc["power"] = settings

    def devices(self, documents):
        """The sub-documents a backend's ``select_device`` returned (``{"edgetpu": {...}}``)."""
        self.doc.update(documents)

    def backend(self, described):
        """What ran (``result_schema.backend_document``), also as version 1's ``runtime`` for older readers."""
        self.doc["backend"] = described
        self.doc["runtime"] = {"name": described.get("runtime"), "version": described.get("version")}

    def conditions_during(self, summary):
        self.doc["conditions"]["during"] = summary

    def gpu(self, summary):
        """The GPU's clock, load, rail power and peaks during the run (``gpu_conditions.summarize``), if any."""
        if summary is not None:
            self.doc["gpu"] = summary

    def gpu_timing(self, document):
        """A GPU backend's own timings (``gpu_timing.document``: copies, engine build, launch mode), if any."""
        if document is not None:
            self.doc["gpu_timing"] = document

    def timing(self, timing, init_ns):
        """The timing loop's part (``bench.time_invokes``) with the model's load time."""
        timing["init_ms"] = init_ns / 1e6
        self.doc["timing"] = timing

    def interference(self, document):
        """What else ran on the benchmark's CPUs during the timed loop (``interference.Meter.document``)."""
        self.doc["interference"] = document

    def validity(self, document):
        """The validity rules the result broke (``validity.check``), once the conditions after are in."""
        self.doc["validity"] = document

    def multi_model(self, document):
        """A multi-model job's part (``multimodel.measure_models``): placement, each model's latency, throughput."""
        self.doc["multi_model"] = document

    def pipeline(self, document):
        """A pipelined-segment job's part (``multimodel.measure_pipeline``): segments, throughput."""
        self.doc["pipeline"] = document

    def concurrency(self, document):
        """Which device locks the job held, its timed window (wall clock), and the jobs that ran beside it."""
        self.doc["concurrency"] = document

    def succeeded(self):
        self.doc["status"] = "succeeded"

    def failed(self, kind, message, status="failed"):
        self.doc["status"] = status
        self.doc["error"] = {"kind": kind, "message": message}

    def has_conditions(self):
        return "conditions" in self.doc

    def conditions_after(self, snapshot):
        """The snapshot after the run; a board that throttled at any of the three readings is marked."""
        conditions = self.doc["conditions"]
        conditions["after"] = snapshot
        during = conditions.get("during") or {}
        self.doc["throttled"] = bool(during.get("throttled") or conditions["before"]["throttled"]
                                     or snapshot["throttled"])

    def agent_work(self, parts):
        """ms the agent spent on each part of the job around its benchmark (result_schema.AGENT_WORK_PARTS)."""
        self.doc["agent_work"] = parts

    def finish(self, finished_at):
        self.doc["finished_at"] = finished_at
        return self.doc


def timing_document(samples_ns, summary, first_inference_ms, warmup_runs, warmup_seconds, timed_seconds,
                    cut_short=False):
    """The ``timing`` sub-document the timing loop fills: every sample in ns, their summary in ms.

    ``init_ms`` joins it in ``ResultBuilder.timing``, since the backend, not the loop, times the load.
    ``cut_short``: ``max_seconds`` stopped the loop before its minimums were met.
    """
    return {
        "cut_short": cut_short,
        "first_inference_ms": first_inference_ms,
        "warmup_runs": warmup_runs,
        "warmup_seconds": warmup_seconds,
        "timed_seconds": timed_seconds,
        "samples_ns": samples_ns,
        "summary": summary,
    }


def with_spool_key(result, key):
    """The result as the spool keeps it: stamped with the key the controller asked for it by."""
    result["spool_key"] = key
    return result
