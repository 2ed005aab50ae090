"""A job's timeline as server-side SVG: one row per taskserver slot, one bar per attempt
from its start to its end (a running one to now), coloured by stage.

A taskserver's attempts are packed into as few rows as keep its bars from overlapping (one
row per slot it used). Failed and lost attempts are hatched in red, killed ones faded with
a dashed outline; hover titles name the attempt, taskserver, locality and times. Inside a
bar, its phases from the attempt's timestamps (minijet.jobserver.model, Timestamps) are
shaded: launching (until its TaskHost ran it) light, reading its input in the stage's
colour (a map processes records as it reads them), after its input (sorting, reducing,
writing) darker, reporting its end darkest. The taskserver's clock gives the inner times,
so they are clamped into the bar. Rows get thinner as they grow in number and bars carry
no text, so a job of a few thousand attempts stays one readable picture.
"""
from __future__ import annotations

from typing import Any

from minijet.web.html import Html, escape, tag, when

COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#72b7b2", "#eeca3b", "#9d755d",
           "#ff9da6")
WIDTH, LABELS, AXIS = 1000, 150, 22     # plot width, taskserver label column, time axis
MAX_HEIGHT = 600                        # of all the rows together, at the thinnest


def pack(attempts: list[dict[str, Any]], now: float) -> list[tuple[str, list[dict]]]:
    """(taskserver, its attempts in one row) for every row, taskservers in name order;
    an attempt goes to the first row free by its start (earliest starts first)."""
    rows: list[tuple[str, list[dict]]] = []
    by_server: dict[str, list[dict]] = {}
    for a in attempts:
        by_server.setdefault(a["taskserver"], []).append(a)
    for server in sorted(by_server):
        ends: list[float] = []
        mine: list[list[dict]] = []
        for a in sorted(by_server[server], key=lambda a: (a["start_time"], a["attempt_id"])):
            for i, end in enumerate(ends):
                if end <= a["start_time"]:
                    break
            else:
                i = len(ends)
                ends.append(0.0)
                mine.append([])
            ends[i] = a["end_time"] or now
            mine[i].append(a)
        rows += [(server, row) for row in mine]
    return rows


# the phases shaded inside a bar: (from, to, overlay), the overlay on the stage's colour
PHASES = (("start_time", "taskhost_start_time", 'fill="#fff" fill-opacity="0.55"'),
          ("input_end_time", "done_time", 'fill="#000" fill-opacity="0.3"'),
          ("done_time", "end_time", 'fill="#000" fill-opacity="0.6"'))


def _phases(a: dict[str, Any], end: float) -> list[tuple[float, float, str]]:
    """(from, to, overlay) of the attempt's phases whose times are known, within the bar."""
    start, found = a["start_time"], []
    for first, last, look in PHASES:
        t0, t1 = a.get(first, 0.0), a.get(last, 0.0) or end
        if t0 and (last == "end_time" or a.get(last, 0.0)):
            t0, t1 = min(max(t0, start), end), min(max(t1, start), end)
            if t1 > t0:
                found.append((t0, t1, look))
    return found


def _title(a: dict[str, Any], now: float) -> str:
    end = a["end_time"] or now
    state = a["state"] + (f" ({a['failure']} error)" if a.get("failure") else "")
    backup = " (backup)" if a.get("speculative") else ""
    finished = when(a["end_time"], False) if a["end_time"] else "now"
    phases = ", ".join(f"{label} +{a[name] - a['start_time']:.2f}s"
                       for name, label in (("taskhost_start_time", "TaskHost running"),
                                           ("input_end_time", "input read"),
                                           ("done_time", "done")) if a.get(name))
    return (f"{a['attempt_id']}{backup}\n{state} on {a['taskserver']}, "
            f"{a['locality'] or 'locality unknown'}\n{when(a['start_time'], False)} to "
            f"{finished} ({end - a['start_time']:.2f}s)" + (f"\n{phases}" if phases else ""))


def _ticks(span: float) -> list[float]:
    """Round seconds for the axis, 4 to 10 of them over `span`."""
    step = 1.0
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if span / step <= 10:
            break
    return [round(i * step, 2) for i in range(int(span / step) + 1)]


_DEFS = ('<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
         'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fde0e0"/>'
         '<line x1="0" y1="0" x2="0" y2="6" stroke="#b00020" stroke-width="3"/>'
         '</pattern></defs>')


