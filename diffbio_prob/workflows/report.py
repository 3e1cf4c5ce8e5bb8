"""A self-contained HTML report: sections, text, tables and figures in one file.

Everything the page needs is inside it: the CSS is inline, figures are PNGs embedded as base64 data
URIs, and there is no JavaScript, so the file can be mailed, archived or opened offline. Sections are
numbered and listed in a table of contents; figures and tables are numbered with their captions.
Numbers in tables are formatted by magnitude (4 significant digits, thousands separators, scientific
notation below 0.001), ESS as integers and R-hat with 3 decimals; ArviZ summaries get their
convergence warnings highlighted.

Example:
    >>> import pandas as pd
    >>> report = Report("My analysis", timestamp=False)
    >>> _ = report.section("Results", "Two genes, one of them **significant**.")
    >>> _ = report.add_table(pd.DataFrame({"padj": [0.5, 1e-8]}, index=["g1", "g2"]), "Adjusted p-values")
    >>> "<table" in report.to_html()
    True
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import os
import re
from numbers import Integral, Real
from pathlib import Path

import numpy as np

__all__ = ["Report", "format_number"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Rendered figures are drawn at this dpi and shown at CSS pixel size (96 per inch): sharp on HiDPI screens.
_FIGURE_DPI = 144
_CSS_DPI = 96

_CSS = """
:root {
  --fg: #1c2330; --muted: #5a6472; --accent: #0b5cad; --border: #dfe3ea; --alt: #f5f7fa;
  --warn: #fff1c2; --bad: #b42318; --good: #067647;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; color: var(--fg); background: #fff;
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
.page { display: grid; grid-template-columns: 240px minmax(0, 1fr); gap: 40px;
        max-width: 1320px; margin: 0 auto; padding: 28px 28px 64px; }
nav.toc { position: sticky; top: 20px; align-self: start; max-height: calc(100vh - 40px);
          overflow-y: auto; font-size: 14px; border-right: 1px solid var(--border); padding-right: 16px; }
nav.toc h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .08em; color: var(--muted);
             margin: 4px 0 8px; border: 0; padding: 0; }
nav.toc ol { list-style: none; margin: 0; padding: 0; }
nav.toc ol ol { padding-left: 14px; font-size: 13px; }
nav.toc li { margin: 3px 0; }
nav.toc a { color: var(--fg); text-decoration: none; }
nav.toc a:hover { color: var(--accent); text-decoration: underline; }
nav.toc .num { color: var(--muted); margin-right: 6px; font-variant-numeric: tabular-nums; }
main { min-width: 0; }
header.report { border-bottom: 2px solid var(--fg); margin-bottom: 8px; padding-bottom: 10px; }
header.report h1 { font-size: 28px; line-height: 1.2; margin: 0 0 6px; }
header.report p { margin: 2px 0; color: var(--muted); }
h2 { font-size: 21px; margin: 40px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--border); }
h3 { font-size: 17px; margin: 28px 0 8px; }
h2 .num, h3 .num { color: var(--muted); margin-right: 8px; font-weight: 600; }
p { margin: 8px 0; max-width: 80ch; }
ul { max-width: 80ch; padding-left: 22px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em;
       background: var(--alt); border: 1px solid var(--border); border-radius: 4px; padding: 0 4px; }
figure { margin: 18px 0 26px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--border);
             border-radius: 6px; background: #fff; }
