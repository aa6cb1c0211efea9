"""Command line of the agent: ``facts``, ``run JOB``, ``serve``.

``serve`` is what the controller uses: one long-lived process per host that
reads JSON requests line by line on stdin and answers each with one JSON line
on stdout, so a job costs a round trip instead of a Python start-up.
"""

import json
import sys

from . import __version__, contact

# The benchmark and the spool are imported by the ops that use them: a ``serve`` that only answers
# ping and facts (``farm inventory check``) starts without them.

USAGE = """usage: farm-agent COMMAND
  facts         print this device's facts as one JSON document
  run JOB       run the job in file JOB (or - for stdin), print one JSON result
  serve         answer JSON requests, one per line, on stdin/stdout
                (ops: ping, facts, run, start, collect, ack, exit;
                start and collect may carry an 'ack' list too;
                start may name a running key to run 'after')
  spool-run KEY run the spooled job KEY (what op start runs, detached)
  linger NAME SECONDS [LAUNCHER]
                serve sessions on a Unix socket until SECONDS pass without one
                (what a serve session whose request asked to linger starts)
  version       print the agent version
"""


def _print_json(doc, stream=None):
    stream = stream or sys.stdout
    stream.write(json.dumps(doc, sort_keys=True) + "\n")
    stream.flush()


def _read_job(source):
    if source == "-":
        text = sys.stdin.read()
    else:
        with open(source) as handle:
            text = handle.read()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SystemExit("farm-agent: job {} is not valid JSON: {}".format(source, exc))


def handle(request):
    """Answer one serve-mode request; never raises for a bad request."""
    if not isinstance(request, dict):
        return {"ok": False, "error": "request must be a JSON object"}
    op = request.get("op")
    reply = {"id": request.get("id"), "ok": True}
    if op == "ping":
        reply["version"] = __version__
        # Every contact undoes a power mode a killed job left behind, and says so.
        reply["power_restored"] = contact.take_reports()
    elif op == "facts":
        reply["facts"] = contact.facts()
    elif op == "run":
        from .bench import run_job

        reply["result"] = run_job(request.get("job"))
    elif op in ("start", "collect", "ack"):
        from . import spool

        try:
            reply.update(_spool_op(op, request))
        except spool.SpoolError as exc:
            reply = {"id": request.get("id"), "ok": False, "error": "{}: {}".format(op, exc)}
    else:
        reply = {"id": request.get("id"), "ok": False, "error": "unknown op {!r}".format(op)}
    return reply


def _spool_op(op, request):
    from . import spool

    if op == "ack":
        spool.start_queued()
        return spool.ack(request.get("keys"))
    # A start or collect may carry the acks of results the controller has stored since its last
    # request: they ride along instead of costing a round trip each.
    acked = spool.ack(request["ack"]) if request.get("ack") is not None else None
    if op == "start":
        reply = spool.start(request.get("job"), request.get("key"), str(request.get("holder") or "?"),
                            request.get("lease"), after=request.get("after"))
    else:
        reply = spool.collect(request.get("keys"), request.get("wait") or 0.0)
    if acked is not None:
        reply["ack"] = acked
    return reply


def serve(stdin, stdout):
    contact.restore_pending()  # reported by the first ping or facts
    offer = None
    try:
        offer = _serve_lines(stdin, stdout)
    finally:
        if offer is not None:
            offer.fulfil()  # after the last answer: the controller is not kept waiting for a daemon's start


def _serve_lines(stdin, stdout):
    """The serve loop; returns the lingering daemon a request asked for (agent/linger.py), if any."""
    offer = None
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
        except ValueError as exc:
            _print_json({"id": None, "ok": False, "error": "bad JSON: {}".format(exc)}, stdout)
            continue
        if isinstance(request, dict) and request.get("op") == "exit":
            _print_json({"id": request.get("id"), "ok": True}, stdout)
            return offer
        try:
            reply = handle(request)
        except Exception as exc:  # noqa: BLE001 - the session must survive one bad job
            reply = {"id": request.get("id"), "ok": False,
                     "error": "{}: {}".format(type(exc).__name__, exc)}
        if isinstance(request, dict) and "linger" in request and reply.get("ok"):
            from . import linger

            offer = offer or linger.Offer()
            socket_path = offer.accept(request)
            if socket_path is not None:
                reply[linger.REPLY_FIELD] = socket_path
                if request[linger.REQUEST_FIELD].get("probe"):
                    reply[linger.LISTENING_FIELD] = linger.listening(socket_path)
        _print_json(reply, stdout)
    return offer


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    command = argv[0]
    if command == "facts":
        _print_json(contact.facts())
    elif command == "run" and len(argv) == 2:
        from .bench import run_job

        _print_json(run_job(_read_job(argv[1])))
    elif command == "spool-run" and len(argv) == 2:
        from . import spool

        return spool.run_detached(argv[1])
    elif command == "serve":
        serve(sys.stdin, sys.stdout)
    elif command == "linger" and len(argv) in (3, 4):
        from . import linger

        try:
            seconds = int(argv[2])
        except ValueError:
            seconds = 0
        return linger.run_daemon(argv[1], seconds, argv[3] if len(argv) == 4 else None)
    elif command == "version":
        sys.stdout.write(__version__ + "\n")
    else:
        sys.stderr.write(USAGE)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
