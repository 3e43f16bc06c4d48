"""The web console in a real browser (headless Chromium) against a real 3-node sharded cluster:
every page, every action with its confirmation and audit line, the XSS payload shown as text,
CSRF attempts refused, the read-only console, the security headers. Screenshots of each page
go to test-output/console/."""

from __future__ import annotations

import html
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cluster_harness import LocalCluster, running, wait_until
from console_harness import (
    ConsoleProcess,
    chromium,
    click_to_load,
    http,
    running_console,
    screenshot,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from quorumlog.client import Client, errors
from quorumlog.client.consumer import Lease
from quorumlog.client.envelope import Envelope
from quorumlog.node.process.launcher import free_ports

pytestmark = pytest.mark.cluster

XSS = b'<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">'
BINARY = b"\x00\x01\x02\xfe\xff"
ORDER = b'{"order": 7, "items": ["book", "pen"]}'
LONG_LEASE_MS = 600_000


@dataclass
class Stack:
    cluster: LocalCluster
    client: Client
    console: ConsoleProcess
    driver: WebDriver
    audit: Path
    root: Path


def _seed_stuck(client: Client, session: str, extra: int) -> None:
    """A session a consumer is stuck on: owned by worker-7, messages locked and unsettled,
    two dead letters with reasons, session state written."""
    client.append(session, ORDER, envelope=Envelope(
        message_id="order-7", content_type="application/json", subject="created",
        headers={"tenant": "acme", "raw": b"\x01\x02"}))
    client.append(session, BINARY)
    client.append(session, XSS)
    client.append(session, *[f"step {n}".encode() for n in range(extra)])
    consumer = client.consumer
    lease = _accept_when_known(client, session)
    received = consumer.receive(session, "billing", token=lease.token, max_messages=3,
                                lock_ms=LONG_LEASE_MS)
    first, second, _ = received.messages
    consumer.dead_letter([first], "schema invalid: missing customer")
    consumer.dead_letter([second], "timeout calling payments")
    state = consumer.get_state(session)
    consumer.set_state(session, "billing", b'{"step": "charging"}',
                       expected_version=state.version, token=lease.token)


def _accept_when_known(client: Client, session: str) -> Lease:
    """worker-7's lease; a shard learns of a new group from its leader node's replica of the
    meta group, which may apply CreateGroup a moment after the meta leader answered."""
    found: list[Lease] = []

    def accepted() -> bool:
        try:
            found.append(client.consumer.accept(session, "billing", "worker-7",
                                                lease_ms=LONG_LEASE_MS))
        except errors.NotFound:
            return False
        return True

    wait_until(accepted, 30, f"group billing known to the shard of {session}")
    return found[0]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("console")
    cluster = LocalCluster(root, 3, ["--init-shards", "3"])
    for node, port in zip(cluster.nodes.values(), free_ports(3), strict=True):
        node.extra_args += ["--metrics-addr", f"127.0.0.1:{port}"]
    audit = root / "console-audit.jsonl"
    with running(cluster), Client(cluster.addresses, deadline=20) as client:
        client.consumer.create_group("billing", max_deliveries=5)
        for number in range(60):
            client.append(f"shop/orders-{number:02d}", f"order {number}".encode())
        _seed_stuck(client, "shop/stuck", 6)
        _seed_stuck(client, "shop/fixme", 2)
        # told of one node only: the others are found through its member list
        with running_console(cluster.addresses[:1], root / "console.log",
                             ["--audit-log", str(audit)]) as console, chromium() as driver:
            yield Stack(cluster, client, console, driver, audit, root)


def _open(stack: Stack, path: str) -> WebDriver:
    stack.driver.get(stack.console.url + path)
    return stack.driver


def _text(driver: WebDriver, selector: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    if not found:  # an error page, or the wrong page: say what it shows
        raise AssertionError(f"no {selector} on {driver.current_url}: "
                             + driver.find_element(By.TAG_NAME, "body").text)
    return str(found[0].text)


def _rows(driver: WebDriver, selector: str) -> list[WebElement]:
    found = list(driver.find_elements(By.CSS_SELECTOR, f"{selector} tbody tr"))
    if not found:  # an error page: say what it says
        raise AssertionError(f"no {selector} rows on {driver.current_url}: "
                             + driver.find_element(By.TAG_NAME, "body").text)
    return found


def _table(driver: WebDriver, table: str) -> list[tuple[str, list[str]]]:
    """(data-node, cell texts) of each row, read in one step: the overview's script rebuilds
    its tables every two seconds, so elements found one by one may go stale in between."""
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' tbody tr')).map("
        "r => [r.getAttribute('data-node') || '',"
        " Array.from(r.querySelectorAll('td')).map(c => c.textContent.trim())])", table)
    return [(str(node), [str(cell) for cell in cells]) for node, cells in rows]


