"""Report building blocks: one document model rendered to Markdown and to a self-contained HTML page.

A :class:`Report` is a list of sections; a section holds blocks (paragraph, table, image, list, "not
run" note). The same content becomes ``report.md`` (GitHub-flavoured tables, relative image links) and
``report.html`` (inline CSS, no scripts, no network resources; images as relative files or, with
``embed_images=True``, base64 data URIs so the single file can be mailed around).

Plots use matplotlib's Agg backend (no display needed): loss curves, grouped per-class accuracy bars,
and frame strips (a row of decoded video frames) for caption examples.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["Report", "Section", "Table", "Image", "read_jsonl", "plot_curves", "plot_grouped_bars", "save_frame_strip",
           "fmt_pct", "fmt_num"]


# --------------------------------------------------------------------------------------------------
# document model
# --------------------------------------------------------------------------------------------------
@dataclass
class Table:
    headers: list[str]
    rows: list[list[Any]]
    caption: str | None = None
    align: str | None = None
    """One char per column: ``l`` or ``r`` (default: first column left, the rest right)."""


@dataclass
class Image:
    path: str
    """Path relative to the report folder."""
    alt: str
    width: int | None = None
    """Display width in CSS pixels (HTML only)."""


@dataclass
class Section:
    title: str
    blocks: list[Any] = field(default_factory=list)
    level: int = 2

    def text(self, s: str) -> "Section":
        self.blocks.append(("p", s))
        return self

    def items(self, xs: Sequence[str]) -> "Section":
        self.blocks.append(("ul", list(xs)))
        return self

    def not_run(self, why: str) -> "Section":
        """A visible "not run" note: a missing part of the run never breaks the report."""
        self.blocks.append(("notrun", why))
        return self

    def table(self, headers: list[str], rows: list[list[Any]], caption: str | None = None,
              align: str | None = None) -> "Section":
        self.blocks.append(Table(headers, rows, caption, align))
        return self

    def image(self, path: str, alt: str, width: int | None = None) -> "Section":
        self.blocks.append(Image(path, alt, width))
        return self

    def gallery(self, images: Sequence[Image]) -> "Section":
        """Images side by side (wrapping) in HTML; one line of images in Markdown."""
        self.blocks.append(("gallery", list(images)))
        return self

    def example(self, title: str, image: Image | None, rows: list[tuple[str, str]]) -> "Section":
        """A caption example: a frame strip and labelled texts (references, predictions)."""
        self.blocks.append(("example", title, image, rows))
        return self


def _md_cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _inline_md(s: str) -> str:
    """The tiny Markdown subset used in report texts (**bold**, `code`) as HTML."""
    import re

    s = html.escape(s)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    s = re.sub(r"`(.+?)`", r"<code>\1</code>", s)
    return s


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1f2328}
main{max-width:1180px;margin:0 auto;padding:24px 32px 48px;background:#fff;min-height:100vh;box-sizing:border-box}
h1{font-size:26px;margin:0 0 4px} h2{font-size:20px;margin:32px 0 10px;padding-bottom:4px;border-bottom:1px solid #d0d7de}
h3{font-size:16px;margin:20px 0 8px}
p,li{font-size:14px;line-height:1.5}
.meta{color:#57606a;font-size:13px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #d0d7de;padding:4px 10px} th{background:#f0f2f5;text-align:left}
td.r,th.r{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafbfc}
.caption{font-size:13px;color:#57606a;margin:4px 0}
.notrun{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:8px 12px;font-size:14px}
figure{margin:8px 0 16px} img{max-width:100%;height:auto;border:1px solid #e1e4e8}
.grid{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start} .grid figure{margin:0}
.example{border:1px solid #d0d7de;border-radius:6px;padding:10px 12px;margin:12px 0}
.example h3{margin:0 0 8px;font-size:14px}
.example dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 12px;margin:8px 0 0;font-size:13px}
.example dt{font-weight:600;color:#57606a} .example dd{margin:0}
code{background:#f0f2f5;padding:1px 4px;border-radius:4px;font-size:12px}
"""


