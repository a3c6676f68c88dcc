"""A small document model written twice: as markdown (images as files) and as self-contained HTML.

The report is a list of blocks (headings, paragraphs, tables, images, links, alert boxes, plotly
figures). Markdown refers to the PNG files next to it; HTML embeds the same PNGs as base64 and
plotly.js once (inline, no CDN), so one file can be mailed around and opened offline.

The HTML page never scrolls sideways on a 1400 px screen: the page is at most 1200 px wide, a table
shows at most :data:`MAX_COLUMNS` columns (wider tables keep their key columns and put the rest,
with the identifying columns repeated, in collapsible ``<details>`` tables), headers wrap, and
long names and paths break.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Document", "MAX_COLUMNS"]

#: Most columns of one HTML table; 9 columns of "0.900 ± 0.100" fit in the 1200 px page.
MAX_COLUMNS = 9

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:1.2em 2em 3em;background:#fff}
h1{border-bottom:2px solid #4c72b0;padding-bottom:.3em}
h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.meta{color:#666;font-size:.9em}
p,li,figcaption{overflow-wrap:anywhere}
.tablewrap{max-width:100%;max-height:70vh;overflow-y:auto;border:1px solid #ddd;margin:.6em 0}
table.responsive{border-collapse:collapse;font-size:.85em;width:100%;max-width:100%;table-layout:auto}
th,td{padding:.25em .5em;border-bottom:1px solid #eee;text-align:right}
th{position:sticky;top:0;background:#f0f3f8;z-index:1;white-space:normal;vertical-align:bottom}
td{white-space:nowrap}
td:nth-child(2),th:nth-child(2){text-align:left;white-space:normal;overflow-wrap:anywhere}
details.more{margin:.2em 0 1em}
details.more summary{cursor:pointer;color:#4c72b0}
.alert{border:2px solid;border-radius:4px;padding:.5em 1em;margin:.8em 0}
.alert h3{margin:.1em 0 .4em}
.alert.bad{border-color:#c62828;background:#fdecea}
.alert.bad h3{color:#b71c1c}
.alert.good{border-color:#2e7d32;background:#edf7ed}
.alert.good h3{color:#1b5e20}
.alert .tablewrap{background:#fff}
.alert td,.alert th{text-align:left;white-space:normal}
tr.vanished td{color:#b71c1c;font-weight:bold}
.plot3d{width:100%;height:640px;border:1px solid #ddd}
tr:hover td{background:#f7f9fc}
figure{margin:1em 0}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em}
nav a{margin-right:1em}
"""


