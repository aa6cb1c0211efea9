"""One host's lane: hand jobs to the agent's spool, collect their results, survive the link.

The controller never waits on a benchmark over the link: it ``start``s the job
under the key ``<job id>.<attempt>`` and long-polls ``collect``. When the link
drops it reconnects with backoff and collects the same key, so a job that ran
on while the controller was away is not run again. A key that died on the
device (agent or board killed) becomes a new attempt, while attempts last.
Everything stored goes through the run's ``StoreWriter``.

While a job runs, the lane queues the next one on the agent (``start`` with
``after``), which starts it the moment the first is done; the first job's
result is stored while the next runs, and its ack rides on the next request.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.schema import SchemaError, read_result

from .agent_client import AgentSession
from .errors import FarmError, TransportError
from .lifecycle import RetryPolicy, classify_agent_error, classify_transport_error
from .store.journal import StoreWriter

COLLECT_WAIT = 5.0  # seconds the agent holds one collect open
ANSWER_SLACK = 30.0  # for a slow board to answer a start or an ack at all
# A collect unanswered this long after its wait means the link is dead (a cut cable sends no EOF):
# so a silent link is declared lost within COLLECT_WAIT + COLLECT_SLACK seconds.
COLLECT_SLACK = 10.0
JOB_SLACK_SECONDS = 120.0


@dataclass
class LaneJob:
    """A job as the lane needs it: its stored document, the model to upload, what was tried already."""

    job_id: int
    doc: dict[str, Any]
    model_path: Path
    model_sha256: str
    attempt: int = 0  # attempts already made
    keys: list[str] = field(default_factory=list)  # spool keys of earlier attempts, newest last
    budget_from: int = 0  # retries are counted from this attempt on: a resumed job gets a fresh budget
    label: Any = None  # what the observer is told about (a matrix Cell)
    # The store says "dispatched" under keys[-1], but no agent ever confirmed the start (resume):
    # a spool that does not know that key was never asked, so the same key is started, no failure counted.
    unconfirmed: bool = False
    predispatched: int | None = None  # the attempt whose "dispatched" the lane stored ahead of time
    queued: int | None = None  # the attempt already handed to the agent, to run after the job before it

    def key(self, attempt: int) -> str:
        return f"{self.doc['job_id']}.{attempt}"

    def uploads(self) -> list[tuple[Path, str]]:
        """Every model file the job needs on the device: its model, and a multi-model job's models or a
        pipeline's segments, which the registry caches beside it under their sha256 (resume finds them too)."""
        files = {self.model_sha256: self.model_path}
        for part in [*(self.doc.get("models") or []), *(self.doc.get("segments") or [])]:
            files.setdefault(part["sha256"], self.model_path.parent / f"{part['sha256']}.tflite")
        return [(path, sha) for sha, path in files.items()]

    def timeout(self) -> float:
        return float(self.doc["timing"]["max_seconds"]) * 2 + JOB_SLACK_SECONDS


@dataclass
class LaneStats:
    reconnects: int = 0
    attempts: int = 0
    retries: int = 0
    collected_late: int = 0  # results of keys started before a lost link or by a dead controller
    health_checks: int = 0  # reconnects forced because the host had turned unhealthy
    link_lost_at: list[float] = field(default_factory=list)
    detect_seconds: list[float] = field(default_factory=list)  # last good answer -> link declared lost