def _session_path(name: str) -> str:
    return "/session?" + urllib.parse.urlencode({"name": name})


def _no_page_errors(driver: WebDriver) -> None:
    """The browser logged no error: no CSP violation, no failed script."""
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe


def test_overview_shows_nodes_shards_live_chart_and_leader_changes(stack: Stack) -> None:
    driver = _open(stack, "/")
    nodes = _table(driver, "#nodes")
    assert {node for node, _ in nodes} == {"n1", "n2", "n3"}
    assert all(cells[2] == "yes" for _, cells in nodes), nodes
    assert len(_table(driver, "#shards")) == 3
    # traffic while the page polls: the chart gets samples with an append rate
    sent = 0

    def charted() -> bool:
        nonlocal sent
        stack.client.append("shop/traffic", *[b"t"] * 5)
        sent += 1
        samples = int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-samples")
                      or 0)
        return samples >= 3 and "now" in _text(driver, "#rate-now") and sent >= 5

    wait_until(charted, 30, "the throughput chart to show append calls")
    assert driver.find_elements(By.CSS_SELECTOR, "#chart-rate polyline")
    assert "now" in _text(driver, "#latency-now")
    # a leader change is noticed and listed (another election on a loaded machine may
    # come in between: the newest meta change must name the leader the cluster has now)
    meta_leader = _text(driver, "#meta-leader")
    target = next(name for name in ("n1", "n2", "n3") if name != meta_leader)
    stack.client.transfer_leader(target)
    seen = {"changes": ""}

    def listed() -> bool:
        leader = stack.client.cluster_status().leader
        seen["changes"] = _text(driver, "#leader-changes")
        if leader is None or leader.status is None:
            return False
        metas = [line for line in seen["changes"].splitlines() if ": meta " in line]
        return bool(metas) and f" → {leader.status.id} (term" in metas[0]

    try:
        wait_until(listed, 30, "the leader change on the overview")
    except AssertionError:
        print("leader changes shown:", seen["changes"])
        raise
    target = stack.client.cluster_status().leader.status.id  # type: ignore[union-attr]
    # the tables follow without a reload
    wait_until(lambda: _text(driver, "#meta-leader") == target, 30, "the new meta leader")
    leaders = [node for node, cells in _table(driver, "#nodes") if cells[3] == "leader"]
    assert leaders == [target]
    screenshot(driver, "overview")
    _no_page_errors(driver)


