"""Hostile input: inventories, matrix files, job JSON and agent output.

Random and hostile values (shell metacharacters, unicode, huge numbers, wrong
types, truncated files, YAML alias bombs) must give an error that names the
file, line and field, never a traceback, and whatever is accepted must reach a
shell only quoted. Example counts stay modest: the whole suite has a time budget.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.schema import SchemaError, make_job, validate_job, validate_result
from orchestrator.errors import InputError
from orchestrator.inventory import Host, parse_inventory
from orchestrator.matrix import parse_matrix
from orchestrator.transport.ssh import SshTransport
from orchestrator.yamlfile import parse_yaml

FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SHA = "ab" * 32

HOSTILE_TEXT = ["$(reboot)", "`id`", "a;rm -rf ~", "x|y", "a b", "it's", '"q"', "*", "~", "--help", "-oProxyCommand=x",
                "../../etc/passwd", "name\n", "\x00", "é", "名前", "\u202etxt", "a\\b", "$HOME", "%s", "{x}", ""]
hostile_text = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=30))
huge_numbers = st.one_of(st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
                         st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, -1, 2 ** 63, 65536]))
any_scalar = st.one_of(hostile_text, huge_numbers, st.booleans(), st.none())
any_value = st.recursive(any_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(hostile_text, inner, max_size=3)),
                         max_leaves=6)

HOST_FIELDS = ["name", "address", "port", "user", "identity_file", "python", "board", "transport", "tags", "env",
               "workdir", "power_modes", "usb_ports"]


def good_host(index: int) -> dict[str, Any]:
    return {"name": f"h{index}", "address": f"10.0.0.{index + 1}", "port": 22, "board": "rpi4",
            "python": "/usr/bin/python3", "tags": ["lab-a"], "env": {"FARM_X": "1"}}


def dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def assert_names_field(error: InputError, path: str, fields: set[str]) -> None:
    """The error a user sees: the file, a line, and the field (or its parent) by name."""
    text = str(error)
    assert text.startswith(path), text
    assert "Traceback" not in text
    if error.field is not None:
        assert error.field.split(".")[0] in fields, (error.field, text)
        assert f"field '{error.field}'" in text
        assert error.line is not None, text


# -- inventories ----------------------------------------------------------------------------------------------

@FEW
@given(field=st.sampled_from(HOST_FIELDS), value=any_value, index=st.integers(0, 2))
def test_a_hostile_host_field_is_refused_by_name_or_accepted_safely(field: str, value: Any, index: int) -> None:
    hosts = [good_host(i) for i in range(3)]
    hosts[index][field] = value
    path = "lab.yaml"
    try:
        inventory = parse_inventory(parse_yaml(dump({"hosts": hosts}), path))
    except InputError as error:
        assert_names_field(error, path, set(HOST_FIELDS) | {"hosts"})
        if error.field:
            # The line is the bad host's own field (or the host itself when the field is missing).
            assert error.line is not None and error.line > 1 + 7 * index - 1
        return
    for host in inventory.hosts:
        assert_safe_host(host)


def assert_safe_host(host: Host) -> None:
    """What an accepted host carries can reach a remote shell only as quoted words."""
    for text in [host.name, host.address, host.python, host.workdir, *host.tags, *(v for _, v in host.env)]:
        assert not any(ord(c) < 32 or ord(c) == 127 for c in text), text
    transport = SshTransport(host)
    argv = [host.python, f"{host.workdir}/agent.pyz", "serve", "$(id)"]
    line = transport.command_line(argv)
    words = shlex.split(line)
    expected_env = ["env", *(f"{k}={v}" for k, v in host.env)] if host.env else []
    assert words == expected_env + argv


@FEW
@given(data=st.data())
def test_a_truncated_or_mangled_inventory_never_crashes(data: st.DataObject) -> None:
    text = dump({"defaults": {"user": "farm"}, "hosts": [good_host(i) for i in range(3)]})
    cut = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.sampled_from(["", ":", "- ", "[", "{", "&a [*a]", "!!python/object:os.system x", "\t", "'"]))
    try:
        parse_inventory(parse_yaml(text[:cut] + junk, "cut.yaml"))
    except InputError as error:
        assert str(error).startswith("cut.yaml"), str(error)


@pytest.mark.parametrize("text, words", [
    ("hosts: &h [{name: a, address: b, tags: *h}]", "alias refers to a value that contains it"),
    ("a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(7)),
     "expands to more than"),
    ("hosts: " + "[" * 3000, "nested too deeply"),
    # Tags are never constructed (SafeLoader's rules, and collections are built as plain lists): no os.system.
    ("hosts:\n  - name: ok\n    address: !!python/object/apply:os.system [id]\n", "field 'address': got ['id']"),
    ("hosts:\n  - name: ok\n    address: \"a\\0b\"\n", "field 'address': contains the control character"),
    ("hosts:\n  - name: \"nano\\n\"\n    address: a\n", "field 'name': contains the control character '\\n'"),
    ("hosts:\n  - name: a\n    address: b\n    env: {\"X\\n\": y}\n", "field 'env'"),
])
def test_hostile_yaml_gives_a_located_error(text: str, words: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_inventory(parse_yaml(text, "evil.yaml"))
    assert words in str(caught.value)
    assert str(caught.value).startswith("evil.yaml")


# -- matrix files ---------------------------------------------------------------------------------------------

MATRIX_FIELDS = ["models", "delegates", "threads", "hosts", "tags", "timing", "power_modes", "usb_ports",
                 "regression", "description"]
TIMING_KEYS = ["warmup_min_runs", "warmup_min_seconds", "min_runs", "min_seconds", "max_seconds"]


@FEW
@given(field=st.sampled_from(MATRIX_FIELDS + ["timing.min_runs", "timing.max_seconds", "regression.alpha"]),
       value=any_value)
def test_a_hostile_matrix_field_is_refused_by_name_or_accepted_sanely(field: str, value: Any) -> None:
    entry: dict[str, Any] = {"models": ["conv_stack-l1"], "threads": [1, 2], "timing": {"min_runs": 5}}
    if "." in field:
        parent, child = field.split(".")
        entry[parent] = {child: value}
    else:
        entry[field] = value
    try:
        spec = parse_matrix(parse_yaml(dump({"matrices": {"m": entry}}), "m.yaml"), "m")
    except InputError as error:
        assert_names_field(error, "m.yaml", set(MATRIX_FIELDS))
        return
    # Accepted: timing and regression numbers are finite and bounded, threads positive and sane.
    for number in [*spec.timing.values(), *spec.regression.values()]:
        assert math.isfinite(number) and 0 <= number <= 10 ** 7
    assert spec.threads is None or all(1 <= t <= 256 for t in spec.threads)
    assert all(isinstance(m, str) and m for m in spec.models)


@FEW
@given(cut=st.integers(0, 200))
def test_a_truncated_matrix_file_never_crashes(cut: int) -> None:
    text = dump({"matrices": {"m": {"models": ["family:conv_stack"], "delegates": ["cpu"], "threads": [1, 2],
                                    "timing": {"min_runs": 5, "max_seconds": 30}}}})
    try:
        parse_matrix(parse_yaml(text[:cut], "m.yaml"), "m")
    except InputError as error:
        assert str(error).startswith("m.yaml")


# -- job JSON (what the agent receives) -----------------------------------------------------------------------

JOB_PATHS = ["schema", "job_id", "model", "model.path", "model.sha256", "delegate", "threads", "timing",
             "timing.min_runs", "timing.max_seconds", "options", "power", "power.name", "power.nvpmodel",
             "edgetpu", "edgetpu.port"]


def set_path(doc: dict, path: str, value: Any) -> None:
    keys = path.split(".")
    for key in keys[:-1]:
        if not isinstance(doc.get(key), dict):
            doc[key] = {}
        doc = doc[key]
    doc[keys[-1]] = value


@FEW
@given(path=st.sampled_from(JOB_PATHS), value=any_value)
def test_a_hostile_job_field_is_refused_by_name(path: str, value: Any) -> None:
    job = make_job("run-1.job-1", "models/x.tflite", SHA, power={"name": "5W", "nvpmodel": 1})
    set_path(job, path, value)
    # Through JSON, as the agent gets it (NaN and Infinity survive json.dumps).
    job = json.loads(json.dumps(job))
    try:
        checked = validate_job(job)
    except SchemaError as error:
        assert path.split(".")[-1] in str(error) or path.split(".")[0] in str(error), (path, str(error))
        return
    for number in checked["timing"].values():
        assert math.isfinite(number) and 0 <= number <= 10 ** 7
    assert 1 <= checked["threads"] <= 256 and isinstance(checked["options"], dict)


def test_the_agent_answers_hostile_requests_without_dying(tmp_path: Path) -> None:
    """The serve loop gets junk, hostile jobs and spool keys, and keeps answering one JSON line each."""
    lines = ["not json", "[]", json.dumps({"op": "run", "job": {**make_job("j", "m", SHA), "timing": "fast"}}),
             json.dumps({"op": "run", "job": {**make_job("j", "$(id)", SHA), "options": [1]}}),
             json.dumps({"op": "run", "job": {**make_job("j", "m", SHA), "threads": 10 ** 30}}),
             '{"op": "run", "job": {"schema": 1, "job_id": "j", "timing": {"min_runs": NaN}}}',
             json.dumps({"op": "start", "key": "../../etc/x", "job": make_job("j", "m", SHA)}),
             json.dumps({"op": "start", "key": "k/../../x", "job": make_job("j", "m", SHA)}),
             json.dumps({"op": "collect", "keys": "*"}), json.dumps({"op": "$(reboot)"}),
             json.dumps({"op": "ping", "id": 99})]
    env = {**os.environ, "HOME": str(tmp_path), "FARM_DEVICE_ROOT": str(tmp_path / "root")}
    done = subprocess.run([sys.executable, "-m", "agent", "serve"], input="\n".join(lines) + "\n",
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
                          check=False)
    assert "Traceback" not in done.stderr, done.stderr
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(replies) == len(lines)
    assert replies[-1] == {**replies[-1], "id": 99, "ok": True}
    runs = [r for r in replies[2:6]]
    for reply in runs:  # a bad job is a failed result naming the field, not a crashed agent
        assert reply["ok"] and reply["result"]["status"] == "failed", reply
    messages = [r["result"]["error"]["message"] for r in runs]
    assert "timing" in messages[0] and "options" in messages[1] and "threads" in messages[2]
    assert "timing" in messages[3] or "job_id" in messages[3] or "model" in messages[3]
    for reply in replies[6:8]:  # spool keys never become paths outside the spool
        assert not reply["ok"] and "key" in reply["error"], reply
    assert not (tmp_path / "etc").exists()


def test_a_spool_key_with_a_trailing_newline_is_refused() -> None:
    from agent.spool import SpoolError, check_key

    with pytest.raises(SpoolError, match="key"):
        check_key("k\n")


# -- agent output (what the controller receives) --------------------------------------------------------------

def good_result() -> dict[str, Any]:
    summary = {"count": 3, "mean_ms": 1.0, "median_ms": 1.0, "p90_ms": 1.2, "p99_ms": 1.3, "min_ms": 0.9,
               "max_ms": 1.3, "std_ms": 0.1}
    return {"schema": 1, "job_id": "j", "status": "succeeded", "runtime": {"name": "tflite_runtime"},
            "timing": {"samples_ns": [900000, 1000000, 1300000], "summary": summary, "init_ms": 2.0,
                       "first_inference_ms": 1.5, "warmup_runs": 1}}


RESULT_PATHS = ["schema", "job_id", "status", "runtime", "power", "conditions", "edgetpu", "timing",
                "timing.samples_ns", "timing.summary", "timing.init_ms", "timing.first_inference_ms",
                "timing.warmup_runs", "timing.summary.count", "timing.summary.median_ms", "timing.summary.p99_ms"]


@FEW
@given(path=st.sampled_from(RESULT_PATHS), value=any_value)
def test_a_malformed_agent_result_is_refused_before_it_reaches_the_store(path: str, value: Any) -> None:
    result = good_result()
    set_path(result, path, value)
    result = json.loads(json.dumps(result))
    try:
        validate_result(result)
    except SchemaError as error:
        assert path.split(".")[-1] in str(error) or path.split(".")[0] in str(error), (path, str(error))
        return
    # Accepted: everything the store reads from a succeeded result is there, with its type.
    if result["status"] == "succeeded":
        timing = result["timing"]
        assert all(isinstance(s, int) and 0 <= s < 2 ** 63 for s in timing["samples_ns"])
        for key in ("init_ms", "first_inference_ms"):
            assert math.isfinite(timing[key])
        assert all(math.isfinite(v) for k, v in timing["summary"].items() if k.endswith("_ms"))
    for key in ("runtime", "power", "conditions", "edgetpu"):
        assert result.get(key) is None or isinstance(result[key], dict)


@FEW
@given(cut=st.integers(0, 400))
def test_a_truncated_agent_line_is_refused(cut: int) -> None:
    line = json.dumps(good_result())
    try:
        validate_result(json.loads(line[:cut]))
    except (ValueError, SchemaError):
        return  # json.JSONDecodeError is a ValueError: agent_client turns it into a TransportError
    assert cut >= len(line)


# -- the command line, as a user runs it ----------------------------------------------------------------------

def farm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, check=False, env={**os.environ, "COLUMNS": "300"})


@pytest.mark.parametrize("option, text, words", [
    ("--inventory", "hosts:\n  - name: ok\n    address: h\n  - name: \"a;reboot\"\n    address: h\n",
     "bad.yaml:4: field 'name': 'a;reboot' is not a valid host name"),
    ("--inventory", "hosts:\n  - name: a\n    address: h\n    port: 99999999999999999999\n",
     "bad.yaml:4: field 'port': port 99999999999999999999 is out of range"),
    ("--inventory", "hosts:\n  - name: a\n    address: h\n    tags: [ok, 3]\n",
     "bad.yaml:4: field 'tags': every tag must be a non-empty string"),
    ("--inventory", "hosts:\n  - name: a\n    address: \"h\\e\"\n", "bad.yaml:3: field 'address'"),
    ("--inventory", "hosts:\n  - name: a\n    addr", "bad.yaml"),
    ("--matrix-file", "matrices:\n  m:\n    models: [all]\n    timing: {max_seconds: .inf}\n",
     "bad.yaml:4: field 'timing.max_seconds': got inf"),
    ("--matrix-file", "matrices:\n  m:\n    threads: [1, \"2; reboot\"]\n", "bad.yaml:3: field 'threads'"),
    ("--matrix-file", "matrices:\n  m: &m {models: *m}\n", "bad.yaml:2: an alias refers to a value that contains it"),
])
def test_farm_run_with_a_bad_file_names_file_line_and_field(tmp_path: Path, option: str, text: str,
                                                            words: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    args = ["run", "-m", "m", option, "bad.yaml"]
    if option == "--matrix-file":
        args += ["--db", f"sqlite:///{tmp_path / 'f.db'}"]
    done = farm(*args, cwd=tmp_path)
    assert done.returncode in (1, 2), done
    assert "Traceback" not in done.stderr + done.stdout
    assert words in " ".join(done.stderr.split()), done.stderr
