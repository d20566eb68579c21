"""The docs' pictures: the plots are rendered from the results files (a committed plot that
differs from a fresh rendering fails here, as a stale table does); the Evidently report's
picture is shot with Chromium where it is installed."""

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import docs_plots, docs_screenshot
from recsys.config import RecsysError

ROOT = Path(__file__).resolve().parents[3]


def test_committed_plots_are_what_the_results_render():
    assert docs_plots.stale() == [], "run: python -m benchmarks.docs_plots"


def test_a_plot_draws_every_recorded_series_and_says_when(tmp_path):
    result = json.loads((docs_plots.RESULTS / "serving_load.json").read_text())
    svg = docs_plots.serving_plot(result)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert result["when"][:10] in svg and result["code_version"] in svg
    drawn = {(r["topology"], r["proxy"], r["replicas"]) for r in result["rows"]} & set(
        docs_plots.SERIES
    )
    assert svg.count("<polyline") == 2 * len(drawn) > 0  # a line per series in each panel
    # a changed figure changes the picture, and the check sees it
    drawn_row = next(
        r for r in result["rows"] if (r["topology"], r["proxy"], r["replicas"]) in drawn
    )
    drawn_row["rps"] *= 2
    (tmp_path / "serving_throughput.svg").write_text(docs_plots.serving_plot(result))
    (tmp_path / "quality.svg").write_text(docs_plots.rendered()["quality.svg"])
    assert docs_plots.stale(tmp_path) == ["serving_throughput.svg"]


def test_the_quality_plot_shows_each_model_on_both_protocols():
    result = json.loads((docs_plots.RESULTS / "quality_movielens.json").read_text())
    svg = docs_plots.quality_plot(result)
    for model in docs_plots.QUALITY_MODELS:
        assert f">{model}" in svg
    shipped = [
        r["ndcg"]
        for r in result["rows"]
        if (r["protocol"], r["model"]) == ("temporal", "multistage")
    ]
    assert f"{sum(shipped) / len(shipped):.4f}" in svg


def test_the_plots_are_on_a_page():
    pages = "".join(p.read_text() for p in (ROOT / "docs").rglob("*.md"))
    for name in [*docs_plots.PLOTS, docs_screenshot.OUT.name]:
        assert f"img/{name}" in pages, name
        assert (docs_plots.IMAGES / name).is_file(), name


def test_the_screenshot_says_what_is_missing_and_writes_nothing(tmp_path, monkeypatch):
    with pytest.raises(RecsysError, match="run `make demo` first"):
        docs_screenshot.newest_report(tmp_path)
    monkeypatch.setattr(docs_screenshot.shutil, "which", lambda name: None)
    page = tmp_path / "report.html"
    page.write_text("<html><body><h1>report</h1></body></html>")
    out = tmp_path / "img" / "shot.png"
    assert docs_screenshot.main(["--report", str(page), "--out", str(out)]) == 1
    assert not out.exists()


@pytest.mark.skipif(
    not any(shutil.which(b) for b in docs_screenshot.BROWSERS), reason="no Chromium here"
)
def test_the_screenshot_is_a_png_of_the_page(tmp_path):
    page = tmp_path / "report.html"
    page.write_text("<html><body><h1>report</h1></body></html>")
    out = docs_screenshot.shoot(page, tmp_path / "shot.png", 320, 200)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
