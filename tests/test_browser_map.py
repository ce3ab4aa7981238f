"""The map in a real browser (JupyterLab + headless Chromium, the fixtures of ``test_browser.py``).

The dashboard notebook runs; then: the map renders (a WebGL canvas), hovering an image point shows its
thumbnail (the browser asks the kernel, which makes the preview then), and a lasso drawn with the
mouse reaches ``selected_rows`` in the kernel and the zero-shot tab's summary. Screenshots under
``artifacts/browser/``.
"""

from __future__ import annotations

import time

import pytest
from test_browser import (  # noqa: F401 - lab and browser are fixtures
    _KERNEL_STATUS,
    _RUN_ALL,
    ARTIFACTS,
    NOTEBOOK_TIMEOUT,
    _page_errors,
    _wait,
    browser,
    lab,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

_EXECUTE = """
const done = arguments[arguments.length - 1];
const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
let text = '';
const future = kernel.requestExecute({code: arguments[0]});
future.onIOPub = msg => { if (msg.content && msg.content.text) { text += msg.content.text; } };
future.done.then(() => done(text)).catch(error => done('error: ' + error));
"""

_PREVIEW = """
for (const el of document.querySelectorAll('div')) {
  const bg = el.style.backgroundImage || '';
  if (bg.includes('data:image/jpeg') && el.offsetParent !== null) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.height > 0) { return [r.x, r.y, r.width, r.height]; }
  }
}
return null;
"""


def _kernel(driver, code: str) -> str:
    return driver.execute_async_script(_EXECUTE, code)


def lasso_loop(driver, canvas, half: float = 0.35, timed: bool = False):
    """Press, drag a square loop of ``half`` × the canvas size around its centre, release; with ``timed``
    the release is sent on its own and its ``time.time()`` returned."""
    from selenium.webdriver.common.action_chains import ActionChains

    w, h = canvas.size["width"], canvas.size["height"]
    loop = [(-half, -half), (half, -half), (half, half), (-half, half), (-half + 0.01, -half + 0.01)]
    actions = ActionChains(driver).move_to_element_with_offset(canvas, int(loop[0][0] * w), int(loop[0][1] * h))
    actions.click_and_hold()
    for (x0, y0), (x1, y1) in zip(loop, loop[1:]):
        for step in range(1, 11):
            fx, fy = x0 + (x1 - x0) * step / 10, y0 + (y1 - y0) * step / 10
            actions.move_to_element_with_offset(canvas, int(fx * w), int(fy * h)).pause(0.02)
    if not timed:
        actions.release().perform()
        return None
    actions.perform()
    released = time.time()
    ActionChains(driver).release().perform()
    return released


def _drawn_fraction(element) -> float:
    """The share of the element's pixels that are not the (white) background: points were drawn."""
    import io

    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB")).astype(int)
    return float((np.abs(image - 255).sum(axis=2) > 60).mean())


def test_map_hover_shows_a_thumbnail_and_a_lasso_reaches_the_kernel(lab, browser):  # noqa: F811
    driver = browser
    driver.get(f"{lab}/lab/tree/dashboard.ipynb")
    _wait(lambda: driver.execute_script("return !!(window.jupyterapp && window.jupyterapp.shell.currentWidget "
                                        "&& window.jupyterapp.shell.currentWidget.sessionContext)"),
          120, "JupyterLab to open the notebook", driver)
    assert driver.execute_async_script(_RUN_ALL) == "ran"
    _wait(lambda: driver.execute_script(_KERNEL_STATUS) == "idle", NOTEBOOK_TIMEOUT, "the kernel to go idle", driver)
    dashboard = _wait(lambda: driver.find_element("css selector", ".clipviz-dashboard"), 60, "the dashboard", driver)
    [t for t in dashboard.find_elements("css selector", ".lm-TabBar-tab") if t.text.strip() == "map"][0].click()
    canvas = _wait(lambda: [c for c in dashboard.find_elements("css selector", ".clipviz-map canvas")
                            if c.is_displayed() and c.size["width"] > 200][0], 60, "the map's canvas", driver)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    driver.execute_script("window.dispatchEvent(new Event('resize'))")  # the map was drawn in a hidden tab
    time.sleep(2)
    driver.save_screenshot(str(ARTIFACTS / "map_rendered.png"))
    drawn = _wait(lambda: _drawn_fraction(canvas) > 0.002 and _drawn_fraction(canvas), 30, "points on the map", driver)
    assert drawn > 0.002, drawn  # WebGL (software, --disable-gpu) drew the points, not only legend and toolbar
    assert _kernel(driver, "_ = dashboard.embedding._select([], False); print(dashboard.embedding.previews.made)").strip() == "0"

    # hover: the kernel asks the browser to show the tooltip of image row 2; the browser then asks the
    # kernel for that row's record, and the lazily made thumbnail comes back
    started = time.perf_counter()
    _kernel(driver, "dashboard.embedding._scatter.show_tooltip(2)")
    box = _wait(lambda: driver.execute_script(_PREVIEW), 30, "the hover thumbnail", driver, interval=0.05)
    hover_s = time.perf_counter() - started
    driver.save_screenshot(str(ARTIFACTS / "map_hover.png"))
    assert box[2] >= 40 and box[3] >= 40
    assert _kernel(driver, "print(dashboard.embedding.previews.made)").strip() == "1"

    # lasso: the toolbar's lasso mode (set through jupyter-scatter's mouse mode), then drag a loop around
    # the middle of the map with the mouse (shift + drag would select notebook cells in JupyterLab)
    _kernel(driver, "dashboard.embedding._scatter.mouse(mode='lasso')")
    time.sleep(1)
    lasso_loop(driver, canvas)
    selected = _wait(lambda: int(_kernel(driver, "print(len(dashboard.embedding.selected_rows))").strip() or 0), 30,
                     "the lasso's selection in the kernel", driver)
    driver.save_screenshot(str(ARTIFACTS / "map_lasso.png"))
    assert selected > 0
    n_images = int(_kernel(driver, "e = dashboard.embedding.embeddings\n"
                                   "print(sum(e.modality[r] == 'image' for r in dashboard.embedding.selected_rows))"))
    [t for t in dashboard.find_elements("css selector", ".lm-TabBar-tab") if t.text.strip() == "zero-shot"][0].click()
    if n_images:
        summary = _wait(lambda: [e for e in driver.find_elements("css selector", ".clipviz-selection-labels")
                                 if "Map selection" in e.text][0], 30, "the zero-shot tab's summary", driver)
        assert f"{n_images} image" in summary.text
    driver.save_screenshot(str(ARTIFACTS / "map_zeroshot_tab.png"))
    assert not _page_errors(driver), _page_errors(driver)
    (ARTIFACTS / "map_timings.txt").write_text(f"hover_round_trip_s {hover_s:.3f}\nlasso_selected {selected}\n")
