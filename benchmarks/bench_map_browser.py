"""The map in a real browser at 100,000 points (JupyterLab + headless Debian Chromium, software WebGL).

``bench_map.py --part browser`` runs this. One notebook: an ``EmbeddingApp`` (PCA layout) over 100,000
image vectors with stored 16 px thumbnails (random, one per row, so each hover makes a new preview). Then:

* **hover → thumbnail visible**: the kernel asks the browser to open row r's tooltip
  (``Scatter.show_tooltip``); the browser asks the kernel for r's record, the kernel makes the preview,
  and the clock stops when a tooltip image with a new ``data:image/jpeg`` is visible. Median over 15
  rows. This path has one more kernel → browser message than a mouse hover, so it is an upper bound;
  the baseline measured in the same run is one bare kernel round trip (``execute("pass")``).
* **mouse hover → thumbnail visible**: the mouse moves onto a fresh spot of the map (15 spots). Two clocks:
  from sending the move to a new preview visible (includes jupyter-scatter's fixed 500 ms tooltip dwell,
  ``TOOLTIP_DEBOUNCE_TIME`` in its bundle, and WebDriver's own command time), and the page's clock from
  the tooltip opening (jupyter-scatter's ``showTooltip``, which sends the record request to the kernel)
  to the new preview image in it — the part clipviz's lazy previews add.
* **selection → kernel**: lasso mode, a square loop dragged with the mouse over the map; the clock runs
  from the mouse release (test process) to the moment the kernel's ``on_select`` callback runs (kernel
  ``time.time()``, same machine). The number of selected points is reported with it.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETUP = """
import time, numpy as np
from dataclasses import replace
from clipviz.embeddings import Embeddings
from clipviz.widgets.embedding import EmbeddingApp
rng = np.random.default_rng(0)
n = {n}
u = rng.uniform(-1, 1, (n, 2))
vectors = np.concatenate([u, np.ones((n, 1)), 0.01 * rng.normal(size=(n, 29))], axis=1)
E = Embeddings.from_arrays(image_vectors=vectors, image_labels=[str(i % 10) for i in range(n)])
if {thumbnails}:
    E = replace(E, thumbnails=rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8))  # a different preview per row