figcaption { color: var(--muted); font-size: 13.5px; margin-top: 6px; max-width: 90ch; }
figcaption b { color: var(--fg); }
.table-wrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 13.5px; font-variant-numeric: tabular-nums; margin: 4px 0; }
caption { caption-side: top; text-align: left; color: var(--muted); font-size: 13.5px; padding-bottom: 6px; }
caption b { color: var(--fg); }
th, td { padding: 4px 12px; border-bottom: 1px solid var(--border); vertical-align: top; }
thead th { border-bottom: 2px solid #b8c0cc; text-align: left; white-space: nowrap; font-weight: 600; }
tbody th { text-align: left; font-weight: 500; white-space: nowrap; }
tbody tr:nth-child(even) { background: var(--alt); }
td.num, th.num { text-align: right; white-space: nowrap; }
td.na { color: #9aa3af; text-align: center; }
td.warn { background: var(--warn); font-weight: 600; }
p.note { font-size: 13px; color: var(--muted); margin: 4px 0 0; }
.badges { display: flex; flex-wrap: wrap; gap: 8px; margin: 10px 0 6px; }
.badge { display: inline-block; font-size: 13px; padding: 2px 10px; border-radius: 999px;
         border: 1px solid currentColor; }
.badge.ok { color: var(--good); background: #ecfdf3; }
.badge.bad { color: var(--bad); background: #fef3f2; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 18px; margin: 10px 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
footer.report { margin-top: 48px; border-top: 1px solid var(--border); padding-top: 10px;
                color: var(--muted); font-size: 13px; }
@media (max-width: 960px) {
  .page { grid-template-columns: 1fr; gap: 8px; }
  nav.toc { position: static; max-height: none; border-right: 0; border-bottom: 1px solid var(--border);
            padding-bottom: 12px; }
}
@media print {
  nav.toc { display: none; }
  .page { display: block; max-width: none; padding: 0; }
  figure, table { break-inside: avoid; }
}
"""


def format_number(value, *, kind: str = "auto") -> str:
    """Format one table cell for reading: magnitude-aware, no float noise, NaN as an em dash.

    ``kind`` is "auto", "int" (round to an integer with thousands separators, e.g. ESS) or "rhat"
    (3 decimals).

    Example:
        >>> [format_number(v) for v in (0.000012345, 0.12345, 12.345, 123456.7, float("nan"), 3)]
        ['1.23e-05', '0.1235', '12.35', '123,457', '—', '3']
    """
    if value is None:
        return "—"
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return "—"
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return f"{int(value):,}"
    if isinstance(value, Real):
        x = float(value)
        if math.isnan(x):
            return "—"
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        if kind == "int":
            return f"{round(x):,}"
        if kind == "rhat":
            return f"{x:.3f}"
        a = abs(x)
        if a == 0:
            return "0"
        if a < 1e-3:
            return f"{x:.2e}"
        if a < 9999.5:  # below this, 4 significant digits never round up to "1e+04"
            return f"{x:.4g}"
        if a < 1e9:
            return f"{x:,.0f}"
        return f"{x:.3e}"
    return str(value)


def _is_missing(value) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(value, Real) and not isinstance(value, Integral) and math.isnan(float(value))


def _column_kind(name) -> str:
    label = str(name).lower()
    if label.startswith("ess"):
        return "int"
    if label in ("r_hat", "rhat", "r-hat"):
        return "rhat"
    return "auto"


def _inline(text: str) -> str:
    """Escape text, then allow `code` and **bold** (the only markup the report's prose needs)."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _paragraphs(text: str) -> str:
    blocks = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [ln.strip() for ln in block.strip().splitlines() if ln.strip()]
        if not lines:
            continue
        if all(ln.startswith(("- ", "* ")) for ln in lines):
            items = "".join(f"<li>{_inline(ln[2:])}</li>" for ln in lines)
            blocks.append(f"<ul>{items}</ul>")
        else:
            blocks.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "\n".join(blocks)


def _png_size(data: bytes) -> tuple[int, int]:
    # IHDR is the first chunk: width and height are big-endian uint32 at bytes 16..24.
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _check_text(value, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, got {type(value).__name__}")
    return value


class Report:
    """Build a self-contained HTML report, section by section.

    Methods return the report, so calls chain. Content added before the first section goes under the
    title. Nothing is written until :meth:`write`, which is atomic.

    Args:
        title: the page title.
        subtitle: optional line under the title.
        timestamp: add "Generated <date> by diffbio-prob <version>" under the title (False for
            byte-identical output across runs).

    Example:
        >>> from matplotlib.figure import Figure
        >>> fig = Figure(); _ = fig.add_subplot().plot([1, 2, 4])
        >>> html_text = (Report("Demo", timestamp=False).section("A figure")
        ...              .add_figure(fig, "Three points").to_html())
        >>> "data:image/png;base64," in html_text
        True
    """

    def __init__(self, title: str, *, subtitle: str | None = None, timestamp: bool = True):
        self.title = _check_text(title, "title")
        if not title.strip():
            raise ValueError("title: expected a non-empty string")
        self.subtitle = _check_text(subtitle, "subtitle") if subtitle is not None else None
        self.timestamp = bool(timestamp)
        self._blocks: list[str] = []
        self._toc: list[tuple[int, str, str, str]] = []  # (level, number, id, title)
        self._ids: set[str] = set()
        self._counters = [0, 0]
        self._figures = 0
        self._tables = 0

    # --- structure -------------------------------------------------------------------------------
    def section(self, title: str, text: str | None = None, *, level: int = 2) -> Report:
        """Start a numbered section (``level=2``) or subsection (``level=3``), optionally with text."""
        _check_text(title, "title")
        if not title.strip():
            raise ValueError("title: expected a non-empty section title")
        if level not in (2, 3):
            raise ValueError(f"level: expected 2 (section) or 3 (subsection), got {level!r}")
        if level == 2:
            self._counters = [self._counters[0] + 1, 0]
            number = f"{self._counters[0]}"
        else:
            if self._counters[0] == 0:
                raise ValueError("level: a subsection (level=3) needs a section (level=2) before it")
            self._counters[1] += 1
            number = f"{self._counters[0]}.{self._counters[1]}"
        anchor = self._anchor(title)
        self._toc.append((level, number, anchor, title))
        self._blocks.append(
            f'<h{level} id="{anchor}"><span class="num">{number}</span>{html.escape(title)}</h{level}>'
        )
        if text is not None:
            self.add_text(text)
        return self

    def _anchor(self, title: str) -> str:
        base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
        anchor, i = base, 2
        while anchor in self._ids:
            anchor, i = f"{base}-{i}", i + 1
        self._ids.add(anchor)
        return anchor

    # --- content ---------------------------------------------------------------------------------
    def add_text(self, text: str) -> Report:
        """Add prose: blank lines separate paragraphs, lines starting with "- " make a list, and
        `code` and **bold** are the only markup (everything else is escaped)."""
        _check_text(text, "text")
        self._blocks.append(_paragraphs(text))
        return self

    def add_html(self, markup: str) -> Report:
        """Add trusted HTML as-is (no escaping); for anything the other methods do not cover."""
        self._blocks.append(_check_text(markup, "markup"))
        return self

    def add_facts(self, facts, caption: str | None = None) -> Report:
        """Add a short list of ``label: value`` pairs (a dict), e.g. what was fitted and how long it took."""
        if not hasattr(facts, "items"):
            raise TypeError(f"facts: expected a dict of label -> value, got {type(facts).__name__}")
        rows = "".join(
            f"<dt>{html.escape(str(k))}</dt>"
            f"<dd>{html.escape(format_number(v) if isinstance(v, Real) else str(v))}</dd>"
            for k, v in facts.items()
        )
        head = f'<p class="note">{_inline(caption)}</p>' if caption else ""
        self._blocks.append(f'{head}<dl class="facts">{rows}</dl>')
        return self

    def add_table(
        self,
        table,
        caption: str | None = None,
        *,
        index: bool | str = "auto",
        max_rows: int = 60,
        formats=None,
        _highlight=None,
    ) -> Report:
        """Add a numbered table from a DataFrame (formatted) or a ready HTML ``<table>`` string.

        Args:
            table: ``pandas.DataFrame`` (or Series) or an HTML string containing a ``<table>``.
            caption: optional caption.
            index: show the row index: True, False or "auto" (shown unless it is a plain 0..n-1 range).
            max_rows: show at most this many rows (a note says how many were left out).
            formats: optional ``{column: format}`` overriding the automatic number format, where a
                format is a ``str.format`` pattern such as ``"{:.2f}"`` or a callable value -> str.
        """
        import pandas as pd

        if isinstance(table, pd.Series):
            table = table.to_frame()
        formats = dict(formats or {})
        for col, fmt in formats.items():
            if not isinstance(table, pd.DataFrame) or col not in table.columns:
                raise ValueError(f"formats: column {col!r} is not a column of the table")
            if not (callable(fmt) or isinstance(fmt, str)):
                raise TypeError(
                    f"formats[{col!r}]: expected a format string or a callable, got {type(fmt).__name__}"
                )

        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise ValueError(f"max_rows: expected a positive integer, got {max_rows!r}")
        if caption is not None:
            _check_text(caption, "caption")
        if isinstance(table, str):
            if "<table" not in table.lower():
                raise ValueError("table: an HTML string must contain a <table> element")
        elif not isinstance(table, pd.DataFrame):
            raise TypeError(
                f"table: expected a pandas DataFrame or an HTML string, got {type(table).__name__}"
            )
        if index == "auto":
            index = not isinstance(getattr(table, "index", None), pd.RangeIndex)
        elif not isinstance(index, bool):
            raise ValueError(f"index: expected True, False or 'auto', got {index!r}")
        self._tables += 1
        label = f"<b>Table {self._tables}.</b> {_inline(caption) if caption else ''}"
        if isinstance(table, str):
            self._blocks.append(
                f'<figure class="table"><div class="table-wrap">{table}</div>'
                f"<figcaption>{label}</figcaption></figure>"
            )
        else:
            self._blocks.append(
                self._table_html(
                    table,
                    f"<caption>{label}</caption>",
                    index=index,
                    max_rows=max_rows,
                    highlight=_highlight,
                    formats=formats,
                )
            )
        return self

    def _table_html(self, df, cap: str, *, index: bool, max_rows: int, highlight, formats) -> str:
        import pandas as pd

        shown = df.iloc[:max_rows]
        columns = [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in df.columns]
        numeric = [
            pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns
        ]
        head_index = f"<th>{html.escape(str(df.index.name or ''))}</th>" if index else ""
        head = "".join(
            f'<th class="num">{html.escape(c)}</th>' if num else f"<th>{html.escape(c)}</th>"
            for c, num in zip(columns, numeric, strict=True)
        )
        body = []
        for label, row in zip(shown.index, shown.itertuples(index=False, name=None), strict=True):
            cells = [f"<th>{html.escape(str(label))}</th>"] if index else []
            for col, value, num in zip(df.columns, row, numeric, strict=True):
                classes = []
                if _is_missing(value):
                    classes.append("na")
                elif num or isinstance(value, Real):
                    classes.append("num")
                if highlight is not None and not _is_missing(value) and highlight(col, value):
                    classes.append("warn")
                attr = f' class="{" ".join(classes)}"' if classes else ""
                fmt = formats.get(col)
                if fmt is None or _is_missing(value):
                    text = format_number(value, kind=_column_kind(col))
                else:
                    text = fmt(value) if callable(fmt) else fmt.format(value)
                cells.append(f"<td{attr}>{html.escape(text)}</td>")
            body.append(f"<tr>{''.join(cells)}</tr>")
        note = ""
        if len(df) > max_rows:
            note = f'<p class="note">Showing the first {max_rows:,} of {len(df):,} rows.</p>'
        return (
            f'<div class="table-wrap"><table>{cap}<thead><tr>{head_index}{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>{note}"
        )

    def add_summary(
        self,
        summary,
        caption: str | None = None,
        *,
        divergences: int | None = None,
        num_draws: int | None = None,
        rhat_max: float = 1.01,
        ess_min: float = 400.0,
        all_columns: bool = False,
        max_rows: int = 60,
    ) -> Report:
        """Add an ArviZ posterior summary with its convergence checks spelled out.

        Shows mean, sd, the credible interval, ESS (bulk, tail) and R-hat (the ``mcse_*`` columns only
        with ``all_columns=True``); R-hat above ``rhat_max`` and ESS below ``ess_min`` are highlighted
        (thresholds of Vehtari et al. 2021, Bayesian Analysis 16:667), and badges above the table give
        the divergence count and how many parameters fail each check.

        Args:
            summary: ``az.summary(...)`` DataFrame (or ``FitResult.summary()``).
            caption: optional caption.
            divergences: number of divergent transitions (None: not applicable, e.g. SVI).
            num_draws: total post-warmup draws, to say "3 of 1,000".
            rhat_max, ess_min: convergence thresholds.
            all_columns: keep every column of ``summary``.
            max_rows: show at most this many parameters.
        """
        import pandas as pd

        if not isinstance(summary, pd.DataFrame):
            raise TypeError(
                f"summary: expected a pandas DataFrame (az.summary), got {type(summary).__name__}"
            )
        if divergences is not None and (
            isinstance(divergences, bool) or not isinstance(divergences, Integral) or divergences < 0
        ):
            raise ValueError(f"divergences: expected a non-negative integer or None, got {divergences!r}")
        table = summary
        if not all_columns:
            table = summary[[c for c in summary.columns if not str(c).startswith("mcse")]]

        def numeric(col):
            return pd.to_numeric(summary[col], errors="coerce") if col in summary.columns else None

        badges = []
        if divergences is not None:
            of = f" of {num_draws:,} draws" if num_draws else ""
            cls = "ok" if divergences == 0 else "bad"
            badges.append(f'<span class="badge {cls}">divergences: {divergences:,}{of}</span>')
        rhat = numeric("r_hat")
        if rhat is not None:
            n_bad = int((rhat > rhat_max).sum())
            cls = "ok" if n_bad == 0 else "bad"
            badges.append(f'<span class="badge {cls}">R-hat &gt; {rhat_max:g}: {n_bad} of {len(rhat)}</span>')
        ess_cols = [c for c in ("ess_bulk", "ess_tail") if c in summary.columns]
        if ess_cols:
            low = (pd.concat([numeric(c) for c in ess_cols], axis=1) < ess_min).any(axis=1)
            n_low = int(low.sum())
            cls = "ok" if n_low == 0 else "bad"
            badges.append(f'<span class="badge {cls}">ESS &lt; {ess_min:g}: {n_low} of {len(low)}</span>')
        if badges:
            self._blocks.append(f'<div class="badges">{"".join(badges)}</div>')

        def highlight(col, value):
            kind = _column_kind(col)
            if not isinstance(value, Real):
                return False
            return (kind == "rhat" and value > rhat_max) or (kind == "int" and value < ess_min)

        return self.add_table(table, caption, index=True, max_rows=max_rows, _highlight=highlight)

    def add_figure(self, figure, caption: str | None = None, *, alt: str | None = None) -> Report:
        """Add a numbered figure, embedded as a base64 PNG.

        Args:
            figure: a matplotlib Figure, an ArviZ ``PlotCollection``, PNG bytes, or the path of a PNG file.
            caption: optional caption.
            alt: alternative text (default: the caption).
        """
        from matplotlib.figure import Figure

        if caption is not None:
            _check_text(caption, "caption")
        width = None
        if hasattr(figure, "viz") and hasattr(figure, "map"):  # ArviZ PlotCollection
            figure = figure.viz["figure"].item()
        if isinstance(figure, Figure):
            from diffbio_prob.plots._common import figure_to_png

            data = figure_to_png(figure, dpi=_FIGURE_DPI)
            width = round(_png_size(data)[0] * _CSS_DPI / _FIGURE_DPI)
        elif isinstance(figure, (bytes, bytearray)):
            data = bytes(figure)
            if not data.startswith(_PNG_SIGNATURE):
                raise ValueError("figure: bytes are not a PNG image (bad signature)")
        elif isinstance(figure, (str, os.PathLike)):
            path = Path(figure)
            if not path.is_file():
                raise FileNotFoundError(f"figure: no such PNG file: {str(path)!r}")
            data = path.read_bytes()
            if not data.startswith(_PNG_SIGNATURE):
                raise ValueError(f"figure: {str(path)!r} is not a PNG image (bad signature)")
        else:
            raise TypeError(
                "figure: expected a matplotlib Figure, a PlotCollection, PNG bytes or a PNG path, got "
                f"{type(figure).__name__}"
            )
        if len(data) < 33:
            raise ValueError("figure: PNG data is truncated")
        self._figures += 1
        encoded = base64.b64encode(data).decode("ascii")
        alt_text = html.escape(alt if alt is not None else (caption or f"Figure {self._figures}"), quote=True)
        size = f' width="{width}"' if width else ""
        cap = f"<figcaption><b>Figure {self._figures}.</b> {_inline(caption) if caption else ''}</figcaption>"
        self._blocks.append(
            f'<figure><img src="data:image/png;base64,{encoded}" alt="{alt_text}"{size}>{cap}</figure>'
        )
        return self

    # --- output ----------------------------------------------------------------------------------
    def _toc_html(self) -> str:
        if not self._toc:
            return ""
        out, depth = ["<ol>"], 2
        for i, (level, number, anchor, title) in enumerate(self._toc):
            if level > depth:
                out.append("<ol>")
            elif level < depth:
                out.append("</li></ol></li>")
            elif i:
                out.append("</li>")
            depth = level
            out.append(f'<li><a href="#{anchor}"><span class="num">{number}</span>{html.escape(title)}</a>')
        out.append("</li>" + ("</ol></li>" if depth == 3 else "") + "</ol>")
        return f'<nav class="toc" aria-label="Contents"><h2>Contents</h2>{"".join(out)}</nav>'

    def to_html(self) -> str:
        """The whole page as a string."""
        from diffbio_prob import __version__

        lines = []
        if self.subtitle:
            lines.append(f"<p>{_inline(self.subtitle)}</p>")
        stamp = ""
        if self.timestamp:
            now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()
            stamp = f"Generated {now} by diffbio-prob {__version__}"
            lines.append(f"<p>{html.escape(stamp)}</p>")
        footer = f"diffbio-prob {__version__}" + (f" · {html.escape(now)}" if self.timestamp else "")
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(self.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f'<div class="page">\n{self._toc_html()}\n<main>\n'
            f'<header class="report"><h1>{html.escape(self.title)}</h1>{"".join(lines)}</header>\n'
            + "\n".join(self._blocks)
            + f'\n<footer class="report">{footer}</footer>\n</main>\n</div>\n</body>\n</html>\n'
        )

    def write(self, path: str | os.PathLike) -> Path:
        """Write the page to ``path`` (``.html``/``.htm``) atomically; return the path."""
        from diffbio_prob.io.atomic import atomic_write

        path = Path(path)
        if path.suffix.lower() not in (".html", ".htm"):
            raise ValueError(f"path: expected a file name ending in .html, got {str(path)!r}")
        if path.is_dir():
            raise IsADirectoryError(f"path: {str(path)!r} is a directory")
        text = self.to_html()
        with atomic_write(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return path