class Report:
    """A report: title, meta lines and sections; :meth:`write` produces ``.md`` and ``.html``."""

    def __init__(self, title: str, root: str | Path):
        self.title, self.root = title, Path(root)
        self.meta: list[str] = []
        self.sections: list[Section] = []

    def section(self, title: str, level: int = 2) -> Section:
        s = Section(title, level=level)
        self.sections.append(s)
        return s

    # ------------------------------------------------------------------ markdown
    def to_markdown(self) -> str:
        out = [f"# {self.title}", ""] + [f"{m}  " for m in self.meta] + [""]
        for s in self.sections:
            out += ["#" * s.level + " " + s.title, ""]
            for b in s.blocks:
                out += self._md_block(b) + [""]
        return "\n".join(out).rstrip() + "\n"

    def _md_block(self, b) -> list[str]:
        if isinstance(b, Table):
            al = b.align or ("l" + "r" * (len(b.headers) - 1))
            lines = [f"*{b.caption}*", ""] if b.caption else []
            lines.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
            lines.append("|" + "|".join("---:" if a == "r" else "---" for a in al) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows]
            return lines
        if isinstance(b, Image):
            return [f"![{b.alt}]({b.path})"]
        kind = b[0]
        if kind == "p":
            return [b[1]]
        if kind == "ul":
            return [f"- {x}" for x in b[1]]
        if kind == "notrun":
            return [f"> **Not run:** {b[1]}"]
        if kind == "gallery":
            return [" ".join(f"![{im.alt}]({im.path})" for im in b[1])]
        if kind == "example":
            _, title, img, rows = b
            lines = [f"**{title}**", ""]
            if img:
                lines += [f"![{img.alt}]({img.path})", ""]
            lines += [f"- *{k}*: {v}" for k, v in rows]
            return lines
        raise ValueError(f"unknown block {b!r}")

    # ------------------------------------------------------------------ html
    def _src(self, rel: str, embed: bool) -> str:
        if not embed:
            return html.escape(rel)
        data = (self.root / rel).read_bytes()
        return "data:image/png;base64," + base64.b64encode(data).decode()

    def _html_block(self, b, embed: bool) -> str:
        if isinstance(b, Table):
            al = b.align or ("l" + "r" * (len(b.headers) - 1))
            cls = lambda i: ' class="r"' if i < len(al) and al[i] == "r" else ""  # noqa: E731
            head = "".join(f"<th{cls(i)}>{html.escape(str(h))}</th>" for i, h in enumerate(b.headers))
            body = "".join("<tr>" + "".join(f"<td{cls(i)}>{html.escape(str(c))}</td>" for i, c in enumerate(r))
                           + "</tr>" for r in b.rows)
            cap = f'<div class="caption">{_inline_md(b.caption)}</div>' if b.caption else ""
            return f"{cap}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        if isinstance(b, Image):
            w = f' width="{b.width}"' if b.width else ""
            if not (self.root / b.path).is_file():
                return f'<div class="notrun">missing image {html.escape(b.path)}</div>'
            return f'<figure><img src="{self._src(b.path, embed)}" alt="{html.escape(b.alt)}"{w}></figure>'
        kind = b[0]
        if kind == "p":
            return f"<p>{_inline_md(b[1])}</p>"
        if kind == "ul":
            return "<ul>" + "".join(f"<li>{_inline_md(x)}</li>" for x in b[1]) + "</ul>"
        if kind == "notrun":
            return f'<div class="notrun"><strong>Not run:</strong> {_inline_md(b[1])}</div>'
        if kind == "gallery":
            return '<div class="grid">' + "".join(self._html_block(im, embed) for im in b[1]) + "</div>"
        if kind == "example":
            _, title, img, rows = b
            im = ""
            if img and (self.root / img.path).is_file():
                im = f'<img src="{self._src(img.path, embed)}" alt="{html.escape(img.alt)}">'
            dl = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in rows)
            return f'<div class="example"><h3>{_inline_md(title)}</h3>{im}<dl>{dl}</dl></div>'
        raise ValueError(f"unknown block {b!r}")

    def to_html(self, embed_images: bool = False) -> str:
        parts = [f"<h1>{html.escape(self.title)}</h1>"]
        parts += [f'<div class="meta">{_inline_md(m)}</div>' for m in self.meta]
        toc = "".join(f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>'
                      for i, s in enumerate(self.sections) if s.level == 2)
        parts.append(f"<ul>{toc}</ul>")
        for i, s in enumerate(self.sections):
            parts.append(f'<h{s.level} id="s{i}">{html.escape(s.title)}</h{s.level}>')
            parts += [self._html_block(b, embed_images) for b in s.blocks]
        body = "\n".join(parts)
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head>\n"
                f"<body><main>\n{body}\n</main></body></html>\n")

    def write(self, md_path: str | Path, html_path: str | Path, embed_images: bool = False) -> None:
        from ski_lvlm.utils.io import atomic_write_text

        atomic_write_text(md_path, self.to_markdown())
        atomic_write_text(html_path, self.to_html(embed_images))


