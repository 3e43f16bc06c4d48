"""The console's live tail in a real browser resumes without a gap or a duplicate after the
console restarts and after the cluster loses its leader."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest
from cluster_harness import running_cluster, wait_until
from console_harness import ConsoleProcess, chromium, screenshot
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from quorumlog.client import Client

pytestmark = pytest.mark.cluster

SESSION = "tail/orders"


def _tail_offsets(driver: WebDriver) -> list[int]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#tail tbody tr")
    return [int(row.get_attribute("data-offset") or -1) for row in rows]


def _wait_for(driver: WebDriver, offsets: list[int], what: str) -> None:
    wait_until(lambda: _tail_offsets(driver)[-1:] == offsets[-1:], 45, what)
    assert _tail_offsets(driver) == offsets, what


def test_live_tail_resumes_without_gaps_or_duplicates(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as cluster, \
            Client(cluster.addresses, deadline=30) as client, chromium() as driver:
        client.append(SESSION, b"before-0", b"before-1", b"before-2")
        console = ConsoleProcess(cluster.addresses, tmp_path / "console.log")
        console.start()
        try:
            driver.get(f"{console.url}/session?{urllib.parse.urlencode({'name': SESSION})}")
            driver.find_element(By.ID, "tail-toggle").click()
            wait_until(lambda: "live from offset 3" in
                       driver.find_element(By.ID, "tail-status").text, 30, "the tail to start")
            expected: list[int] = []

            def append(count: int, label: str) -> None:
                result = client.append(SESSION, *[f"{label}-{n}".encode()
                                                  for n in range(count)])
                expected.extend(range(result.first_offset, result.first_offset + count))

            append(5, "live")
            _wait_for(driver, expected, "the first messages in the tail")
            # the console restarts on the same port; appends made meanwhile arrive after it
            console.stop()
            append(5, "while-console-down")
            console.start()
            _wait_for(driver, expected, "the tail to resume after the console restarted")
            # the cluster loses its leader; the console's subscription moves to another node
            leader = cluster.wait_leader()
            cluster.kill(leader)
            append(5, "after-leader-loss")
            _wait_for(driver, expected, "the tail to resume after the leader was killed")
            cluster.start(leader)
            append(3, "leader-back")
            _wait_for(driver, expected, "the tail after the old leader came back")
            assert expected == list(range(3, 21))
            previews = [row.find_elements(By.TAG_NAME, "td")[4].text
                        for row in driver.find_elements(By.CSS_SELECTOR, "#tail tbody tr")]
            assert previews[5] == "while-console-down-0"
            assert previews[10] == "after-leader-loss-0"
            # the server resent nothing either (the page would have dropped and counted it)
            body = driver.find_element(By.TAG_NAME, "body")
            assert body.get_attribute("data-tail-dropped") is None
            driver.execute_script("arguments[0].scrollIntoView()",
                                  driver.find_element(By.ID, "tail-toggle"))
            screenshot(driver, "live-tail")
        except BaseException:
            print(console.log())
            raise
        finally:
            console.stop()