@dataclass
class Document:
    """Blocks of a report; call :meth:`markdown` and :meth:`html` to render."""

    title: str
    blocks: list[tuple[str, tuple]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        """A section heading (level 2 or 3)."""
        self.blocks.append(("heading", (text, level)))

    def paragraph(self, text: str, *, note: bool = False) -> None:
        """A paragraph of plain text (``note`` highlights it)."""
        self.blocks.append(("paragraph", (text, note)))

    def bullets(self, items: list[str]) -> None:
        """A bulleted list of plain-text items."""
        self.blocks.append(("bullets", (list(items),)))

    def table(self, header: list[str], rows: list[list[str]], caption: str = "", *, key: list[int] | None = None,
              ids: int = 2) -> None:
        """A table of display strings.

        Args:
            header: column titles.
            rows: rows of display strings.
            caption: text above the table.
            key: indices of the columns the HTML table shows at first (default the first
                :data:`MAX_COLUMNS`); the others go, in tables of at most ``MAX_COLUMNS`` columns
                led by the first ``ids`` columns, into a collapsible "more columns" section.
                Markdown shows every column in one table.
            ids: number of leading identifying columns (e.g. ``#`` and structure).
        """
        self.blocks.append(("table", (list(header), [list(r) for r in rows], caption, key, ids)))

    def alert(self, title: str, text: str, *, header: list[str] | None = None, rows: list[list[str]] | None = None,
              good: bool = False, marked: list[int] | None = None, anchor: str = "") -> None:
        """A framed box: red (``good=False``) or green, a title, a sentence and an optional table.

        ``marked`` rows of the table are highlighted (e.g. vanished structures); ``anchor`` is the
        HTML id of the box.
        """
        self.blocks.append(("alert", (title, text, list(header or []), [list(r) for r in rows or []], good, set(marked or []), anchor)))

    def plotly(self, figure_html: str, markdown: str) -> None:
        """An interactive plotly figure (a ``<div>`` + script from ``Figure.to_html(full_html=False,
        include_plotlyjs=False)``) in HTML; ``markdown`` stands in for it in the markdown file."""
        self.blocks.append(("plotly", (figure_html, markdown)))

    def image(self, path: Path, caption: str = "") -> None:
        """A PNG written next to the report."""
        self.blocks.append(("image", (Path(path), caption)))

    def link(self, href: str, text: str, caption: str = "") -> None:
        """A link to a file next to the report (e.g. the 3D mesh page)."""
        self.blocks.append(("link", (href, text, caption)))

    # ------------------------------------------------------------------ markdown
    def markdown(self) -> str:
        """The report as GitHub-flavoured markdown; images refer to the PNG files by name."""
        lines = [f"# {self.title}", ""]
        for kind, args in self.blocks:
            if kind == "heading":
                lines += ["#" * args[1] + " " + args[0], ""]
            elif kind == "paragraph":
                lines += [("> " if args[1] else "") + args[0], ""]
            elif kind == "bullets":
                lines += [f"- {item}" for item in args[0]] + [""]
            elif kind == "table":
                header, rows, caption = args[:3]
                if caption:
                    lines += [caption, ""]
                lines += _markdown_table(header, rows)
            elif kind == "alert":
                title, text, header, rows, good = args[:5]
                lines += [f"> **{'✅' if good else '⚠'} {title}** — {text}", ""]
                if header:
                    lines += _markdown_table(header, rows)
            elif kind == "plotly":
                lines += [args[1], ""]
            elif kind == "image":
                path, caption = args
                lines += [f"![{caption or path.stem}]({path.name})", ""]
                if caption:
                    lines += [f"*{caption}*", ""]
            elif kind == "link":
                href, text, caption = args
                lines += [f"[{text}]({href})" + (f": {caption}" if caption else ""), ""]
        return "\n".join(lines).rstrip() + "\n"

    # ---------------------------------------------------------------------- html
    def _html_table(self, header: list[str], rows: list[list[str]], key: list[int] | None, ids: int) -> str:
        e = html.escape

        def one(columns: list[int]) -> str:
            return _html_rows("".join(f"<th>{e(header[c])}</th>" for c in columns), [[r[c] for c in columns] for r in rows], set())

        columns = list(range(len(header)))
        if key is None and len(header) <= MAX_COLUMNS:
            return one(columns)
        shown = (list(key) if key is not None else columns[:MAX_COLUMNS])[:MAX_COLUMNS]
        rest = [c for c in columns if c not in shown and c >= ids]
        if not rest:
            return one(shown)
        width = MAX_COLUMNS - ids
        chunks = [rest[n:n + width] for n in range(0, len(rest), width)]
        names = ", ".join(header[c] for c in rest)
        more = "".join(one(list(range(ids)) + chunk) for chunk in chunks)
        return (one(shown) + f'<details class="more"><summary>{len(rest)} more columns: {e(names)}</summary>{more}</details>')

    def html(self, *, generator: str = "medrefine") -> str:
        """The report as one HTML page with every PNG embedded (base64) and plotly.js inline when a
        plotly figure is in it: no external resources."""
        e = html.escape
        toc = [(n, args[0]) for n, (kind, args) in enumerate(self.blocks) if kind == "heading" and args[1] == 2]
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta name="generator" content="{e(generator)}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(self.title)}</title><style>{_CSS}</style>",
            *(_plotly_script() if any(kind == "plotly" for kind, _ in self.blocks) else []),
            "</head><body><main>",
            f"<h1>{e(self.title)}</h1>",
        ]
        if toc:
            parts.append("<nav>" + "".join(f'<a href="#s{n}">{e(text)}</a>' for n, text in toc) + "</nav>")
        for n, (kind, args) in enumerate(self.blocks):
            if kind == "heading":
                text, level = args
                parts.append(f'<h{level} id="s{n}">{e(text)}</h{level}>')
            elif kind == "paragraph":
                text, note = args
                parts.append(f'<p class="note">{e(text)}</p>' if note else f"<p>{e(text)}</p>")
            elif kind == "bullets":
                parts.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in args[0]) + "</ul>")
            elif kind == "table":
                header, rows, caption, key, ids = args
                if caption:
                    parts.append(f'<p class="meta">{e(caption)}</p>')
                parts.append(self._html_table(header, rows, key, ids))
            elif kind == "alert":
                title, text, header, rows, good, marked, anchor = args
                table = _html_rows("".join(f"<th>{e(h)}</th>" for h in header), rows, marked) if header else ""
                ident = f' id="{e(anchor)}"' if anchor else ""
                parts.append(f'<section class="alert {"good" if good else "bad"}"{ident}><h3>{e(title)}</h3>'
                             f"<p>{e(text)}</p>{table}</section>")
            elif kind == "plotly":
                parts.append(args[0])
            elif kind == "image":
                path, caption = args
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                parts.append(f'<figure><img alt="{e(caption or path.stem)}" src="data:image/png;base64,{data}">'
                             + (f"<figcaption>{e(caption)}</figcaption>" if caption else "") + "</figure>")
            elif kind == "link":
                href, text, caption = args
                parts.append(f'<p><a href="{e(href)}">{e(text)}</a>' + (f" — {e(caption)}" if caption else "") + "</p>")
        parts.append("</main></body></html>")
        return "\n".join(parts) + "\n"


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |",
             "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|"]
    return lines + ["| " + " | ".join(map(esc, r)) + " |" for r in rows] + [""]


def _html_rows(head: str, rows: list[list[str]], marked: set[int]) -> str:
    """A responsive table from its ``<th>`` cells and rows of display strings; ``marked`` rows highlighted."""
    e = html.escape
    body = "".join(('<tr class="vanished">' if n in marked else "<tr>") + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>"
                   for n, r in enumerate(rows))
    return f'<div class="tablewrap"><table class="responsive"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _plotly_script() -> list[str]:
    """plotly.js inline, once per page (the pages open offline; no CDN)."""
    from plotly.offline import get_plotlyjs

    return ['<script type="text/javascript">', get_plotlyjs(), "</script>"]
