"""The --serve page in a real headless Chromium: the page loads and MJPEG frames arrive."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile

import cv2
import numpy as np
import pytest

from tests import test_runtime_helpers as helpers

runtime_models, video_file = helpers.runtime_models, helpers.video_file  # session fixtures

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--virtual-time-budget=3000",
    "--window-size=800,700",
]


def _chromium(url: str, *extra: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
            capture_output=True,
            text=True,
            timeout=90,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_mjpeg_page_shows_live_frames_in_headless_chromium(runtime_models, video_file, tmp_path):
    with helpers.serving(runtime_models["u8"], video_file, "127.0.0.1:0") as box:
        # The page's script writes the stream image's natural size into #stats.
        dom = _chromium(box["url"], "--dump-dom")
        match = re.search(r'<pre id="stats">(.*?)</pre>', dom, re.S)
        assert match, dom[-2000:]
        stats = json.loads(match.group(1))
        assert (stats["shown_width"], stats["shown_height"]) == (640, 480)
        assert stats["frames"] > 0 and stats["viewers"] >= 1 and stats["label"] == "cat"
        shot = tmp_path / "page.png"
        _chromium(box["url"], f"--screenshot={shot}")
        img = cv2.imread(str(shot))
        assert img is not None
        # The clip's grey background (60) fills much of the page only if frames were drawn.
        grey = np.all(np.abs(img.astype(int) - 60) <= 6, axis=2).mean()
        assert grey > 0.2, f"only {grey:.0%} of the screenshot shows the stream"
    assert box["summary"].frames > 0
