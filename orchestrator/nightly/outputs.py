"""What a nightly tells people and machines: terminal table, Markdown, self-contained HTML, JUnit XML, a webhook."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from .runner import CellOutcome, NightlyOutcome
from .triggers import describe

ORDER = {"regressed": 0, "invalid": 1, "missing": 2, "improved": 3, "new": 4, "unchanged": 5}


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}×"


def rows(outcome: NightlyOutcome) -> list[dict[str, Any]]:
    out = []
    for cell in sorted(outcome.cells, key=lambda c: (ORDER.get(c.verdict.state, 9), c.cell.label)):
        v = cell.verdict
        out.append({"cell": cell.cell.label, "state": v.state, "baseline_ms": v.baseline_ms,
                    "tonight_ms": v.current_ms, "ratio": v.ratio, "p_value": v.p_value, "detail": v.detail,
                    "drift": cell.drift, "causes": [describe(change) for change in cell.causes]})
    return out


def cause_lines(outcome: NightlyOutcome) -> list[str]:
    return [describe(change) for change in outcome.triggers]


def _cause_text(row: dict[str, Any]) -> str:
    if row["causes"]:
        return "; ".join(row["causes"])
    return "no toolchain change reaches this cell" if row["state"] in ("regressed", "improved") else ""


def summary_text(outcome: NightlyOutcome) -> str:
    counts = outcome.counts
    head = f"farm nightly #{outcome.nightly_id}: " + (outcome.message if not outcome.ran else
                                                       ", ".join(f"{counts[s]} {s}" for s in ORDER if counts[s]))
    lines = [head]
    if outcome.triggers:
        lines.append("Toolchain changes (likely causes): " + "; ".join(cause_lines(outcome)))
    for row in rows(outcome):
        if row["state"] in ("regressed", "improved") or row["drift"]:
            drift = " (drifting)" if row["drift"] else ""
            lines.append(f"- {row['state']}{drift}: {row['cell']}: {_ms(row['baseline_ms'])} → "
                         f"{_ms(row['tonight_ms'])} ms ({_ratio(row['ratio'])}); likely cause: {_cause_text(row)}")
    return "\n".join(lines)


def markdown(outcome: NightlyOutcome) -> str:
    parts = [f"# farm nightly #{outcome.nightly_id}", "", summary_text(outcome).split("\n", 1)[0], ""]
    if outcome.triggers:
        parts += ["## Toolchain changes", "", *[f"- {line}" for line in cause_lines(outcome)], ""]
    if outcome.run_ids:
        parts += [f"Runs (one per trial): {', '.join(map(str, outcome.run_ids))}", ""]
    parts += ["## Cells", "", "| cell | state | baseline ms | tonight ms | ratio | p | detail | likely cause |",
              "|---|---|---:|---:|---:|---:|---|---|"]
    for row in rows(outcome):
        p = "" if row["p_value"] is None else f"{row['p_value']:.2g}"
        drift = " · drifting" if row["drift"] else ""
        parts.append(f"| {row['cell']} | {row['state']}{drift} | {_ms(row['baseline_ms'])} | "
                     f"{_ms(row['tonight_ms'])} | {_ratio(row['ratio'])} | {p} | {row['detail']} | "
                     f"{_cause_text(row)} |")
    return "\n".join(parts) + "\n"


def _history_plot(cell: CellOutcome) -> str:
    """A PNG (base64) of the cell's nightly medians, tonight's last, baseline as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [*cell.history, *([cell.verdict.current_ms] if cell.verdict.current_ms is not None else [])]
    figure, axes = plt.subplots(figsize=(6, 2.6), dpi=100)
    axes.plot(range(1, len(series) + 1), series, marker="o", label="nightly median")
    if cell.verdict.baseline_ms is not None:
        axes.axhline(cell.verdict.baseline_ms, color="grey", linestyle="--", label="baseline")
    axes.set_xlabel("nightly run (oldest → tonight)")
    axes.set_ylabel("median latency (ms)")
    axes.set_title(cell.cell.label, fontsize=8)
    axes.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def html_report(outcome: NightlyOutcome) -> str:
    esc = html.escape
    body = [f"<h1>farm nightly #{outcome.nightly_id}</h1>",
            f"<p>{esc(summary_text(outcome).splitlines()[0])}</p>"]
    if outcome.triggers:
        body.append("<h2>Toolchain changes</h2><ul>" +
                    "".join(f"<li>{esc(line)}</li>" for line in cause_lines(outcome)) + "</ul>")
    body.append("<h2>Cells</h2><table><tr><th>cell</th><th>state</th><th>baseline ms</th><th>tonight ms</th>"
                "<th>ratio</th><th>p</th><th>detail</th><th>likely cause</th></tr>")
    for row in rows(outcome):
        p = "" if row["p_value"] is None else f"{row['p_value']:.2g}"
        body.append(f"<tr class='{esc(row['state'])}'><td>{esc(row['cell'])}</td><td>{esc(row['state'])}"
                    f"{' · drifting' if row['drift'] else ''}</td><td>{_ms(row['baseline_ms'])}</td>"
                    f"<td>{_ms(row['tonight_ms'])}</td><td>{_ratio(row['ratio'])}</td><td>{p}</td>"
                    f"<td>{esc(row['detail'])}</td><td>{esc(_cause_text(row))}</td></tr>")
    body.append("</table>")
    changed = [c for c in outcome.cells if c.verdict.state in ("regressed", "improved") or c.drift]
    if changed:
        body.append("<h2>History of the cells that changed</h2>")
        for cell in changed:
            body.append(f"<figure><img alt='{esc(cell.cell.label)}' src='data:image/png;base64,"
                        f"{_history_plot(cell)}'/></figure>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:2px 6px;font-size:90%}.regressed{background:#fdd}.improved{background:#dfd}"
             ".invalid,.missing{background:#ffd}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>farm nightly #{outcome.nightly_id}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def _suite(name: str, outcome_started: Any, outcome_finished: Any, properties: dict[str, str]) -> ET.Element:
    """A <testsuite> with what CI servers show about a run: when (UTC, with the offset), where, how long, and
    the properties (toolchain versions, run ids) that say what was measured."""
    import socket
    from datetime import datetime, timezone

    started = outcome_started or datetime.now(timezone.utc)
    finished = outcome_finished or datetime.now(timezone.utc)
    if started.tzinfo is None:  # SQLite hands back naive datetimes; farm writes UTC
        started = started.replace(tzinfo=timezone.utc)
    if finished.tzinfo is None:
        finished = finished.replace(tzinfo=timezone.utc)
    suite = ET.Element("testsuite", name=name, timestamp=started.isoformat(timespec="seconds"),
                       hostname=socket.gethostname(),
                       time=f"{max(0.0, (finished - started).total_seconds()):.3f}")
    if properties:
        holder = ET.SubElement(suite, "properties")
        for key, value in sorted(properties.items()):
            ET.SubElement(holder, "property", name=key, value=str(value))
    return suite


def junit_xml(outcome: NightlyOutcome) -> str:
    """One testcase per cell; regressions are failures, invalid and missing cells are errors.

    A case's time is the wall time of its jobs over every trial; the suite's is the whole nightly's.
    """
    suite = _suite(f"farm-nightly-{outcome.nightly_id}", outcome.started_at, outcome.finished_at,
                   outcome.properties)
    suite.set("tests", str(len(outcome.cells)))
    failures = errors = skipped = 0
    seconds = {cell.cell.label: cell.cell.seconds for cell in outcome.cells}
    for row in rows(outcome):
        host, _, rest = row["cell"].partition(" · ")
        case = ET.SubElement(suite, "testcase", classname=f"farm.{host}", name=rest or row["cell"],
                             time=f"{seconds.get(row['cell'], 0.0):.3f}")
        message = f"{row['state']}: {row['detail']}"
        if row["state"] == "regressed":
            failures += 1
            failure = ET.SubElement(case, "failure", message=message, type="regression")
            failure.text = "\n".join([f"baseline {_ms(row['baseline_ms'])} ms, tonight {_ms(row['tonight_ms'])} ms",
                                      f"likely cause: {_cause_text(row)}"])
        elif row["state"] in ("invalid", "missing"):
            errors += 1
            ET.SubElement(case, "error", message=message, type=row["state"])
        elif row["state"] == "new":
            skipped += 1
            ET.SubElement(case, "skipped", message=message)
        out = ET.SubElement(case, "system-out")
        out.text = json.dumps({k: row[k] for k in ("state", "baseline_ms", "tonight_ms", "ratio", "p_value")})
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    suites = ET.Element("testsuites")
    suites.append(suite)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def junit_error_xml(message: str, exit_code: int, started: Any = None,
                    properties: dict[str, str] | None = None) -> str:
    """The JUnit a CI server still gets when the nightly could not start (a matrix file that is not there):
    one errored test case saying why, so the job shows red with the reason instead of "no test report"."""
    from .. import __version__

    suite = _suite("farm-nightly", started, None, {"farm.version": __version__, "farm.exit_code": str(exit_code),
                                                   **(properties or {})})
    suite.set("tests", "1")
    suite.set("failures", "0")
    suite.set("errors", "1")
    suite.set("skipped", "0")
    case = ET.SubElement(suite, "testcase", classname="farm.nightly", name="start", time="0.000")
    error = ET.SubElement(case, "error", message=message[:500], type=f"exit {exit_code}")
    error.text = message
    suites = ET.Element("testsuites")
    suites.append(suite)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


class NotifyError(Exception):
    pass


def notify(url: str, outcome: NightlyOutcome, *, attempts: int = 4, timeout: float = 10.0,
           wait_max: float = 8.0) -> None:
    """POST a Slack-compatible JSON summary; retried with backoff, raises NotifyError when it never lands."""
    payload = json.dumps({"text": summary_text(outcome), "nightly": outcome.nightly_id,
                          "exit_code": outcome.exit_code, "counts": dict(outcome.counts),
                          "regressed": [r["cell"] for r in rows(outcome) if r["state"] == "regressed"]}).encode()

    @retry(stop=stop_after_attempt(attempts), wait=wait_exponential(multiplier=0.5, max=wait_max),
           retry=retry_if_exception_type(NotifyError), reraise=True)
    def post() -> None:
        request = urllib.request.Request(url, data=payload, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if response.status >= 300:
                    raise NotifyError(f"{url} answered HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            raise NotifyError(f"{url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise NotifyError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None

    post()
