"""Render report.html in a real headless Chromium and check the screenshot shows the plots."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from difflib_models.report.builder import write_report
from tests.report.synthetic import synthetic_report


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _count_colour(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 12) -> int:
    px = (img[..., :3] * 255).round().astype(int) if img.dtype != np.uint8 else img[..., :3].astype(int)
    return int((np.abs(px - np.array(rgb)).max(axis=-1) <= tol).sum())


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:  # a failure, not a skip: CI must not go green without this evidence
        pytest.fail("no chromium/chrome on PATH: install the Debian package 'chromium' (scripts/test.sh does, "
                    "with apt-get as root or through sudo)")
    paths = write_report(synthetic_report(), tmp_path / "report")
    shot = tmp_path / "screenshot.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,5000", f"--screenshot={shot}",
           paths["html"].resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 10_000
    artifacts = os.environ.get("DIFFLIB_MODELS_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "report-screenshot.png")
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[0] >= 2000 and img.shape[1] >= 1000
    # plot colours (histogram bars #4c72b0, line plots #1f77b4) only come from the inline PNGs: they decoded
    assert _count_colour(img, (0x4C, 0x72, 0xB0)) > 500
    assert _count_colour(img, (0x1F, 0x77, 0xB4)) > 200
    # verdict badge (fail red) rendered from the inline CSS
    assert _count_colour(img, (0xC6, 0x28, 0x28)) > 100