def _bar(a: dict[str, Any], x: float, y: float, w: float, h: float, colour: str,
         now: float, scale: float) -> str:
    """The attempt's rect (class "attempt"), then its phase shading."""
    state = a["state"]
    if state in ("failed", "lost"):
        look = f'fill="url(#hatch)" stroke="{colour}" stroke-width="1"'
    elif state == "killed":
        look = f'fill="{colour}" fill-opacity="0.3" stroke="#555" stroke-dasharray="2,1"'
    else:
        look = f'fill="{colour}"'
    out = [f'<rect class="attempt {escape(state)}" data-attempt="{escape(a["attempt_id"])}" '
           f'x="{x:.1f}" y="{y:.1f}" width="{w:.2f}" height="{h:.1f}" {look}>'
           f"<title>{escape(_title(a, now))}</title></rect>"]
    if w >= 4 and state not in ("failed", "lost"):   # too thin to shade, or hatched
        for t0, t1, look in _phases(a, a["end_time"] or now):
            out.append(f'<rect x="{x + (t0 - a["start_time"]) * scale:.1f}" y="{y:.1f}" '
                       f'width="{(t1 - t0) * scale:.2f}" height="{h:.1f}" {look} '
                       f'pointer-events="none"/>')
    return "".join(out)


def _legend(stages: list[str], colours: dict[str, str], y: float) -> str:
    items = [(f'fill="{colours[s]}"', f"stage {s}") for s in stages] + [
        ('fill="url(#hatch)" stroke="#b00020"', "failed or lost"),
        ('fill="#888" fill-opacity="0.3" stroke="#555" stroke-dasharray="2,1"', "killed"),
        ('fill="#ddd"', "launching"), ('fill="#888"', "after its input"),
        ('fill="#444"', "reporting its end")]
    out, x = [], 0.0
    for look, label in items:
        out.append(f'<rect x="{x:.0f}" y="{y:.0f}" width="14" height="10" {look}/>'
                   f'<text x="{x + 18:.0f}" y="{y + 9:.0f}">{escape(label)}</text>')
        x += 30 + 6.5 * len(label)
    return "".join(out)


def svg(job_id: str, attempts: list[dict[str, Any]], stages: list[str], now: float) -> Html:
    """The timeline of the job's `attempts` (its status view's), `stages` in its order."""
    if not attempts:
        return tag("p", "No attempts yet.", class_="note")
    colours = {s: COLOURS[i % len(COLOURS)] for i, s in enumerate(stages)}
    rows = pack(attempts, now)
    row_h = max(2.0, min(14.0, MAX_HEIGHT / len(rows)))
    gap = 1.0 if row_h >= 6 else 0.0
    t0 = min(a["start_time"] for a in attempts)
    span = max(0.001, max((a["end_time"] or now) for a in attempts) - t0)
    scale = WIDTH / span
    height = AXIS + len(rows) * row_h
    out = [_DEFS]
    for t in _ticks(span):   # the time axis and its grid
        x = LABELS + t * scale
        out.append(f'<line x1="{x:.1f}" y1="{AXIS - 4}" x2="{x:.1f}" y2="{height:.1f}" '
                   f'stroke="#e3e3e3"/><text x="{x + 2:.1f}" y="{AXIS - 8}">{t:g}s</text>')
    y, last = float(AXIS), None
    for server, row in rows:
        if server != last:   # a taskserver's rows start here: its name and a rule
            out.append(f'<line x1="0" y1="{y:.1f}" x2="{LABELS + WIDTH}" y2="{y:.1f}" '
                       f'stroke="#bbb"/><text x="2" y="{y + min(11.0, max(row_h, 9)):.1f}">'
                       f"{escape(server)}</text>")
            last = server
        for a in row:
            x = LABELS + (a["start_time"] - t0) * scale
            w = max(1.0, ((a["end_time"] or now) - a["start_time"]) * scale)
            stage = a["task_id"][len(job_id) + 1:].rsplit("_", 1)[0]   # (minijet.ids)
            out.append(_bar(a, x, y, w, row_h - gap, colours.get(stage, "#999"), now, scale))
        y += row_h
    out.append(_legend(stages, colours, height + 8))
    return Html(f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" '
                f'width="{LABELS + WIDTH + 30}" height="{height + 26:.0f}" '
                f'viewBox="0 0 {LABELS + WIDTH + 30} {height + 26:.0f}">{"".join(out)}</svg>')
