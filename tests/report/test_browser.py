"""Open report.html in a real headless Chromium: every image decoded, no console error, a screenshot kept.

The browser is driven over the DevTools protocol on ``--remote-debugging-pipe`` (fd 3 in, fd 4 out; JSON
messages separated by NUL bytes), so no selenium/playwright is needed. The report page forbids scripts (its CSP),
so the checks run through ``Runtime.evaluate``, which the page's CSP does not govern. Screenshots go to
``$DIFFLIB_MODELS_TEST_ARTIFACTS`` when set, else ``test-artifacts/`` under the repository root (git-ignored).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from difflib_models.report.builder import write_report
from tests.report.synthetic import GGUF_CACHE_PATH, rich_report

REPO = Path(__file__).resolve().parents[2]
WIDTH = 1200


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def artifacts_dir() -> Path:
    out = Path(os.environ.get("DIFFLIB_MODELS_TEST_ARTIFACTS") or REPO / "test-artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


class Browser:
    """A headless Chromium page driven over the DevTools pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        fds = (to_browser_r, from_browser_w)

        def child_fds() -> None:  # the protocol's fixed descriptors: 3 = commands in, 4 = replies out
            os.dup2(fds[0], 3)
            os.dup2(fds[1], 4)

        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--mute-audio",
               f"--user-data-dir={profile}", "about:blank"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=child_fds, pass_fds=(3, 4))
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        try:
            self._attach()
        except BaseException:
            self.close()
            raise

    def _attach(self) -> None:
        deadline = time.monotonic() + 30
        while True:  # the first tab may appear a moment after the pipe answers
            pages = [t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page"]
            if pages or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        page = pages[0]
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=WIDTH, height=900,
                  deviceScaleFactor=1, mobile=False)

    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError("no reply from chromium")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, *, session: bool = False, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def open(self, url: str, timeout: float = 60.0) -> None:
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._read(deadline - time.monotonic()))

    def evaluate(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        return res["result"].get("value")

    def images(self) -> list[dict[str, Any]]:
        return self.evaluate("[...document.images].map(i => ({alt: i.alt, complete: i.complete, "
                             "width: i.naturalWidth, height: i.naturalHeight}))")

    def console_errors(self) -> list[str]:
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(p["entry"].get("text", ""))
            elif e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e.get("method") == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("text", "exception"))
        return out

    def screenshot(self, path: Path) -> Path:
        height = int(self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]["height"])
        shot = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Browser:
    binary = _chromium()
    if binary is None:
        # a failure, not a skip: CI must not go green without this evidence
        pytest.fail("no chromium/chrome on PATH: install the Debian package 'chromium' (scripts/test.sh does, "
                    "with apt-get as root or through sudo)")
    b = Browser(binary, tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.mark.parametrize("n_layers", [4, 1], ids=["drift-4-layers", "drift-1-layer"])
def test_report_renders_in_headless_chromium(browser: Browser, tmp_path: Path, n_layers: int) -> None:
    paths = write_report(rich_report(n_drift_layers=n_layers), tmp_path / "report", renderings=["html"])
    browser.open(paths["html"].resolve().as_uri())
    images = browser.images()
    # persona checks, 2 projection-vs-null, monitor, drift, crosscoder histogram: all decoded by the browser
    assert len(images) == 6, images
    assert all(img["complete"] and img["width"] > 100 and img["height"] > 100 for img in images), images
    assert browser.console_errors() == []
    assert browser.evaluate("document.getElementById('verdict').textContent") == "FAIL"
    # the 60 behavioural rows and 30 latents are collapsed, the models show their short names
    collapsed = browser.evaluate("[...document.querySelectorAll('details.long')].map(d => d.open + ' ' + "
                                 "d.querySelector('summary').textContent)")
    assert collapsed == ["false 60 behavioural items (click to show)", "false 30 latents (click to show)"]
    names = browser.evaluate("[...document.querySelectorAll('.model-name')].map(e => e.textContent)")
    assert names == ["SmolLM2-135M-Instruct (Q4_1)", "SmolLM2-135M-Instruct (Q4_1) + evil-lora"]
    decision = browser.evaluate("document.getElementById('monitor-decision').textContent")
    assert decision == ("FAIL at step 25: decided by evil shift_frac = 0.35 ≥ 0.25 (fail_frac); a fail needs 2 "
                        "consecutive checks over a fail line")
    details = browser.evaluate("document.querySelector('.model-details').textContent")
    assert GGUF_CACHE_PATH in details and "1" * 64 in details
    shot = browser.screenshot(artifacts_dir() / f"report-drift-{n_layers}-layer{'s' if n_layers > 1 else ''}.png")
    print(f"screenshot: {shot}")
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[1] == WIDTH and img.shape[0] > 2500


def test_browser_check_catches_broken_images_and_csp_errors(browser: Browser, tmp_path: Path) -> None:
    """The checks above can fail: a corrupt inline PNG has naturalWidth 0 and a blocked external image logs a
    console error under the report's CSP."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="default-src '
                    "'none'; img-src data:\"></head><body><img alt=corrupt src=\"data:image/png;base64,iVBORw0KGgo=\">"
                    '<img alt=external src="http://127.0.0.1:9/x.png"></body></html>', encoding="utf-8")
    browser.open(page.resolve().as_uri())
    images = browser.images()
    assert [img["width"] for img in images] == [0, 0]
    errors = browser.console_errors()
    assert any("Content Security Policy" in e for e in errors), errors


@pytest.fixture(scope="module")
def perturbed_tinystories(tinystories_656k: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of tinystories-656k with 2% Gaussian noise on its matrices: a cheap stand-in for a fine-tune."""
    import torch
    from safetensors.torch import load_file, save_file

    dst = tmp_path_factory.mktemp("models") / "tinystories-656k-noised"
    shutil.copytree(tinystories_656k, dst)
    gen = torch.Generator().manual_seed(0)
    state = load_file(str(tinystories_656k / "model.safetensors"))
    state = {k: v + 0.02 * v.float().std() * torch.randn(v.shape, generator=gen).to(v.dtype)
             if v.is_floating_point() and v.dim() == 2 else v for k, v in state.items()}
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


@pytest.mark.parametrize(("layers", "crosscoder", "n_images"), [("all", True, 2), ("1", False, 1)],
                         ids=["real-all-layers", "real-one-layer"])
def test_real_diff_report_renders(browser: Browser, tmp_path: Path, tinystories_656k: Path,
                                  perturbed_tinystories: Path, layers: str, crosscoder: bool, n_images: int) -> None:
    """A real diff of tinystories-656k and a noised copy (drift, ADL, weight deltas, crosscoder), rendered with
    `report --from`'s code path and opened in Chromium."""
    from difflib_models.diffing.pair import ModelPair
    from difflib_models.diffing.pipeline import DiffConfig, run_diff
    from difflib_models.models.loading import load_model
    from difflib_models.report.builder import rerender

    pair = ModelPair(load_model(str(tinystories_656k)), load_model(str(perturbed_tinystories)))
    run_diff(pair, DiffConfig(out=tmp_path / "d", layers=layers, max_texts=16, crosscoder=crosscoder, steps=50,
                              cc_batch_size=256, top_latents=5, n_examples=2))
    paths = rerender(tmp_path / "d", renderings=["html"])
    browser.open(paths["html"].resolve().as_uri())
    images = browser.images()
    assert len(images) == n_images and all(img["complete"] and img["width"] > 100 for img in images), images
    assert browser.console_errors() == []
    names = browser.evaluate("[...document.querySelectorAll('.model-name')].map(e => e.textContent)")
    assert names == ["tinystories-656k", "tinystories-656k-noised"]
    assert browser.evaluate("document.getElementById('verdict').textContent") == "NO CHECKS"
    rows = browser.evaluate("document.querySelectorAll('#drift tr').length")
    assert rows == 1 + (2 if layers == "all" else 1)
    shot = browser.screenshot(artifacts_dir() / f"report-real-tinystories-{'all-layers' if crosscoder else 'one-layer'}.png")
    print(f"screenshot: {shot}")
