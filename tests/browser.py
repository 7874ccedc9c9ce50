"""One headless Chromium for the browser tests: the system's `chromium` driven by Selenium.

`.ci/run` installs Debian's `chromium` and `chromium-driver`; `playwright install` cannot work here
(it downloads browsers from a CDN). Where either is absent locally, `chromium_or_skip` skips the
test and says so. The flags are those that work as root on a closed network: no sandbox, no GPU,
nothing that calls home, and a fresh profile per browser.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1200,900")


def chromium_or_skip() -> tuple[str, str]:
    """(chromium, chromedriver) paths; the test is skipped when either is not installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("no chromium/chromedriver on PATH (CI installs Debian's chromium and "
                    "chromium-driver in .ci/run; `apt-get install chromium chromium-driver`)")
    return browser, driver


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A Selenium driver of the system Chromium that keeps the page's console messages."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium_or_skip()
    with tempfile.TemporaryDirectory(prefix="polybot-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in (*FLAGS, f"--user-data-dir={Path(profile)}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
        try:
            yield driver
        finally:
            driver.quit()


def console_errors(driver: Any) -> list[str]:
    """The page's console messages at SEVERE (errors, failed loads) since the last call."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry.get("level") == "SEVERE"]