def test_find_a_stuck_session_and_see_why(stack: Stack) -> None:
    driver = _open(stack, "/sessions")
    driver.find_element(By.ID, "prefix").send_keys("shop/")
    driver.find_element(By.CSS_SELECTOR, "#sort option[value=backlog]").click()
    click_to_load(driver, driver.find_element(By.ID, "search-button"))
    rows = _rows(driver, "#sessions")
    assert rows[0].get_attribute("data-session") == "shop/stuck"
    cells = [cell.text for cell in rows[0].find_elements(By.TAG_NAME, "td")]
    assert cells[5] == "7" and cells[6] == "2" and cells[7] == "billing: worker-7", cells
    screenshot(driver, "sessions-by-backlog")
    # by name, 50 a page
    driver = _open(stack, "/sessions?prefix=shop/orders-")
    assert len(_rows(driver, "#sessions")) == 50
    click_to_load(driver, driver.find_element(By.ID, "next-page"))
    names = [row.get_attribute("data-session") for row in _rows(driver, "#sessions")]
    assert names == [f"shop/orders-{n}" for n in range(50, 60)]
    assert not driver.find_elements(By.ID, "next-page")
    driver = _open(stack, "/sessions?prefix=shop/orders-&sort=size&page=1")
    assert len(_rows(driver, "#sessions")) == 10
    # the session: why it is stuck
    click_to_load(driver, driver.find_element(By.ID, "nav-sessions"))
    driver = _open(stack, "/sessions?prefix=shop/stuck")
    click_to_load(driver, driver.find_element(By.LINK_TEXT, "shop/stuck"))
    group = _rows(driver, "#groups")[0]
    assert "worker-7" in group.text and group.get_attribute("data-group") == "billing"
    cells = [cell.text for cell in group.find_elements(By.TAG_NAME, "td")]
    assert cells[1] == "7" and cells[2] == "1" and cells[3] == "3 / 2", cells
    letters = _rows(driver, "#dead-letters")
    reasons = {row.find_element(By.CSS_SELECTOR, ".reason").text for row in letters}
    assert reasons == {"schema invalid: missing customer", "timeout calling payments"}
    assert all(row.find_elements(By.TAG_NAME, "td")[5].text == "1" for row in letters)
    assert json.loads(_text(driver, "#state")) == {"step": "charging"}
    messages = driver.find_elements(By.CSS_SELECTOR, "#messages article")
    assert [m.get_attribute("data-offset") for m in messages] == [str(n) for n in range(9)]
    order = messages[0].text
    assert "message_id\norder-7" in order and "header tenant\nacme" in order
    assert "header raw\nb64:AQI=" in order and "json" in order
    assert json.loads(messages[0].find_element(By.CSS_SELECTOR, "pre").text) == json.loads(ORDER)
    assert messages[1].find_element(By.CSS_SELECTOR, "pre").text.startswith(
        "00000000  00 01 02 fe ff")
    # the XSS payload is shown as text and never runs
    assert messages[2].find_element(By.CSS_SELECTOR, "pre").text == XSS.decode()
    assert driver.execute_script("return window.__pwned") is None
    assert not driver.find_elements(By.CSS_SELECTOR, "#messages img")
    screenshot(driver, "session")
    # another view: everything as hex
    driver = _open(stack, _session_path("shop/stuck") + "&view=hex")
    first = driver.find_element(By.CSS_SELECTOR, "#messages article pre").text
    assert first.startswith("00000000  7b 22 6f 72")
    _no_page_errors(driver)


def _confirm(driver: WebDriver, name: str) -> str:
    question = _text(driver, "#question")
    screenshot(driver, f"confirm-{name}")
    click_to_load(driver, driver.find_element(By.ID, "confirm"))
    return question