class SpoolClient:
    """The agent's spool ops on one session.

    ``unacked``: keys whose results are stored (database or fsynced journal) but not yet acked on the
    device. They ride on the next start or collect, and are dropped from the list once the agent
    has answered; a lost link leaves them for the next session.
    """

    def __init__(self, session: AgentSession, unacked: list[str] | None = None) -> None:
        self.session = session
        self.unacked = unacked if unacked is not None else []

    def _ask(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        riders = list(self.unacked)
        if riders:
            message["ack"] = riders
        reply = self.session.request(message, timeout=timeout)
        del self.unacked[:len(riders)]
        return reply

    def start(self, doc: dict[str, Any], key: str, holder: str, after: str | None = None) -> dict[str, Any]:
        message = {"op": "start", "job": doc, "key": key, "holder": holder}
        if after is not None:
            message["after"] = after
        return self._ask(message, ANSWER_SLACK)

    def collect(self, keys: list[str], wait: float) -> dict[str, Any]:
        return self._ask({"op": "collect", "keys": keys, "wait": wait}, wait + COLLECT_SLACK)

    def ack(self, keys: list[str]) -> dict[str, Any]:
        riders = list(self.unacked)
        reply = self.session.request({"op": "ack", "keys": [*riders, *keys]}, timeout=ANSWER_SLACK)
        del self.unacked[:len(riders)]
        return reply

    def ack_later(self, key: str) -> None:
        self.unacked.append(key)

    def flush(self) -> None:
        """Ack what is still pending (the lane's last job has no next request to ride on)."""
        if self.unacked:
            self.ack([])


class Retry(Exception):
    """This attempt failed for infrastructure reasons; ``failure`` says how."""

    def __init__(self, failure: str, reason: str) -> None:
        super().__init__(reason)
        self.failure, self.reason = failure, reason


class Lane:
    def __init__(self, link: Any, writer: StoreWriter, holder: str, policy: RetryPolicy,
                 connect: Callable[[Any], AgentSession], python_version: Callable[[], str | None],
                 on_state: Callable[[str], None] | None = None) -> None:
        self.link = link  # scheduler.HostLink: host, host_id, session, facts_id, error
        self.writer = writer
        self.holder = holder
        self.policy = policy
        self._connect = connect
        self._python = python_version
        self._say = on_state or (lambda text: None)
        self.stats = LaneStats()
        self._last_answer = time.monotonic()
        self._progress = 0.0  # when a start or collect last answered (a connect's ping does not count)
        self.unhealthy = False
        self.stop = threading.Event()
        self.unacked: list[str] = []  # stored results the device still keeps (see SpoolClient)
        # Store work that waits until the next job is started, so it is not on the path between two
        # jobs: a result's ingest. Its result stays in the device's spool (not acked) until then.
        self._after_start: list[Callable[[], None]] = []
        self._inherited: list[Callable[[], None]] = []  # deferred by earlier jobs of the lane
        self._streak = False  # a failure was stored since the host was last stored as ok

    # --- the link ----------------------------------------------------------------------------

    def _session(self) -> AgentSession:
        if self.link.session is not None and not self.unhealthy:
            return self.link.session
        self._drop()
        session = self._connect(self.link)  # a health check too: deploy, ping, facts
        self.link.session, self.link.error = session, None
        if self.unhealthy:
            self.stats.health_checks += 1
            self.writer.write("host_ok", host_id=self.link.host_id, reason="health check passed")
            self.unhealthy = False  # the streak stays open: the next job through clears the reason too
        self._last_answer = time.monotonic()
        self._say("ready")
        return session

    def _drop(self) -> None:
        if self.link.session is not None:
            session, self.link.session = self.link.session, None
            with contextlib.suppress(Exception):  # a dead link may fail to close in any way
                session.close()
                session.transport.close()

    def _host_failed(self, reason: str) -> None:
        self._streak = True
        if self.writer.write("host_failed", host_id=self.link.host_id, reason=reason,
                             unhealthy_after=self.policy.unhealthy_after):
            if not self.unhealthy:
                self._say(f"unhealthy: {reason}"[:80])
            self.unhealthy = True

    # --- one job -----------------------------------------------------------------------------

    def run(self, job: LaneJob, following: LaneJob | None = None) -> tuple[str, str]:
        """Drive one job to a terminal state; returns (status, detail).

        ``following``: the lane's next job, stored as dispatched and handed to the agent to run
        after this one (``_predispatch``), so nothing of the controller lies between the two. The
        store work this job's result needs is done once that next job has started (``settle``).
        """
        # What earlier jobs left is done once this one has started, or when it ends whatever happened;
        # what this job's own result needs waits for the next one.
        self._inherited, self._after_start = self._inherited + self._after_start, []
        try:
            return self._run(job, following)
        finally:
            self._settle_inherited()

    def _settle_inherited(self) -> None:
        while self._inherited:
            self._inherited.pop(0)()

    def settle(self) -> None:
        """Do all deferred store work now, oldest first."""
        self._settle_inherited()
        while self._after_start:
            self._after_start.pop(0)()

    def _run(self, job: LaneJob, following: LaneJob | None) -> tuple[str, str]:
        connect_failures = 0
        silent_links = 0  # links lost in a row without one answer in between
        while True:
            if self.stop.is_set():
                raise KeyboardInterrupt
            try:
                connected_at = time.monotonic()
                spool = SpoolClient(self._session(), self.unacked)
            except FarmError as exc:
                self.settle()
                failure = classify_transport_error(str(exc), during_job=False)
                connect_failures += 1
                self.link.error = str(exc)
                self._host_failed(str(exc))
                self._say(f"unreachable ({connect_failures}): {exc}"[:80])
                if failure == "host-key" or connect_failures > self.policy.retries:
                    return self._final(job, "failed", failure, str(exc))
                time.sleep(self.policy.delay(connect_failures + 1))
                continue
            connect_failures = 0
            try:
                return self._drive(spool, job, following)
            except TransportError as exc:
                self.settle()
                self.stats.link_lost_at.append(time.time())
                self.stats.detect_seconds.append(time.monotonic() - self._last_answer)
                self.stats.reconnects += 1
                self._drop()
                self._host_failed(f"link lost: {exc}")
                self._say(f"link lost: {exc}"[:80])
                # A link that connects but never answers is as dead as one that does not connect.
                silent_links = silent_links + 1 if self._progress <= connected_at else 1
                if silent_links > self.policy.retries:
                    return self._final(job, "failed", classify_transport_error(str(exc), during_job=True),
                                       str(exc))
                time.sleep(self.policy.delay(silent_links + 1))

    def _drive(self, spool: SpoolClient, job: LaneJob, following: LaneJob | None) -> tuple[str, str]:
        if job.keys:  # an earlier attempt may have finished, or still run, while we were away
            self.settle()
            outcome = self._await(spool, job, job.keys[-1], job.attempt, late=True)
            if outcome is not None:
                return outcome
        while True:
            job.attempt += 1
            key = job.key(job.attempt)
            job.keys.append(key)
            self.stats.attempts += 1
            if job.attempt > 1 and not job.unconfirmed:
                self.stats.retries += 1
                time.sleep(self.policy.delay(job.attempt))
            job.unconfirmed = False
            if job.predispatched != job.attempt:
                self.settle()
                for path, sha in job.uploads():
                    self.link.session.upload_model(path, sha)
                self.writer.write("dispatched", job_id=job.job_id, attempt=job.attempt, spool_key=key,
                                  job_doc=job.doc)
            job.predispatched = None
            queued, job.queued = job.queued == job.attempt, None
            try:
                if not queued:  # else the agent started it when the job before it was done
                    self._start(spool, job, key)
            except Retry as retry:
                self.settle()
                outcome = self._retry(job, retry)
            else:
                self._settle_inherited()  # the previous job's ingest, now that this one runs
                self.writer.write("running", job_id=job.job_id)
                if following is not None:
                    self._predispatch(following, spool, key)
                outcome = self._await(spool, job, key, job.attempt, late=False)
            if outcome is not None:
                return outcome

    def _predispatch(self, job: LaneJob, spool: SpoolClient, current: str) -> None:
        """Store ``job`` as dispatched and hand it to the agent to run after ``current``, while that runs.

        The agent starts it the moment ``current`` is done, so no round trip to the controller lies
        between two jobs on the board. Were the controller to die after the store write and before
        the agent has the job, a resume finds the key unknown to the spool and starts that same key:
        nothing was ever sent under it.
        """
        if job.keys or job.predispatched is not None or self.link.session is None:
            return  # a job with earlier attempts is looked for in the spool first
        attempt = job.attempt + 1
        try:
            for path, sha in job.uploads():
                self.link.session.upload_model(path, sha)
        except FarmError:
            return  # the link is in trouble: the current job's collect finds out, and the job goes the usual way
        self.writer.write("dispatched", job_id=job.job_id, attempt=attempt, spool_key=job.key(attempt),
                          job_doc=job.doc)
        job.predispatched = attempt
        reply = spool.start(job.doc, job.key(attempt), self.holder, after=current)
        self._last_answer = self._progress = time.monotonic()
        if reply.get("state") in ("queued", "started", "running", "finished"):
            job.queued = attempt

    def _start(self, spool: SpoolClient, job: LaneJob, key: str) -> None:
        deadline = time.monotonic() + job.timeout()
        while True:
            reply = spool.start(job.doc, key, self.holder)
            self._last_answer = self._progress = time.monotonic()
            if reply.get("state") != "busy":
                return
            # Another controller's benchmark holds the board: wait for it, it is not our failure.
            if time.monotonic() > deadline:
                raise Retry("lock-busy", f"host busy with {reply.get('holder')}'s job {reply.get('busy_key')}")
            self._say(f"waiting: host busy with {reply.get('holder')}"[:80])
            time.sleep(min(2.0, max(0.2, float(reply.get("expires_in") or 1.0))))

    def _await(self, spool: SpoolClient, job: LaneJob, key: str, attempt: int,
               *, late: bool) -> tuple[str, str] | None:
        """Wait for ``key``; a final (status, detail), or None when a new attempt is needed."""
        deadline = time.monotonic() + job.timeout()
        while True:
            if self.stop.is_set():  # the run is interrupted: the job runs on in the spool for --resume
                raise KeyboardInterrupt
            reply = spool.collect([key], COLLECT_WAIT)
            self._last_answer = self._progress = time.monotonic()
            if key in reply["finished"]:
                if late:
                    self.stats.collected_late += 1
                return self._finished(spool, job, key, attempt, reply["finished"][key])
            if key in reply["running"]:
                if time.monotonic() > deadline:
                    return self._retry(job, Retry("agent-died", f"no result for {key} in {job.timeout():.0f} s"))
                continue
            if late and job.unconfirmed and key in reply["unknown"]:
                # Stored as dispatched, never started: start that same key now (``_drive``).
                job.attempt -= 1
                job.keys.pop()
                return None
            job.unconfirmed = False
            # dead or unknown: the process that ran it is gone without a result.
            spool.ack([key])
            why = "the job's process died on the device" if key in reply["dead"] \
                else "the device's spool does not know the job (agent or board lost it)"
            return self._retry(job, Retry("agent-died", f"{key}: {why}"))

    def _retry(self, job: LaneJob, retry: Retry) -> tuple[str, str] | None:
        self._host_failed(retry.reason)
        if not self.policy.may_retry(retry.failure, job.attempt - job.budget_from):
            return self._final(job, "failed", retry.failure, retry.reason)
        self.writer.write("requeue", job_id=job.job_id, failure=retry.failure, reason=retry.reason)
        return None

    def _finished(self, spool: SpoolClient, job: LaneJob, key: str, attempt: int,
                  result: Any) -> tuple[str, str] | None:
        try:
            view = read_result(result)
        except SchemaError as exc:
            spool.ack([key])
            return self._retry(job, Retry("agent-error", f"agent sent a malformed result: {exc}"))
        if view.spool_key not in (None, key) or view.job_id != job.doc["job_id"]:
            spool.ack([key])
            return self._retry(job, Retry("agent-error", f"{key} holds the result of another job "
                                                         f"({view.job_id})"))
        if view.succeeded:
            facts_id, python = self.link.facts_id, self._python()

            def store() -> None:
                self.writer.write("ingest", job_id=job.job_id, attempt=attempt, spool_key=key,
                                  facts_id=facts_id, python_version=python, result=view.doc)
                spool.ack_later(key)  # only now: the result is in the database or the fsynced journal
                if self._streak:
                    self.writer.write("host_ok", host_id=self.link.host_id)
                    self._streak = False

            self._after_start.append(store)
            return "succeeded", f"median {view.median_ms:.2f} ms"
        kind, message = view.error_kind or "", view.error_message or ""
        failure = classify_agent_error(kind, message)
        if view.status == "skipped":
            outcome = self._final(job, "skipped", failure, message)
        elif kind == "infrastructure":
            outcome = self._retry(job, Retry(failure, message))
        else:
            outcome = self._final(job, "failed", failure, message)
        spool.ack_later(key)  # after the store has what the result said
        return outcome

    def flush_acks(self) -> None:
        """Store what is deferred, then ack the results stored since the lane's last request.

        A dead link leaves them on the device: a later contact or ``--resume`` acks nothing twice.
        """
        self.settle()
        if self.unacked and self.link.session is not None:
            with contextlib.suppress(FarmError):
                SpoolClient(self.link.session, self.unacked).flush()

    def _final(self, job: LaneJob, status: str, failure: str | None, reason: str) -> tuple[str, str]:
        self.writer.write("finish", job_id=job.job_id, status=status, failure=failure, reason=reason)
        return status, reason
