"""Helpers for the web console's browser tests: the console process, headless Chromium,
screenshots, plain HTTP calls.

Owns: starting ``quorumlog console`` as a child process on a free loopback port (and
stopping it), a selenium driver for Debian's chromium + chromium-driver (installed by
``make testdeps``), saving a screenshot per page under ``test-output/console/`` (or
``$QUORUMLOG_TEST_OUTPUT/console``), and raw HTTP requests that read the answer whatever its
status. Must never: leave a process behind, or wait with a bare sleep (it polls conditions
with deadlines).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from cluster_harness import wait_until
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from quorumlog.node.process.launcher import free_ports

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = Path(os.environ.get("QUORUMLOG_TEST_OUTPUT", ROOT / "test-output")) / "console"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
START_TIMEOUT = 30.0


class ConsoleProcess:
    """``quorumlog console`` for ``addresses`` on a free loopback port, its output in a log."""

    def __init__(self, addresses: Sequence[str], log_path: Path,
                 extra: Sequence[str] = (), port: int | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        """``tls``: the console serves HTTPS (``--https-cert``), trusted through this."""
        self.addresses = list(addresses)
        self.port = port or free_ports(1)[0]
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.extra = list(extra)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "quorumlog.client.cli", "console",
                   "--cluster", ",".join(self.addresses),
                   "--listen", f"127.0.0.1:{self.port}", *self.extra]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._serving, START_TIMEOUT, f"the console on {self.url}")

    def _serving(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the console exited with {self.process.returncode}:\n"
                                 + self.log_path.read_text(errors="replace"))
        try:
            status, _, _ = http(f"{self.url}/static/console.css", context=self.tls)
        except OSError:
            return False
        return status == 200

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def running_console(addresses: Sequence[str], log_path: Path,
                    extra: Sequence[str] = ()) -> Iterator[ConsoleProcess]:
    console = ConsoleProcess(addresses, log_path, extra)
    try:
        console.start()
        yield console
    except BaseException:
        print(console.log())
        raise
    finally:
        console.stop()


@contextlib.contextmanager
def chromium() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def click_to_load(driver: WebDriver, element: WebElement, timeout: float = 30.0) -> None:
    """Click ``element`` and wait until the page it leads to has loaded (the old page gone,
    the new one complete): a click on a submit button returns before the navigation ends."""
    element.click()

    def left(_: WebDriver) -> bool:
        try:
            element.is_enabled()
        except WebDriverException:  # stale; mid-navigation Chromium may say "Node with
            return True             # given id does not belong to the document" instead
        return False

    def loaded(_: WebDriver) -> bool:
        try:
            return bool(driver.execute_script("return document.readyState") == "complete")
        except WebDriverException:  # the new document is not there yet
            return False

    WebDriverWait(driver, timeout).until(left)
    WebDriverWait(driver, timeout).until(loaded)


def screenshot(driver: WebDriver, name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def http(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None,
         context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of one request, whatever the status; never follows a
    redirect, so a 303 is seen as one."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with opener.open(request, timeout=10) as answer:
            return (answer.status, {k.lower(): v for k, v in answer.headers.items()},
                    answer.read().decode("utf-8", errors="replace"))
    except urllib.error.HTTPError as error:
        return (error.code, {k.lower(): v for k, v in error.headers.items()},
                error.read().decode("utf-8", errors="replace"))
