"""HTML for the daemons' pages: a page shell with inline CSS, tables, links and the plain
formatting of times and sizes.

Everything given as a plain str is escaped; only Html (what these helpers and the SVG
timeline build) is inserted as it is, so a job named `<script>` shows as text.
"""
from __future__ import annotations

import time
from html import escape
from typing import Iterable
from urllib.parse import urlencode

from minijet.config import format_size


class Html(str):
    """Markup already safe to insert."""


def text(value: object) -> Html:
    return value if isinstance(value, Html) else Html(escape(str(value)))


def join(parts: Iterable[object], sep: str = "") -> Html:
    return Html(sep.join(text(p) for p in parts))


def tag(name: str, content: object = "", /, **attrs: object) -> Html:
    """<name attrs>content</name>; attribute `class_` is `class`, None values are left out."""
    shown = "".join(f' {k.rstrip("_").replace("_", "-")}="{escape(str(v))}"'
                    for k, v in attrs.items() if v is not None)
    return Html(f"<{name}{shown}>{text(content)}</{name}>")


def href(path: str, /, **query: object) -> str:
    return f"{path}?{urlencode(query)}" if query else path


def link(path: str, content: object, /, **query: object) -> Html:
    return tag("a", content, href=href(path, **query))


def table(headers: list[str], rows: Iterable[Iterable[object]], empty: str = "none",
          class_: str | None = None) -> Html:
    head = tag("tr", join(tag("th", h) for h in headers))
    body = [tag("tr", join(tag("td", c) for c in row)) for row in rows]
    if not body:
        body = [tag("tr", tag("td", empty, colspan=len(headers), class_="none"))]
    return tag("table", join([head, *body]), class_=class_)


def fields(pairs: Iterable[tuple[str, object]]) -> Html:
    """A two-column table of names and values."""
    return tag("table", join(tag("tr", join([tag("th", k), tag("td", v)])) for k, v in pairs),
               class_="fields")


def when(t: float, with_date: bool = True) -> str:
    if not t:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S", time.localtime(t))


def ago(t: float, now: float) -> str:
    return f"{max(0.0, now - t):.1f}s ago" if t else "-"


def span(start: float, end: float, now: float) -> str:
    """How long from `start` to `end` (or to `now` while it has not ended)."""
    if not start:
        return "-"
    seconds = max(0.0, (end or now) - start)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m{seconds:02d}s" if minutes >= 60 \
        else f"{minutes}m{seconds:02d}s"


def size(n: int) -> str:
    return format_size(n)


def bar(fraction: float) -> Html:
    """A progress bar with its percentage."""
    pct = int(max(0.0, min(1.0, fraction)) * 100)
    return Html(f'<span class="bar"><span style="width:{pct}%"></span></span> {pct}%')


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#23395d;color:#fff;padding:.5em 1em}
header a{color:#fff;margin-right:1.2em;text-decoration:none;font-weight:600}
main{padding:.5em 1em}
h1{font-size:1.3em;margin:.4em 0}
h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;margin:.3em 0;background:#fff}
th,td{border:1px solid #ddd;padding:2px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}
td.none{color:#888;font-style:italic}
table.fields th{width:10em}
pre{background:#fff;border:1px solid #ddd;padding:.5em;overflow-x:auto;max-height:30em}
.bar{display:inline-block;width:8em;height:.8em;background:#ddd;vertical-align:middle}
.bar span{display:block;height:100%;background:#4a8a4a}
.state-failed,.state-killed,.state-lost,.bad{color:#b00020;font-weight:600}
.state-succeeded{color:#2e6b2e}
.state-running{color:#23395d;font-weight:600}
form{margin:.4em 0}
.note{color:#666}
svg text{font:11px system-ui,sans-serif}
"""


def page(title: str, body: object, nav: list[tuple[str, str]], refresh: int | None = None,
         subtitle: str = "") -> str:
    """A whole page; `refresh`: seconds after which the browser reloads it (pages of
    things still running)."""
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    links = join(link(path, label) for path, label in nav)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{meta}'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<header>{links}<span class=\"note\">{escape(subtitle)}</span></header>"
            f"<main>{tag('h1', title)}{text(body)}</main></body></html>")


def error_page(title: str, message: str) -> str:
    return page(title, tag("p", message), [("/", "Home")])


def state(value: str) -> Html:
    return tag("span", value, class_=f"state-{value}")