app = EmbeddingApp(E, method="pca", height=600)
arrivals = []
app.on_select(lambda rows: arrivals.append((time.time(), len(rows))))
app
"""

_PREVIEW = """
for (const el of document.querySelectorAll('div')) {
  const bg = el.style.backgroundImage || '';
  if (bg.includes('data:image/jpeg') && el.offsetParent !== null) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.height > 0) { return bg.length + ':' + bg.slice(-40); }
  }
}
return null;
"""


_WATCH_TOOLTIP = """
window.__hover = [];
new MutationObserver(mutations => {
  const now = performance.now();
  for (const m of mutations) {
    const el = m.target, bg = el.style.backgroundImage || '';
    if (bg.includes('data:image')) {
      if (!(m.oldValue || '').includes(bg.slice(-60))) { window.__hover.push(['preview', now]); }
    } else if (el.querySelector && el.querySelector('div[style*="data:image"]')) {
      window.__hover.push(['tooltip', now]);  // the tooltip box moved to the hovered point: showTooltip ran
    }
  }
}).observe(document.body, {attributes: true, attributeFilter: ['style'], attributeOldValue: true, subtree: true});
"""


def _wait(condition, timeout: float, interval: float = 0.01):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - the page is still changing
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"nothing after {timeout} s")


def browser(n: int = 100_000, rounds: int = 15, interact: bool = True) -> dict:
    """``interact=False``: only build the map and wait until its points are drawn (the 1,000,000-point run,
    without stored thumbnails: hovering there shows the placeholder)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    sys.path.insert(0, str(ROOT / "tests"))
    from test_browser import CHROMIUM_FLAGS
    from test_browser_map import _EXECUTE, _drawn_fraction, lasso_loop  # the test's own kernel call

    work = Path(tempfile.mkdtemp(prefix="bench_map_browser_"))
    cells = [SETUP.format(n=n, thumbnails=interact)]
    notebook = {"cells": [{"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None}
                          for c in cells],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                "nbformat": 4, "nbformat_minor": 5}
    (work / "map.ipynb").write_text(json.dumps(notebook))
    settings = work / "settings"
    news = settings / "user-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", JUPYTERLAB_SETTINGS_DIR=str(settings / "user-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(settings / "ws"), PYTHONPATH=str(ROOT))
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=", "--ServerApp.password=",
         f"--ServerApp.root_dir={work}", "--LabApp.expose_app_in_browser=True"],
        cwd=work, env=env, stdout=open(work / "lab.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    driver = None
    try:
        _wait(lambda: urllib.request.urlopen(url + "/api/status", timeout=5), 120, 1)
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        driver.set_script_timeout(600)
        driver.get(url + "/lab/tree/map.ipynb")
        _wait(lambda: driver.execute_script("return !!(window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                            " && window.jupyterapp.shell.currentWidget.sessionContext)"), 120, 0.5)
        from test_browser import _KERNEL_STATUS, _RUN_ALL

        ran_at = time.perf_counter()
        assert driver.execute_async_script(_RUN_ALL) == "ran"
        _wait(lambda: driver.execute_script(_KERNEL_STATUS) == "idle", 600, 0.5)
        canvas = _wait(lambda: [c for c in driver.find_elements("css selector", ".clipviz-map canvas")
                                if c.is_displayed() and c.size["width"] > 200][0], 60, 0.5)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
        drawn = _wait(lambda: _drawn_fraction(canvas) > 0.01 and _drawn_fraction(canvas), 120, 0.5)
        drawn_after = time.perf_counter() - ran_at
        artifacts = ROOT / "artifacts" / "browser"
        artifacts.mkdir(parents=True, exist_ok=True)
        tag = f"{n // 1000}k"
        driver.save_screenshot(str(artifacts / f"bench_map_{tag}.png"))
        if not interact:
            return {"n": n, "drawn_fraction": round(drawn, 4), "run_to_drawn_s": round(drawn_after, 1)}

        def kernel(code):
            return driver.execute_async_script(_EXECUTE, code)

        # a real mouse: jupyter-scatter opens the tooltip once the pointer has rested 500 ms on a point
        # (TOOLTIP_DEBOUNCE_TIME in its bundle, not configurable), then asks the kernel for the record. The
        # page's own clock times that second part: tooltip opened -> preview image changed.
        from selenium.webdriver.common.action_chains import ActionChains

        driver.execute_script(_WATCH_TOOLTIP)
        w, h = canvas.size["width"], canvas.size["height"]
        spots = [((i % 5 - 2) * 0.07 + 0.01, (i // 5 - 1) * 0.12 + 0.01) for i in range(rounds)]  # a 5 x 3 grid
        mouse_total, mouse_open_to_preview, missed = [], [], 0
        for fx, fy in [(0.02, -0.2), *spots]:  # the first is a warm-up: the tooltip gets its preview element
            driver.execute_script("window.__hover = []")
            before = driver.execute_script(_PREVIEW)
            started = time.perf_counter()
            ActionChains(driver).move_to_element_with_offset(canvas, int(fx * w), int(fy * h)).perform()
            try:
                _wait(lambda before=before: (v := driver.execute_script(_PREVIEW)) is not None and v != before, 10, 0.005)
            except TimeoutError:  # no point under the pointer there, or the same one as before: counted, skipped
                missed += 1
                continue
            mouse_total.append(time.perf_counter() - started)
            events = driver.execute_script("return window.__hover")
            opened = [t for kind, t in events if kind == "tooltip"]
            shown = [t for kind, t in events if kind == "preview" and opened and t >= opened[0]]
            mouse_open_to_preview.append((shown[0] - opened[0]) / 1000 if shown else None)
        mouse_total, mouse_open_to_preview = mouse_total[1:], [v for v in mouse_open_to_preview[1:] if v is not None]
        driver.save_screenshot(str(artifacts / "bench_map_100k_mouse_hover.png"))

        round_trips, hovers = [], []
        for i in range(rounds):
            started = time.perf_counter()
            kernel("pass")
            round_trips.append(time.perf_counter() - started)
            before = driver.execute_script(_PREVIEW)
            row = 1000 * i + 17
            started = time.perf_counter()
            kernel(f"app._scatter.show_tooltip({row})")
            _wait(lambda before=before: (v := driver.execute_script(_PREVIEW)) is not None and v != before, 30, 0.005)
            hovers.append(time.perf_counter() - started)
        driver.save_screenshot(str(artifacts / "bench_map_100k_hover.png"))


        kernel("app._scatter.mouse(mode='lasso'); arrivals.clear()")
        time.sleep(1)
        released = lasso_loop(driver, canvas, half=0.14, timed=True)
        arrival = _wait(lambda: kernel("print(arrivals[-1][0], arrivals[-1][1]) if arrivals else None").strip(),
                        60, 0.1)
        arrived_at, selected = arrival.split()
        driver.save_screenshot(str(artifacts / "bench_map_100k_lasso.png"))
        return {"n": n, "drawn_fraction": round(drawn, 4),
                "hover_median_s": round(statistics.median(hovers), 4),
                "hover_all_s": [round(h, 3) for h in hovers],
                "kernel_round_trip_median_s": round(statistics.median(round_trips), 4),
                "mouse_move_to_preview_median_s": round(statistics.median(mouse_total), 4),
                "mouse_tooltip_open_to_preview_median_s": round(statistics.median(mouse_open_to_preview), 4)
                if mouse_open_to_preview else None,
                "mouse_tooltip_open_to_preview_all_s": [round(v, 3) for v in mouse_open_to_preview],
                "mouse_spots_without_a_new_preview": missed,
                "selection_points": int(selected), "selection_to_kernel_s": round(float(arrived_at) - released, 4)}
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()


if __name__ == "__main__":
    print(json.dumps(browser(), indent=1))
    print(json.dumps(browser(1_000_000, interact=False), indent=1))
