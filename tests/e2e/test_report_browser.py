"""The morning's report as a user sees it: `make demo`'s report.html opened in a real headless browser
(Debian's chromium, from .ci/install-chromium.sh). The DOM as rendered says whether the page loaded whole:
no errors, the plot decoded with a size, every section there; the screenshot is kept for a person to look at."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_demo import run_demo

CHROMIUM = Path(os.environ.get("AUTOHARNESS_CHROMIUM", "/usr/bin/chromium"))
SECTIONS = ["Scores per iteration", "Review and merge", "Learnings", "Decisions", "Costs", "Recent events"]
# Put first in <head> of a copy of the page: it records every error event (a script's, or a resource that
# failed to load) and, once the page has loaded, what the browser made of it, into the DOM.
PROBE = """<script>
window.__errors = [];
addEventListener("error", e => __errors.push(String(e.message || (e.target && (e.target.src || e.target.tagName))).slice(0, 200)), true);
addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({
    errors: __errors,
    images: [...document.images].map(i => ({alt: i.alt, complete: i.complete, natural: [i.naturalWidth, i.naturalHeight],
                                            shown: [i.clientWidth, i.clientHeight]})),
    sections: [...document.querySelectorAll("h2")].map(h => h.textContent),
    commands: [...document.querySelectorAll("pre.commands")].map(p => p.textContent),
  });
  document.body.appendChild(out);
});
</script>"""


def need_chromium() -> None:
    """Skip without the browser; in CI its absence is a failure."""
    if os.access(CHROMIUM, os.X_OK):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing: .ci/install-chromium.sh must run before the tests")
    pytest.skip(f"{CHROMIUM} is not installed (run .ci/install-chromium.sh)")


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless run on `page`, with a fresh profile and nothing fetched from the network."""
    argv = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--window-size=1280,2400", *args, page.as_uri()]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    need_chromium()
    cwd = tmp_path_factory.mktemp("demo")
    proc = run_demo(cwd)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.rstrip("\n").splitlines()[-1].removeprefix("report: "))


def test_the_report_renders_whole_in_a_browser(report, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("<head>", "<head>" + PROBE, 1))
    proc = chromium(probed, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (found,) = re.findall(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    seen = json.loads(html.unescape(found))
    assert seen["errors"] == []
    (plot,) = seen["images"]
    assert plot["alt"] == "val, train and test score per iteration" and plot["complete"]
    assert plot["natural"][0] > 400 and plot["natural"][1] > 200        # the PNG decoded
    assert plot["shown"][0] > 400 and plot["shown"][1] > 200            # and is laid out at a readable size
    assert seen["sections"] == SECTIONS
    target = report.parents[1] / "target"
    assert seen["commands"] == [f"git -C {target} log --stat main..autoharness\n"
                                f"git -C {target} switch main && git -C {target} merge --ff-only autoharness"]


def test_the_screenshot_shows_the_page(report, tmp_path):
    """The screenshot a person looks at (kept beside the report as report.png): the page's top at the
    window's size, with the plot's colours in it."""
    from matplotlib.image import imread

    shot = tmp_path / "report.png"
    proc = chromium(report, tmp_path / "profile", f"--screenshot={shot}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    pixels = imread(shot)
    assert pixels.shape[:2] == (2400, 1280)
    rgb = (pixels[..., :3] * 255).round().astype(int)
    # The accepted markers' green (#2ca02c) and the test markers' purple (#9467bd) are drawn.
    for colour in ((0x2C, 0xA0, 0x2C), (0x94, 0x67, 0xBD)):
        assert ((abs(rgb - colour) <= 2).all(axis=-1)).sum() > 20, colour
    shutil.copy(shot, report.with_suffix(".png"))
