"""Pipelined segments: one interpreter per segment, each stage a thread, stages fed through queues.

The semantics are those of pycoral's ``PipelinedModelRunner`` (pycoral/pipeline/
pipelined_model_runner.py, read, not copied): the interpreters are given in order; the inputs of
interpreter K must be among the first interpreter's inputs and the outputs of the ones before it,
matched by tensor name; ``push(tensors)`` hands the first segment one inference's inputs, ``push([])``
says no more will come, and ``pop()`` blocks for the next result, in push order, or returns None once
the pipeline has drained. Each segment runs on its own Edge TPU (or the CPU), so while segment 2 works
on inference i, segment 1 already works on i+1: throughput is the slowest stage's, not the sum.

Written for Python 3.6 (threads and ``queue.Queue``): the agent runs on JetPack 4 boards.
"""

import queue
import threading
import time

try:
    from time import perf_counter_ns as clock_ns  # novermin
except ImportError:  # Python 3.6 lacks perf_counter_ns
    def clock_ns():
        return int(time.perf_counter() * 1e9)

_END = object()  # what push([]) sends down the stages


class PipelineError(Exception):
    """A stage failed (its invoke raised); the message names the segment."""


class _Failed(object):
    def __init__(self, stage, error):
        self.stage = stage
        self.error = error


def _names(details):
    return {d["name"] for d in details}


class PipelineRunner(object):
    """Runs ``interpreters`` (tensors allocated) as a pipeline; one thread per segment."""

    def __init__(self, interpreters, queue_size=0):
        if not interpreters:
            raise ValueError("a pipeline needs at least one interpreter")
        available = _names(interpreters[0].get_input_details())
        for index, interpreter in enumerate(interpreters):
            wanted = _names(interpreter.get_input_details())
            missing = sorted(wanted - available)
            if missing:
                raise ValueError("segment {} needs tensor(s) {} that no earlier segment outputs".format(
                    index, ", ".join(missing)))
            available |= _names(interpreter.get_output_details())
        self.interpreters = list(interpreters)
        self._input_names = [d["name"] for d in interpreters[0].get_input_details()]
        self._output_names = [d["name"] for d in interpreters[-1].get_output_details()]
        # queues[K] feeds stage K; queues[-1] holds results for pop(). 0 = unbounded, as pycoral's default.
        self._queues = [queue.Queue(queue_size) for _ in range(len(interpreters) + 1)]
        self.invoke_ns = [[] for _ in interpreters]  # each stage's own invoke times
        self._closed = False
        self._threads = []
        for index in range(len(interpreters)):
            thread = threading.Thread(target=self._stage, args=(index,), name="farm-segment-{}".format(index))
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def _stage(self, index):
        interpreter = self.interpreters[index]
        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
        source, sink = self._queues[index], self._queues[index + 1]
        while True:
            item = source.get()
            if item is _END or isinstance(item, _Failed):
                sink.put(item)
                return
            pushed_ns, tensors = item
            try:
                for detail in inputs:
                    interpreter.set_tensor(detail["index"], tensors[detail["name"]])
                started = clock_ns()
                interpreter.invoke()
                self.invoke_ns[index].append(clock_ns() - started)
                carried = dict(tensors)  # a later segment may read any earlier segment's output
                for detail in outputs:
                    carried[detail["name"]] = interpreter.get_tensor(detail["index"])
            except Exception as exc:  # noqa: BLE001 - the runtime raises ValueError/RuntimeError, any is fatal
                sink.put(_Failed(index, exc))
                return
            sink.put((pushed_ns, carried))

    def push(self, tensors):
        """Queue one inference's inputs (in the first segment's input order); [] ends the stream."""
        if self._closed:
            return False
        if not tensors:
            self._closed = True
            self._queues[0].put(_END)
            return True
        if len(tensors) != len(self._input_names):
            raise ValueError("expected {} input tensor(s), got {}".format(len(self._input_names), len(tensors)))
        self._queues[0].put((clock_ns(), dict(zip(self._input_names, tensors))))
        return True

    def pop_timed(self):
        """(outputs, latency in ns from push to pop) of the next inference, or None when drained."""
        item = self._queues[-1].get()
        if item is _END:
            self._queues[-1].put(_END)  # later pops see the end too
            return None
        if isinstance(item, _Failed):
            self._queues[-1].put(item)
            raise PipelineError("segment {} failed: {}".format(item.stage, " ".join(str(item.error).split())))
        pushed_ns, tensors = item
        return [tensors[name] for name in self._output_names], clock_ns() - pushed_ns

    def pop(self):
        popped = self.pop_timed()
        return None if popped is None else popped[0]

    def close(self):
        """End the stream and drain what is left; the stage threads exit."""
        if not self._closed:
            self.push([])
        while True:
            try:
                if self.pop_timed() is None:
                    break
            except PipelineError:
                break
        for thread in self._threads:
            thread.join(5.0)


def time_pipeline(runner, inputs, timing, meter=None):
    """Steady-state timing: ``len(interpreters)`` inferences in flight, one pushed for each one popped.

    Warm-up as the single-model loop does (runs and seconds), then at least ``min_runs`` results and
    ``min_seconds``. Returns (latencies in ns, first inference ns, warm-up runs, warm-up s, timed s,
    throughput in inferences per second between the first and the last result of the timed window).
    ``meter``: an ``interference.Meter``, started right before the timed window and stopped right after.
    """
    depth = len(runner.interpreters)
    first_started = clock_ns()
    runner.push(inputs)
    _pop(runner)
    first_ns = clock_ns() - first_started
    warmup_runs, warmup_started = 1, first_started
    in_flight = 0
    while (warmup_runs < timing["warmup_min_runs"]
           or clock_ns() - warmup_started < timing["warmup_min_seconds"] * 1e9):
        if clock_ns() - warmup_started > timing["max_seconds"] * 1e9:
            break
        while in_flight < depth:
            runner.push(inputs)
            in_flight += 1
        _pop(runner)
        in_flight -= 1
        warmup_runs += 1
    warmup_ns = clock_ns() - warmup_started
    latencies = []
    if meter is not None:
        meter.start()
    timed_started = clock_ns()
    first_done = last_done = None
    while True:
        elapsed = clock_ns() - timed_started
        enough = len(latencies) >= timing["min_runs"] and elapsed >= timing["min_seconds"] * 1e9
        if latencies and (enough or elapsed >= timing["max_seconds"] * 1e9):
            break
        while in_flight < depth:
            runner.push(inputs)
            in_flight += 1
        _, latency = _pop(runner)
        in_flight -= 1
        latencies.append(latency)
        last_done = clock_ns()
        if first_done is None:
            first_done = last_done
    timed_seconds = (clock_ns() - timed_started) / 1e9
    if meter is not None:
        meter.stop()
    # Results that warm-up pushed are still in flight at the start: they belong to the steady state.
    span = (last_done - first_done) / 1e9 if last_done is not None and first_done is not None else 0.0
    throughput = (len(latencies) - 1) / span if span > 0 and len(latencies) > 1 else len(latencies) / timed_seconds
    return latencies, first_ns, warmup_runs, warmup_ns / 1e9, timed_seconds, throughput


def _pop(runner):
    popped = runner.pop_timed()
    if popped is None:
        raise PipelineError("the pipeline ended before its results were read")
    return popped
