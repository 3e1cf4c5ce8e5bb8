"""The HTML report is one well-formed, self-contained file: every image embedded and decodable, every
table present with readable numbers, the table of contents pointing at real sections; a headless
Chromium renders it without console errors (``browser`` marker)."""

from __future__ import annotations

import base64
import html.parser
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from diffbio_prob.plots import save_figure
from diffbio_prob.workflows.report import Report, format_number

PNG = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr"}
CHROMIUM = "/usr/bin/chromium"


class _Page(html.parser.HTMLParser):
    """Collect what the tests look at, and check every element is closed in order."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[dict] = []
        self.ids: list[str] = []
        self.links: list[str] = []
        self.tags: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.cell_classes: list[tuple[str, str]] = []
        self._cell: list[str] | None = None
        self._cell_class = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        for key in ("src", "href"):
            if key in attrs:
                self.links.append(attrs[key])
        if tag == "img":
            self.images.append(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._cell_class = [], attrs.get("class") or ""
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            self.tables[-1][-1].append(text)
            self.cell_classes.append((text, self._cell_class))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    assert not page.errors and not page.stack, (page.errors, page.stack)
    return page


def _figure(n: int = 3) -> Figure:
    fig = Figure(figsize=(4, 3))
    fig.add_subplot().plot(np.arange(n), np.arange(n) ** 2)
    return fig


def _summary() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "mean": [0.123456, -12.5, 3.0e-6],
            "sd": [0.01, 1.25, 1e-7],
            "hdi94_lb": [0.1, -15.0, 2e-6],
            "hdi94_ub": [0.14, -10.0, 4e-6],
            "ess_bulk": [1234.6, 80.2, 900.0],
            "ess_tail": [999.4, 1500.0, 420.0],
            "r_hat": [1.0004, 1.0234, 0.9991],
            "mcse_mean": [0.001, 0.1, 1e-8],
            "mcse_sd": [0.001, 0.1, 1e-8],
        },
        index=["mu", "sigma", "theta[0]"],
    )


def _sample_report(tmp_path: Path) -> tuple[Report, dict]:
    """A report using every kind of content; returns it and the PNGs it should embed."""
    png_path = save_figure(_figure(5), tmp_path / "from_file.png")
    raw = png_path.read_bytes()
    report = Report("Sample <report>", subtitle="Synthetic inputs & `code`", timestamp=False)
    report.add_text("Intro before any section.")
    report.section("Hidden Markov model", "Dice: **fair** and `loaded`.\n\n- gradient\n- SVI\n- NUTS")
    report.add_facts({"states": 2, "time (s)": 3.14159, "converged": True})
    report.section("Summary", level=3)
    report.add_summary(_summary(), "ArviZ summary", divergences=3, num_draws=1000)
    report.section("Figures", level=3)
    report.add_figure(_figure(), "A matplotlib figure")
    report.add_figure(png_path, "A PNG file")
    report.add_figure(raw, "PNG bytes")
    report.section("Differential expression")
    table = pd.DataFrame(
        {"baseMean": [12345.6, 0.5], "pvalue": [1.5e-12, np.nan], "padj": [2e-10, 0.9]},
        index=pd.Index(["geneA", "geneB"], name="gene"),
    )
    report.add_table(table, "DE results", formats={"baseMean": "{:.1f}"})
    report.add_table("<table><tr><td>raw html</td></tr></table>", "A ready-made table")
    report.section("Differential expression")  # same title twice: distinct anchors
    report.add_table(pd.DataFrame({"x": np.arange(100)}), "Long table", max_rows=10)
    return report, {"file": raw}


def test_report_is_well_formed_and_self_contained(tmp_path):
    report, expected = _sample_report(tmp_path)
    out = report.write(tmp_path / "out" / "report.html")
    text = out.read_text(encoding="utf-8")
    page = _parse(text)
    assert "script" not in page.tags and "link" not in page.tags  # no JavaScript, no external CSS
    # Every link is an in-page anchor or an embedded image; every anchor points at a real element.
    assert all(link.startswith(("#", "data:image/png;base64,")) for link in page.links)
    anchors = [link[1:] for link in page.links if link.startswith("#")]
    assert anchors == [
        "hidden-markov-model",
        "summary",
        "figures",
        "differential-expression",
        "differential-expression-2",
    ]
    assert set(anchors) <= set(page.ids) and len(page.ids) == len(set(page.ids))
    # Headings are numbered like the table of contents.
    headings = re.findall(r'<h([23]) id="[^"]+"><span class="num">([\d.]+)</span>', text)
    assert headings == [("2", "1"), ("3", "1.1"), ("3", "1.2"), ("2", "2"), ("2", "3")]
    # Three figures, all decodable PNGs; the rendered one is shown at its CSS pixel size.
    assert len(page.images) == 3
    decoded = []
    for img in page.images:
        data = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        assert data.startswith(PNG) and data[12:16] == b"IHDR"
        decoded.append(data)
    assert decoded[1] == expected["file"] and decoded[2] == expected["file"]
    width_px = int.from_bytes(decoded[0][16:20], "big")
    assert int(page.images[0]["width"]) == round(width_px * 96 / 144)
    assert [img["alt"] for img in page.images] == ["A matplotlib figure", "A PNG file", "PNG bytes"]
    # Escaping: the title's markup is text, the inline markup of prose is rendered.
    assert "<title>Sample &lt;report&gt;</title>" in text
    assert "<strong>fair</strong>" in text and "<code>loaded</code>" in text and "<li>SVI</li>" in text
    assert [c for c in re.findall(r"<b>(Figure|Table) (\d+)\.</b>", text)] == [
        ("Table", "1"),
        ("Figure", "1"),
        ("Figure", "2"),
        ("Figure", "3"),
        ("Table", "2"),
        ("Table", "3"),
        ("Table", "4"),
    ]


def test_report_tables_hold_the_numbers_formatted(tmp_path):
    report, _ = _sample_report(tmp_path)
    page = _parse(report.to_html())
    summary, de, raw, long = page.tables
    assert summary[0] == [
        "",
        "mean",
        "sd",
        "hdi94_lb",
        "hdi94_ub",
        "ess_bulk",
        "ess_tail",
        "r_hat",
    ]  # no mcse_*
    assert summary[1] == ["mu", "0.1235", "0.01", "0.1", "0.14", "1,235", "999", "1.000"]
    assert summary[2] == ["sigma", "-12.5", "1.25", "-15", "-10", "80", "1,500", "1.023"]
    assert summary[3] == ["theta[0]", "3.00e-06", "1.00e-07", "2.00e-06", "4.00e-06", "900", "420", "0.999"]
    # R-hat above 1.01 and ESS below 400 are highlighted, nothing else.
    warned = sorted(text for text, cls in page.cell_classes if "warn" in cls)
    assert warned == ["1.023", "80"]
    assert de == [
        ["gene", "baseMean", "pvalue", "padj"],
        ["geneA", "12345.6", "1.50e-12", "2.00e-10"],
        ["geneB", "0.5", "—", "0.9"],
    ]
    assert raw == [["raw html"]]
    assert len(long) == 11 and long[0] == ["x"]  # header + 10 rows, no index column for a RangeIndex
    text = report.to_html()
    assert "Showing the first 10 of 100 rows." in text
    assert "divergences: 3 of 1,000 draws" in text
    assert "R-hat &gt; 1.01: 1 of 3" in text and "ESS &lt; 400: 1 of 3" in text


@pytest.mark.parametrize(
    "value, kind, expected",
    [
        (0.000012345, "auto", "1.23e-05"),
        (0.12345, "auto", "0.1235"),
        (12.345, "auto", "12.35"),
        (9999.4, "auto", "9999"),
        (9999.6, "auto", "10,000"),
        (123456.7, "auto", "123,457"),
        (2.5e12, "auto", "2.500e+12"),
        (-0.5, "auto", "-0.5"),
        (0.0, "auto", "0"),
        (7, "auto", "7"),
        (np.int64(1234567), "auto", "1,234,567"),
        (float("nan"), "auto", "—"),
        (None, "auto", "—"),
        (pd.NA, "auto", "—"),
        (np.True_, "auto", "yes"),
        (float("inf"), "auto", "∞"),
        (399.6, "int", "400"),
        (1.00049, "rhat", "1.000"),
        ("text", "auto", "text"),
    ],
)
def test_format_number(value, kind, expected):
    assert format_number(value, kind=kind) == expected


def test_report_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "report.html"
    target.write_text("old")
    report = Report("R", timestamp=False)

    def broken():
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "to_html", broken)
    with pytest.raises(KeyboardInterrupt):
        report.write(target)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_report_timestamp_names_the_version():
    from diffbio_prob import __version__

    text = Report("R").to_html()
    assert re.search(
        rf"Generated \d{{4}}-\d\d-\d\d \d\d:\d\d.* by diffbio-prob {re.escape(__version__)}", text
    )
    assert "Generated" not in Report("R", timestamp=False).to_html()


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda r, p: Report(123), TypeError, "title: expected a string"),
        (lambda r, p: Report("  "), ValueError, "title: expected a non-empty"),
        (lambda r, p: r.section("x", level=4), ValueError, "level"),
        (lambda r, p: Report("R").section("x", level=3), ValueError, "needs a section"),
        (lambda r, p: r.add_text(5), TypeError, "text: expected a string"),
        (lambda r, p: r.add_table([1, 2]), TypeError, "table: expected a pandas DataFrame"),
        (lambda r, p: r.add_table("<p>no</p>"), ValueError, "must contain a <table>"),
        (lambda r, p: r.add_table(pd.DataFrame({"a": [1]}), max_rows=0), ValueError, "max_rows"),
        (lambda r, p: r.add_table(pd.DataFrame({"a": [1]}), formats={"b": "{}"}), ValueError, "formats"),
        (lambda r, p: r.add_table(pd.DataFrame({"a": [1]}), index="yes"), ValueError, "index"),
        (lambda r, p: r.add_summary([1]), TypeError, "summary"),
        (lambda r, p: r.add_summary(_summary(), divergences=-1), ValueError, "divergences"),
        (lambda r, p: r.add_figure(p / "missing.png"), FileNotFoundError, "no such PNG file"),
        (lambda r, p: r.add_figure(b"GIF89a" + bytes(40)), ValueError, "not a PNG"),
        (lambda r, p: r.add_figure(42), TypeError, "figure: expected a matplotlib Figure"),
        (lambda r, p: r.add_facts([1]), TypeError, "facts"),
        (lambda r, p: r.write(p / "report.txt"), ValueError, "ending in .html"),
        (lambda r, p: (p / "d.html").mkdir() or r.write(p / "d.html"), IsADirectoryError, "is a directory"),
    ],
)
def test_report_rejects_bad_input(tmp_path, call, exc, match):
    report = Report("R").section("S")
    with pytest.raises(exc, match=match):
        call(report, tmp_path)
    # A rejected call adds nothing: numbering is unchanged.
    report.add_table(pd.DataFrame({"a": [1]}))
    assert "<b>Table 1.</b>" in report.to_html()


# --- a real browser ------------------------------------------------------------------------------
def _chromium(args: list[str], profile: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=os.environ | {"LANG": "C"}
    )


@pytest.mark.browser
@pytest.mark.skipif(
    not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None,
    reason="needs Debian's chromium at /usr/bin/chromium",
)
def test_report_renders_in_headless_chromium(tmp_path):
    report, _ = _sample_report(tmp_path)
    page = report.write(tmp_path / "report.html")
    shot = tmp_path / "report.png"
    run = _chromium([f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()], tmp_path / "profile")
    assert run.returncode == 0, run.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG) and len(data) > 20_000
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (1280, 2000)
    # Chromium logs page console messages (errors, uncaught exceptions) as ":CONSOLE" lines.
    console = [ln for ln in run.stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console

    # Did the browser decode every embedded image? A probe script in a copy of the page writes the
    # count of loaded images into the DOM, which --dump-dom prints after the load event.
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.read_text(encoding="utf-8").replace(
            "</body>",
            "<script>window.addEventListener('load', () => { const imgs = [...document.images];"
            " document.body.dataset.decoded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;"
            " document.body.dataset.total = imgs.length; });</script></body>",
        ),
        encoding="utf-8",
    )
    run = _chromium(["--dump-dom", "--virtual-time-budget=5000", probe.as_uri()], tmp_path / "profile2")
    assert run.returncode == 0, run.stderr[-2000:]
    assert 'data-decoded="3"' in run.stdout and 'data-total="3"' in run.stdout
    assert "Hidden Markov model" in run.stdout
    keep = os.environ.get("DIFFBIO_PROB_SCREENSHOT_DIR")
    if keep:  # let CI or a person look at the rendering
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report_sample.png")
