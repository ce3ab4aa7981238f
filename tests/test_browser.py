"""The explorer in a real browser: JupyterLab + headless Chromium (Debian's) driven by Selenium.

JupyterLab serves a copy of ``notebooks/dashboard.ipynb`` (a copy, so autosave never touches the
repository) on a free local port; Chromium opens it, runs every cell, opens the heatmap tab, moves
the layer slider and checks that the heatmap's pixels changed and that no error is shown anywhere.
Screenshots and the server log are kept under ``artifacts/browser/``.

On a fresh machine the test installs what it needs: ``chromium`` and ``chromium-driver`` with apt-get
(as root), ``selenium`` with pip. Playwright's own browser download is not used.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                  "--window-size=1600,1400"]
NOTEBOOK_TIMEOUT = 420  # seconds for the kernel to start and run every cell, on 2 busy cores
ERROR_MARKERS = ("Traceback", "Error displaying widget", "⚠", "Could not update")


# ------------------------------------------------------------------------------ set-up
def _ensure_chromium() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("Debian chromium + chromium-driver are missing and cannot be installed (needs apt-get as root)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"],
                   check=True, env=env, capture_output=True)


def _ensure_selenium():
    try:
        import selenium  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "selenium"], check=True)
    from selenium import webdriver

    return webdriver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dashboard_copy(directory: Path, tmp_path_factory) -> Path:
    """dashboard.ipynb without outputs; on the bundled model, or a tiny one while that is not installed."""
    notebook = json.loads((ROOT / "notebooks" / "dashboard.ipynb").read_text(encoding="utf-8"))
    from clipviz import zoo

    if "shapes-clip" not in zoo.available():
        from tiny_models import build_tiny

        tiny = build_tiny("clip", tmp_path_factory.mktemp("browser_model") / "clip")
        for cell in notebook["cells"]:
            source = "".join(cell["source"])
            if source.startswith("MODEL = "):
                first, _, rest = source.partition("\n")
                cell["source"] = f"MODEL = {str(tiny)!r}\n" + rest
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    notebook.get("metadata", {}).pop("widgets", None)
    path = directory / "dashboard.ipynb"
    path.write_text(json.dumps(notebook), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free port, serving a scratch directory; yields its base URL."""
    _ensure_chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    work = tmp_path_factory.mktemp("lab")
    _dashboard_copy(work, tmp_path_factory)
    port = _free_port()
    settings = tmp_path_factory.mktemp("lab_settings")
    # no "get notified about Jupyter news?" pop-up over the page (and no fetch from the network)
    news = settings / "user-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = dict(os.environ, HF_HUB_OFFLINE="1", JUPYTERLAB_SETTINGS_DIR=str(settings / "user-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(settings / "workspaces"), PYTHONPATH=str(ROOT))
    log = open(ARTIFACTS / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
         "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=",
         "--ServerApp.password=", f"--ServerApp.root_dir={work}", "--LabApp.expose_app_in_browser=True"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                pytest.fail(f"JupyterLab did not start; see {ARTIFACTS / 'jupyterlab.log'}")
            time.sleep(1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    webdriver = _ensure_selenium()
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(NOTEBOOK_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


# ------------------------------------------------------------------------------ helpers
def _wait(condition, timeout: float, what: str, driver=None, interval: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - the page is still changing; try again
            value = None
        if value:
            return value
        time.sleep(interval)
    if driver is not None:
        driver.save_screenshot(str(ARTIFACTS / "timeout.png"))
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


_RUN_ALL = """
const done = arguments[arguments.length - 1];
(async () => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  await panel.context.ready;
  await panel.sessionContext.ready;
  await app.commands.execute('notebook:run-all-cells');
  done('ran');
})().catch(error => done('error: ' + error));
"""

_KERNEL_STATUS = """
const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
return kernel ? kernel.status : null;
"""


def _page_errors(driver) -> list[str]:
    texts = [e.text for e in driver.find_elements("css selector", ".jp-OutputArea-output")]
    return [t for t in texts if any(marker in t for marker in ERROR_MARKERS)]


def _heatmap_pixels(element):
    """The heatmap image as a numpy array, title strip cut off (it names the layer, so it always changes)."""
    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB")).astype(int)
    return image[int(0.1 * image.shape[0]):]


def _move_slider_to_end(driver, slider) -> None:
    from selenium.webdriver.common.keys import Keys

    handle = slider.find_element("css selector", ".noUi-handle")
    handle.click()
    handle.send_keys(Keys.END)


def _slider_value(slider) -> str:
    return slider.find_element("css selector", ".widget-readout").text.strip()


# ------------------------------------------------------------------------------ the test
def test_dashboard_heatmap_follows_the_layer_slider(lab, browser):
    import numpy as np

    driver = browser
    driver.get(f"{lab}/lab/tree/dashboard.ipynb")
    _wait(lambda: driver.execute_script("return !!(window.jupyterapp && window.jupyterapp.shell.currentWidget "
                                        "&& window.jupyterapp.shell.currentWidget.sessionContext)"),
          120, "JupyterLab to open the notebook", driver)
    result = driver.execute_async_script(_RUN_ALL)
    assert result == "ran", result
    _wait(lambda: driver.execute_script(_KERNEL_STATUS) == "idle", NOTEBOOK_TIMEOUT, "the kernel to go idle", driver)
    driver.save_screenshot(str(ARTIFACTS / "dashboard_ran.png"))
    assert not _page_errors(driver), _page_errors(driver)

    dashboard = _wait(lambda: driver.find_element("css selector", ".clipviz-dashboard"), 60,
                      "the dashboard to render", driver)
    tab = _wait(lambda: [t for t in dashboard.find_elements("css selector", ".lm-TabBar-tab")
                         if t.text.strip() == "heatmaps"][0], 30, "the heatmaps tab", driver)
    tab.click()
    app = dashboard.find_element("css selector", ".clipviz-attention")
    heatmap = _wait(lambda: [img for img in app.find_elements("css selector", "img")
                             if img.is_displayed() and img.size["width"] > 100][0], 60,
                    "the heatmap image", driver)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", heatmap)
    time.sleep(1)
    source_before = heatmap.get_attribute("src")
    before = _heatmap_pixels(heatmap)
    heatmap.screenshot(str(ARTIFACTS / "heatmap_before.png"))
    driver.save_screenshot(str(ARTIFACTS / "dashboard_before.png"))

    slider = [s for s in app.find_elements("css selector", ".widget-slider")
              if s.find_element("css selector", ".widget-label").text.strip() in ("layer", "start layer")][0]
    value_before = _slider_value(slider)
    _move_slider_to_end(driver, slider)
    _wait(lambda: _slider_value(slider) != value_before, 30, "the layer slider to move", driver)
    _wait(lambda: heatmap.get_attribute("src") != source_before, 120, "the heatmap to be redrawn", driver)
    time.sleep(1)  # let the new image decode before the screenshot
    after = _heatmap_pixels(heatmap)
    heatmap.screenshot(str(ARTIFACTS / "heatmap_after.png"))
    driver.save_screenshot(str(ARTIFACTS / "dashboard_after.png"))
    dashboard.screenshot(str(ARTIFACTS / "dashboard_widget.png"))

    assert before.shape == after.shape
    changed = (np.abs(before - after).sum(axis=2) > 30).mean()
    assert changed > 0.01, f"only {changed:.2%} of the heatmap's pixels changed when the layer moved"
    assert _slider_value(slider) != value_before
    assert not _page_errors(driver), _page_errors(driver)
    assert driver.execute_script(_KERNEL_STATUS) == "idle"