def test_actions_are_confirmed_audited_and_fix_the_session(stack: Stack) -> None:
    session = "shop/fixme"
    driver = _open(stack, _session_path(session))
    # cancelling changes nothing
    click_to_load(driver, driver.find_element(By.CSS_SELECTOR, "#groups button.release"))
    click_to_load(driver, driver.find_element(By.ID, "cancel"))
    assert "worker-7" in _rows(driver, "#groups")[0].text
    # release the lease with the token shown
    token = stack.client.consumer.sessions(session=session)[0].groups[0].token
    click_to_load(driver, driver.find_element(By.CSS_SELECTOR, "#groups button.release"))
    assert f"fencing token {token}" in _confirm(driver, "release")
    assert "released the lease of group 'billing'" in _text(driver, "#notice")
    assert _rows(driver, "#groups")[0].find_element(By.CSS_SELECTOR, ".owner").text == "—"
    # resubmit one dead letter
    letters = stack.client.consumer.dead_letters(session)
    chosen = next(letter for letter in letters if letter.reason.startswith("schema"))
    driver.find_element(By.CSS_SELECTOR,
                        f"#dead-letters tr[data-sequence='{chosen.sequence}'] input").click()
    click_to_load(driver, driver.find_element(By.ID, "resubmit"))
    assert f"dead letters {chosen.sequence} of" in _confirm(driver, "resubmit")
    assert "resubmitted 1 dead letters as offsets" in _text(driver, "#notice")
    assert _text(driver, "#dead-letter-count") == "(1)"
    # purge the rest
    driver.find_element(By.ID, "all-dead-letters").click()
    click_to_load(driver, driver.find_element(By.ID, "purge"))
    assert "every dead letter" in _confirm(driver, "purge")
    assert "purged 1 dead letters; 0 remain" in _text(driver, "#notice")
    assert driver.find_elements(By.ID, "no-dead-letters")
    # append a test message
    driver.find_element(By.ID, "append-body").send_keys("hello from the console")
    driver.find_element(By.ID, "append-content-type").send_keys("text/plain")
    click_to_load(driver, driver.find_element(By.ID, "append"))
    assert _text(driver, "#confirm-body") == "hello from the console"
    _confirm(driver, "append")
    notice = _text(driver, "#notice")
    assert notice.startswith("appended the test message at offset")
    offset = int(notice.rsplit(" ", 1)[1])
    record = stack.client.read(session, offset, 1).records[0]
    assert record.data == b"hello from the console"
    assert record.envelope is not None and record.envelope.content_type == "text/plain"
    assert record.envelope.headers["quorumlog-console"] == "console"
    # trim before offset 2
    trim = driver.find_element(By.ID, "trim-offset")
    trim.clear()
    trim.send_keys("2")
    click_to_load(driver, driver.find_element(By.ID, "trim"))
    assert "before offset 2" in _confirm(driver, "trim")
    assert "the session now starts at offset 2" in _text(driver, "#notice")
    screenshot(driver, "session-after-actions")
    # the cluster agrees, and every action has its audit line
    status = stack.client.consumer.sessions(session=session)[0]
    assert status.groups[0].owner == "" and status.dead_letters == 0
    assert stack.client.describe_session(session).first_offset == 2
    lines = [json.loads(line) for line in stack.audit.read_text().splitlines()]
    mine = [(line["action"], line["outcome"]) for line in lines if line["session"] == session]
    assert mine == [("release", "OK"), ("resubmit", "OK"), ("purge", "OK"), ("append", "OK"),
                    ("trim", "OK")]
    assert all(line["principal"] == "console" and line["remote"] == "127.0.0.1"
               for line in lines)
    assert "hello from the console" not in stack.audit.read_text()
    _no_page_errors(driver)