# --------------------------------------------------------------------------------------------------
# data + plots
# --------------------------------------------------------------------------------------------------
def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSONL log; unreadable lines (a torn last write) are skipped."""
    out = []
    p = Path(path)
    if not p.is_file():
        return out
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def fmt_pct(v: float | None, nd: int = 1) -> str:
    """0.423 -> "42.3"; None -> "-"."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.{nd}f}"


def fmt_num(v: float | None, nd: int = 3) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    _plt().close(fig)
    tmp.replace(out)


def plot_curves(series: dict[str, tuple[Sequence[float], Sequence[float]]], out: str | Path, *, title: str,
                xlabel: str = "step", ylabel: str = "loss", smooth: int = 0) -> None:
    """Line plot of ``{label: (x, y)}``; ``smooth`` > 1 adds a moving average over that many points."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for label, (x, y) in series.items():
        x, y = np.asarray(x, float), np.asarray(y, float)
        if smooth > 1 and len(y) > smooth:
            line, = ax.plot(x, y, alpha=0.3)
            k = np.ones(smooth) / smooth
            ax.plot(x[smooth - 1:], np.convolve(y, k, mode="valid"), color=line.get_color(), label=label)
        else:
            ax.plot(x, y, label=label, marker="." if len(x) < 30 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, Path(out))


def plot_grouped_bars(groups: Sequence[str], values: dict[str, Sequence[float | None]], out: str | Path, *,
                      title: str, ylabel: str, hline: float | None = None, hline_label: str = "chance",
                      ymax: float | None = None) -> None:
    """Grouped bars: one group per class, one bar per model; an optional dashed reference line."""
    plt = _plt()
    n_g, n_s = len(groups), max(1, len(values))
    width = 0.8 / n_s
    fig, ax = plt.subplots(figsize=(max(6.4, 0.55 * n_g * max(1, n_s) + 1.5), 3.8))
    x = np.arange(n_g)
    for i, (label, vals) in enumerate(values.items()):
        v = np.array([np.nan if a is None else a for a in vals], float)
        ax.bar(x - 0.4 + width * (i + 0.5), v, width, label=label)
    if hline is not None:
        ax.axhline(hline, color="k", ls="--", lw=1, label=hline_label)
    ax.set_xticks(x, groups, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    if ymax is not None:
        ax.set_ylim(0, ymax)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, Path(out))


def save_frame_strip(frames: np.ndarray, out: str | Path, height: int = 96, gap: int = 2) -> None:
    """uint8 ``[t, H, W, 3]`` frames -> one PNG row, each frame scaled to ``height`` pixels."""
    from PIL import Image as PILImage

    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [t, H, W, 3], got {frames.shape}")
    t, h, w, _ = frames.shape
    fw = max(1, round(w * height / h))
    strip = PILImage.new("RGB", (t * fw + (t - 1) * gap, height), (255, 255, 255))
    for i, f in enumerate(frames):
        im = PILImage.fromarray(np.ascontiguousarray(f)).resize((fw, height), PILImage.BILINEAR)
        strip.paste(im, (i * (fw + gap), 0))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    strip.save(tmp, format="PNG")
    tmp.replace(out)
