"""A report as rich terminal tables, as Markdown, and as one self-contained HTML file."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..text_table import RICH_MAX_ROWS, aligned
from .build import Report
from .cells import numeric, text_rows

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:14px}
th,td{border:1px solid #ccc;padding:3px 8px}th{background:#f2f2f2}td.n{text-align:right;font-variant-numeric:tabular-nums}
caption{caption-side:top;text-align:left;color:#555;padding-bottom:4px}figure{margin:1em 0}
figcaption{color:#555;font-size:13px}img{max-width:100%}.note{color:#8a5a00}
"""


# Past this many rows in a report's Rich-sized tables, all of them are plain text: Rich lays out each cell
# (about 17 ms a table of 20 rows here), and a lab of 50 boards has a thread sweep block per board and mode,
# 1.4 s of Rich for 80 tables. One style for the whole report, so that its tables line up alike.
RICH_MAX_REPORT_ROWS = 4 * RICH_MAX_ROWS


def to_terminal(report: Report, console: Console) -> None:
    console.print(f"[bold]{report.title}[/bold] ({report.rows} results)")
    for note in report.notes:
        console.print(f"[yellow]{note}[/yellow]")
    small = sum(len(frame) for section in report.sections for frame in section.blocks.values()
                if len(frame) <= RICH_MAX_ROWS)
    for section in report.sections:
        for block, frame in section.blocks.items():
            title = f"{section.title}: {block}" if block else section.title
            headers, rows = text_rows(frame)
            # A lab's worth of cells: Rich would take seconds per table, or for all of them together.
            if len(rows) > RICH_MAX_ROWS or small > RICH_MAX_REPORT_ROWS:
                console.print(f"[italic]{title}[/italic]")
                console.file.write("\n".join(aligned(headers, rows, numeric(frame))) + "\n")
                console.print(section.caption, soft_wrap=True)
                continue
            table = Table(title=title, caption=section.caption, title_justify="left", caption_justify="left")
            for name, right in zip(headers, numeric(frame), strict=True):
                table.add_column(name, justify="right" if right else "left", overflow="fold")
            for row in rows:
                table.add_row(*row)
            console.print(table)
    if report.plots:
        console.print(f"{len(report.plots)} plot(s): write them with --html or --markdown.")


def to_markdown(report: Report, path: Path) -> list[Path]:
    """Write the Markdown file, and its plots as PNGs in a folder beside it; returns the files written."""
    lines = [f"# {report.title}", "", f"{report.rows} results · generated {_now()}", ""]
    for note in report.notes:
        lines += [f"> {note}", ""]
    for section in report.sections:
        lines += [f"## {section.title}", "", section.caption, ""]
        for block, frame in section.blocks.items():
            if block:
                lines += [f"### {block}", ""]
            headers, rows = text_rows(frame)
            align = ["---:" if right else "---" for right in numeric(frame)]
            lines += ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
            lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
            lines.append("")
    written = [path]
    if report.plots:
        folder = path.with_name(path.stem + "_plots")
        folder.mkdir(parents=True, exist_ok=True)
        lines += ["## Plots", ""]
        for plot in report.plots:
            png = folder / f"{plot.slug}.png"
            png.write_bytes(plot.png)
            written.append(png)
            lines += [f"![{plot.title}]({folder.name}/{png.name})", "", f"*{plot.caption}*", ""]
    path.write_text("\n".join(lines))
    return written


def to_html(report: Report) -> str:
    """One HTML document with the plots inlined as data: URIs; it fetches nothing."""
    out = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>",
           f"<title>{html.escape(report.title)}</title><style>{STYLE}</style></head><body>",
           f"<h1>{html.escape(report.title)}</h1>",
           f"<p>{report.rows} results · generated {_now()}</p>"]
    out += [f"<p class='note'>{html.escape(note)}</p>" for note in report.notes]
    for section in report.sections:
        out.append(f"<h2>{html.escape(section.title)}</h2>")
        for block, frame in section.blocks.items():
            headers, rows = text_rows(frame)
            right = numeric(frame)
            out.append("<table>")
            out.append(f"<caption>{html.escape(block + ' · ' if block else '')}{html.escape(section.caption)}"
                       "</caption>")
            out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>")
            for row in rows:
                out.append("<tr>" + "".join(f"<td{' class=n' if r else ''}>{html.escape(v)}</td>"
                                            for v, r in zip(row, right, strict=True)) + "</tr>")
            out.append("</table>")
    if report.plots:
        out.append("<h2>Plots</h2>")
    for plot in report.plots:
        data = base64.b64encode(plot.png).decode("ascii")
        out.append(f"<figure><img alt='{html.escape(plot.title, quote=True)}' src='data:image/png;base64,{data}'>"
                   f"<figcaption><b>{html.escape(plot.title)}</b>. {html.escape(plot.caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
