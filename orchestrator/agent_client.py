"""Talk to the agent on one host: deploy it, keep one ``serve`` process, send jobs.

One long-lived agent per host means a job costs one round trip, not a Python
start-up; the model is loaded inside the job and reported as its init time.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from typing_extensions import Self

from agent.linger import LISTENING_FIELD, REPLY_FIELD, REQUEST_FIELD
from agent.schema import SchemaError, validate_result

from .agent_linger import PROHIBITED, SOCKETS, daemon_name, linger_seconds, prohibited_mark, still_prohibited
from .deploy import agent_path, deploy_agent, ensure_file
from .errors import AgentTimeout, StreamRefused, TransportError
from .transport.base import AgentChannel, Transport

FACTS_TIMEOUT = 60.0
# A job may run up to its max_seconds of timing plus warm-up and model load.
JOB_SLACK_SECONDS = 120.0


class AgentSession:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.host = transport.host
        self._channel: AgentChannel | None = None
        self._ids = itertools.count(1)
        self.uploaded_agent = False
        self._models_present: set[str] = set()  # checked or sent on this session: no stat per job
        self.first_reply: dict[str, Any] = {}
        self.lingering = False  # the session is with a lingering agent, reached without starting one

    def open(self, first: dict[str, Any] | None = None, *, linger: bool = False) -> AgentSession:
        """Start the agent this controller would deploy; upload it first only if starting it fails for want of it.

        Asking first (an SFTP session and a ``stat``: three round trips and a process on the host) would
        cost every contact what only the first contact with a new agent needs. The first request (a
        ``ping`` unless ``first`` names another, e.g. ``facts``) is what shows the agent runs; its reply
        is kept in ``first_reply``, so a caller that wants facts pays no round trip for a ping.

        ``linger``: reach the host's lingering agent (agent/linger.py) if one runs, else start the agent and
        ask it to linger after this session. For short contacts (a check): a job's session gains nothing.
        """
        request = first or {"op": "ping"}
        seconds = linger_seconds(self.host) if linger else 0
        refused = False
        if seconds:
            name = daemon_name(self.host)
            reached = self._open_lingering(name, request)
            if reached:
                return self
            refused = reached is None
            if still_prohibited(SOCKETS.get(name)):
                seconds = 0  # its sshd would not let us reach a lingering agent: none is asked for
            else:
                # After a refused stream the agent is asked whether its daemon listens: if it does, the stream
                # was refused by sshd itself (AllowStreamLocalForwarding no), which OpenSSH does not tell apart.
                wish = {"name": name, "seconds": seconds, "python": self.host.python,
                        **({"probe": True} if refused else {})}
                request = {**request, REQUEST_FIELD: wish}
        self._start(request)
        socket_path = self.first_reply.get(REPLY_FIELD)
        if seconds and isinstance(socket_path, str):
            if refused and self.first_reply.get(LISTENING_FIELD) is True and not self._stream_opens(socket_path):
                SOCKETS.put(name, prohibited_mark())
            else:
                SOCKETS.put(name, socket_path)
        return self

    def _stream_opens(self, socket_path: str) -> bool:
        """Whether a stream to the daemon that listens now opens: refused again, sshd itself forbids it.

        Asked once, after a refusal: the daemon may not have listened yet when the stream was tried (one
        that the contact just before asked for binds its socket a moment after that contact ended).
        """
        try:
            self.transport.connect_socket(socket_path).close()
        except StreamRefused:
            return False
        except TransportError:
            pass  # the link, not the stream: nothing learnt, the next contact tries the stream again
        return True

    def _open_lingering(self, name: str, request: dict[str, Any]) -> bool | None:
        """True if the lingering agent answered ``request``; None if the stream to it was refused; False where
        there is none to reach, or it went away."""
        socket_path = SOCKETS.get(name)
        if socket_path is None or socket_path.startswith(PROHIBITED):
            return False
        try:
            # A host that cannot be reached fails here (TransportError), as a start would: no second wait.
            self._channel = self.transport.connect_socket(socket_path)
        except StreamRefused:
            SOCKETS.forget(name)
            return None
        if self._channel is None:
            return False
        try:
            self.first_reply = self.request(request, timeout=FACTS_TIMEOUT)
        except AgentTimeout:
            self.close()
            raise
        except TransportError:
            # It went stale (its agent or interpreter changed) and closed the socket, or it refused the request.
            self.close()
            SOCKETS.forget(name)
            return False
        self.lingering = True
        return True

    def _start(self, request: dict[str, Any]) -> None:
        remote = agent_path(self.transport)
        # A host that cannot be reached fails here, before any channel: asking it whether the agent is
        # there would only wait for it a second time.
        self._channel = self.transport.start([self.host.python, remote, "serve"])
        try:
            self.first_reply = self.request(request, timeout=FACTS_TIMEOUT)
        except AgentTimeout:
            self.close()
            raise  # it started and hangs: starting it again would only wait again
        except TransportError:
            self.close()
            # Present now, the agent may still have been missing when it was started: another host in the
            # inventory sharing this home, or another controller, uploaded it in between. One more start
            # tells that apart from an agent that fails for a reason of its own (whose message is raised).
            deployment = deploy_agent(self.transport)
            self.uploaded_agent = deployment.uploaded
            self._channel = self.transport.start([self.host.python, deployment.remote_path, "serve"])
            self.first_reply = self.request(request, timeout=FACTS_TIMEOUT)

    def request(self, message: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        if self._channel is None:
            raise TransportError(f"{self.host.name}: agent session is not open")
        request_id = next(self._ids)
        self._channel.send_line(json.dumps({**message, "id": request_id}))
        line = self._channel.read_line(timeout=timeout)
        try:
            reply = json.loads(line)
        except ValueError:
            raise TransportError(f"{self.host.name}: agent answered something that is not JSON: "
                                 f"{line[:200]!r}; {self._channel.stderr_tail()}") from None
        if not isinstance(reply, dict) or reply.get("id") != request_id:
            raise TransportError(f"{self.host.name}: agent answered out of turn: {line[:200]!r}")
        if not reply.get("ok"):
            raise TransportError(f"{self.host.name}: agent refused the request: {reply.get('error')}")
        return reply

    def facts(self) -> dict[str, Any]:
        return self.request({"op": "facts"}, timeout=FACTS_TIMEOUT)["facts"]

    def upload_model(self, local_path: Any, sha256: str) -> str:
        remote = f"{self.host.workdir}/models/{sha256}.tflite"
        if remote not in self._models_present:
            ensure_file(self.transport, remote, local_path)
            self._models_present.add(remote)
        return remote

    def run_job(self, job: dict[str, Any]) -> dict[str, Any]:
        timeout = float(job["timing"]["max_seconds"]) * 2 + JOB_SLACK_SECONDS
        result = self.request({"op": "run", "job": job}, timeout=timeout)["result"]
        try:
            return validate_result(result)
        except SchemaError as exc:
            raise TransportError(f"{self.host.name}: agent sent a malformed result: {exc}") from None

    def close(self) -> None:
        # No "exit" request: closing the channel ends the agent's stdin, and its serve loop ends there.
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