class _Attacker(BaseHTTPRequestHandler):
    """Another origin's page whose script posts a trim to the console (a CSRF attempt)."""

    target = ""

    def do_GET(self) -> None:
        form = (
            f'<form id="evil" method="post" action="{self.target}/action/trim">'
            '<input name="session" value="shop/stuck"><input name="before_offset" value="5">'
            '<input name="confirmed" value="yes"><input name="csrf" value="guessed"></form>'
            "<script>document.getElementById('evil').submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(form)))
        self.end_headers()
        self.wfile.write(form)

    def log_message(self, format: str, *args: object) -> None:
        return


def test_csrf_attempts_are_refused_and_change_nothing(stack: Stack) -> None:
    url = stack.console.url
    driver = _open(stack, _session_path("shop/stuck"))
    cookie = driver.get_cookie("quorumlog_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    csrf = driver.find_element(By.CSS_SELECTOR, "#trim-form input[name=csrf]") \
        .get_attribute("value")
    jar = f"quorumlog_console={cookie['value']}"
    form = {"session": "shop/stuck", "before_offset": "5", "confirmed": "yes"}
    attempts = [
        ({}, {}, "CSRF token"),  # no cookie, no token
        ({"csrf": "wrong"}, {"cookie": jar}, "CSRF token"),
        ({"csrf": str(csrf)}, {"cookie": jar, "origin": "http://127.0.0.2:1"}, "not from"),
        ({"csrf": str(csrf)}, {"cookie": "quorumlog_console=forged"}, "CSRF token"),
    ]
    for extra, headers, message in attempts:
        body = urllib.parse.urlencode({**form, **extra}).encode()
        status, _, text = http(f"{url}/action/trim", data=body, headers=headers)
        assert status == 403 and message in text, (status, text)
    # a page of another origin, in the same browser, submitting a form to the console
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    _Attacker.target = url
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/")
        wait_until(lambda: "refused" in driver.find_element(By.TAG_NAME, "body").text, 15,
                   "the console's refusal")
        assert "Error 403" in driver.find_element(By.TAG_NAME, "body").text
        screenshot(driver, "csrf-refused")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert stack.client.describe_session("shop/stuck").first_offset == 0
    # and with the right token and origin the same request is taken (the check is not
    # refusing everything): a confirmation page, nothing done yet
    body = urllib.parse.urlencode({**form, "confirmed": "", "csrf": str(csrf)}).encode()
    status, _, text = http(f"{url}/action/trim", data=body,
                           headers={"cookie": jar, "origin": url})
    assert status == 200 and "Trim session" in text
    # a bad field is refused with one precise line, before any confirmation
    body = urllib.parse.urlencode({**form, "before_offset": "x", "csrf": str(csrf)}).encode()
    status, _, text = http(f"{url}/action/trim", data=body,
                           headers={"cookie": jar, "origin": url})
    assert status == 400 and "INVALID_ARGUMENT: before_offset must be a whole number" in text
    body = urllib.parse.urlencode({"session": "shop/stuck", "csrf": str(csrf)}).encode()
    status, _, text = http(f"{url}/action/delete", data=body,
                           headers={"cookie": jar, "origin": url})
    assert status == 400 and "unknown action 'delete'" in html.unescape(text)
    assert stack.client.describe_session("shop/stuck").first_offset == 0


def test_security_headers_and_packaged_assets(stack: Stack) -> None:
    status, headers, text = http(stack.console.url + "/")
    assert status == 200
    policy = headers["content-security-policy"]
    for rule in ("default-src 'none'", "script-src 'self'", "style-src 'self'",
                 "frame-ancestors 'none'", "form-action 'self'"):
        assert rule in policy
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert "server" not in headers
    assert "<script>" not in text and "style=" not in text  # no inline code at all
    assert 'src="/static/console.js"' in text and 'href="/static/console.css"' in text
    assert "http://" not in text.replace(stack.console.url, "") and "https://" not in text
    for asset in ("console.js", "console.css"):
        status, headers, _ = http(f"{stack.console.url}/static/{asset}")
        assert status == 200 and "content-security-policy" in headers
    status, _, text = http(stack.console.url + "/session?name=shop/none-such")
    assert status == 404 and "NOT_FOUND" in text
    status, _, text = http(stack.console.url + "/sessions?sort=bogus")
    assert status == 400 and "sort must be one of" in text


def test_read_only_console_shows_and_refuses_changes(stack: Stack) -> None:
    with running_console(stack.cluster.addresses, stack.root / "console-ro.log",
                         ["--read-only"]) as console:
        driver = stack.driver
        driver.get(console.url + _session_path("shop/stuck"))
        assert _text(driver, "#read-only-badge") == "read-only"
        assert "worker-7" in _rows(driver, "#groups")[0].text
        assert len(_rows(driver, "#dead-letters")) == 2
        for hidden in ("#append-form", "#trim-form", "button.release", "#resubmit", "#purge",
                       "#dead-letters input"):
            assert not driver.find_elements(By.CSS_SELECTOR, hidden), hidden
        screenshot(driver, "read-only")
        cookie = driver.get_cookie("quorumlog_console")
        assert cookie is not None
        # a same-origin request from this browser's identity is refused all the same
        body = urllib.parse.urlencode({"session": "shop/stuck", "before_offset": "5",
                                       "confirmed": "yes"}).encode()
        status, _, text = http(console.url + "/action/trim", data=body, headers={
            "cookie": f"quorumlog_console={cookie['value']}", "origin": console.url})
        assert status == 403 and "read-only" in text
    assert stack.client.describe_session("shop/stuck").first_offset == 0
