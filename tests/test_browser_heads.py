"""HeadsApp in a real browser, inside the dashboard: the heads tab renders its layer × head grid and
a click on a head shows that head's TextSpan description and patch map. Reuses the JupyterLab and
Chromium fixtures of ``test_browser.py``; screenshots go to ``artifacts/browser/heads_*.png``."""

from __future__ import annotations

import time

import pytest
from test_browser import _KERNEL_STATUS, _RUN_ALL, ARTIFACTS, NOTEBOOK_TIMEOUT, _page_errors, _wait, browser, lab  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_heads_tab_click_shows_the_head(lab, browser):  # noqa: F811
    driver = browser
    driver.get(f"{lab}/lab/tree/dashboard.ipynb")
    _wait(lambda: driver.execute_script("return !!(window.jupyterapp && window.jupyterapp.shell.currentWidget "
                                        "&& window.jupyterapp.shell.currentWidget.sessionContext)"),
          120, "JupyterLab to open the notebook", driver)
    if not driver.find_elements("css selector", ".clipviz-dashboard"):
        result = driver.execute_async_script(_RUN_ALL)
        assert result == "ran", result
        _wait(lambda: driver.execute_script(_KERNEL_STATUS) == "idle", NOTEBOOK_TIMEOUT, "the kernel to go idle", driver)
    dashboard = _wait(lambda: driver.find_element("css selector", ".clipviz-dashboard"), 120,
                      "the dashboard to render", driver)
    tab = _wait(lambda: [t for t in dashboard.find_elements("css selector", ".lm-TabBar-tab")
                         if t.text.strip() == "heads"][0], 30, "the heads tab", driver)
    tab.click()
    app = _wait(lambda: dashboard.find_element("css selector", ".clipviz-heads"), 30, "the heads app", driver)
    grid = _wait(lambda: app.find_element("css selector", ".clipviz-heads-grid"), 30, "the heads grid", driver)
    buttons = grid.find_elements("css selector", "button")
    assert len(buttons) >= 4 and all(b.text.strip() for b in buttons[:4])  # every cell shows its contribution
    detail = app.find_element("css selector", ".clipviz-head-detail")
    assert "click a head" in detail.text
    driver.save_screenshot(str(ARTIFACTS / "heads_before.png"))

    target = grid.find_element("css selector", ".clipviz-head-L0H1")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", target)
    target.click()
    _wait(lambda: "L0H1" in detail.text, 120, "the head's description", driver)
    picture = _wait(lambda: [img for img in app.find_elements("css selector", "img")
                             if img.is_displayed() and img.size["width"] > 100][0], 60, "the patch map", driver)
    time.sleep(1)
    assert "TextSpan" in detail.text
    assert picture.get_attribute("src").startswith("blob:") or picture.get_attribute("src")
    assert "[" in target.text  # the clicked head is marked in the grid
    app.screenshot(str(ARTIFACTS / "heads_after.png"))
    driver.save_screenshot(str(ARTIFACTS / "heads_page.png"))
    assert not _page_errors(driver), _page_errors(driver)
