"""A small document model written twice: as markdown (images as files) and as self-contained HTML.

The report is a list of blocks (headings, paragraphs, tables, images, links). Markdown refers to
the PNG files next to it; HTML embeds the same PNGs as base64 so one file can be mailed around.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Document"]

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:1.2em 2em 3em;background:#fff}
h1{border-bottom:2px solid #4c72b0;padding-bottom:.3em}
h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.meta{color:#666;font-size:.9em}
.tablewrap{max-height:70vh;overflow:auto;border:1px solid #ddd;margin:.6em 0}
table{border-collapse:collapse;font-size:.85em;width:100%}
th,td{padding:.25em .6em;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{position:sticky;top:0;background:#f0f3f8;z-index:1}
td:nth-child(2),th:nth-child(2){text-align:left}
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

    def table(self, header: list[str], rows: list[list[str]], caption: str = "") -> None:
        """A table of display strings."""
        self.blocks.append(("table", (list(header), [list(r) for r in rows], caption)))

    def image(self, path: Path, caption: str = "") -> None:
        """A PNG written next to the report."""
        self.blocks.append(("image", (Path(path), caption)))

    def link(self, href: str, text: str, caption: str = "") -> None:
        """A link to a file next to the report (e.g. the 3D mesh page)."""
        self.blocks.append(("link", (href, text, caption)))

    # ------------------------------------------------------------------ markdown
    def markdown(self) -> str:
        """The report as GitHub-flavoured markdown; images refer to the PNG files by name."""
        esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
        lines = [f"# {self.title}", ""]
        for kind, args in self.blocks:
            if kind == "heading":
                lines += ["#" * args[1] + " " + args[0], ""]
            elif kind == "paragraph":
                lines += [("> " if args[1] else "") + args[0], ""]
            elif kind == "bullets":
                lines += [f"- {item}" for item in args[0]] + [""]
            elif kind == "table":
                header, rows, caption = args
                if caption:
                    lines += [caption, ""]
                lines.append("| " + " | ".join(map(esc, header)) + " |")
                lines.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|")
                lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
                lines.append("")
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
    def html(self, *, generator: str = "medrefine") -> str:
        """The report as one HTML page with every PNG embedded (base64), no external resources."""
        e = html.escape
        toc = [(n, args[0]) for n, (kind, args) in enumerate(self.blocks) if kind == "heading" and args[1] == 2]
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta name="generator" content="{e(generator)}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(self.title)}</title><style>{_CSS}</style></head><body><main>",
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
                header, rows, caption = args
                if caption:
                    parts.append(f'<p class="meta">{e(caption)}</p>')
                body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
                parts.append('<div class="tablewrap"><table><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in header)
                             + f"</tr></thead><tbody>{body}</tbody></table></div>")
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
