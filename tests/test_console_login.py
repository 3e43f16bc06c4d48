"""Who the console acts as: with ``--require-login`` each user's cluster token, else the
console's own mutual-TLS identity; either way the cluster's ACLs decide what a user may see
and do through the console."""

from __future__ import annotations

import json
import secrets
import urllib.parse
from pathlib import Path

import pytest
from cluster_harness import running_cluster
from console_harness import ConsoleProcess, chromium, click_to_load, http, screenshot
from security_harness import client_security, running_tls_cluster, tls_dir
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from quorumlog.client import Client
from quorumlog.client.tls import ClientSecurity
from quorumlog.node.api.auth import TokenKey

pytestmark = pytest.mark.cluster


def _log_in(driver: WebDriver, url: str, token: str) -> None:
    driver.get(url + "/login")
    driver.find_element(By.ID, "token").send_keys(token)
    click_to_load(driver, driver.find_element(By.ID, "login"))


def _admin_and_a_shop_reader(admin: Client, principal: str) -> None:
    """ACLs on: ``principal`` may do everything, bob may only read ``shop/``; one message in
    ``shop/a``."""
    for verb in ("manage", "read", "append", "consume"):
        admin.acl.grant(principal, verb, "")
    admin.acl.grant("bob", "read", "shop/")
    admin.acl.set_enabled(True)
    admin.append("shop/a", b"first")


def _body(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def test_login_token_and_cluster_acls_decide_what_a_user_sees_and_does(
        tmp_path: Path) -> None:
    secret = tmp_path / "token.secret"
    secret.write_text(secrets.token_hex(32))
    key = TokenKey.load(secret)
    alice, bob = key.sign("alice", 3600), key.sign("bob", 3600)
    cookie_key = tmp_path / "console.key"
    audit = tmp_path / "audit.jsonl"
    with running_cluster(tmp_path, 1, ["--token-key", str(secret)]) as cluster, \
            Client(cluster.addresses, deadline=15, security=ClientSecurity(token=alice)) \
            as admin, chromium() as driver:
        _admin_and_a_shop_reader(admin, "alice")
        admin.append("secret/x", b"hidden")
        console = ConsoleProcess(cluster.addresses, tmp_path / "console.log", [
            "--require-login", "--cookie-key-file", str(cookie_key), "--audit-log", str(audit)])
        console.start()
        try:
            url = console.url
            # nothing without a login
            driver.get(url + "/sessions")
            assert driver.current_url == url + "/login"
            screenshot(driver, "login")
            assert http(url + "/tail?name=shop/a")[0] == 401
            status, _, text = http(url + "/action/trim", data=b"session=shop/a&before_offset=1")
            assert status == 401 and "log in first" in text
            # a token the cluster does not accept
            _log_in(driver, url, key.sign("eve", 3600)[:-4] + "AAAA")
            assert "the cluster refused the token: UNAUTHENTICATED" in _body(driver)
            assert driver.current_url == url + "/login"
            # bob may read shop/ only
            _log_in(driver, url, bob)
            assert "signed in as bob" in _body(driver)
            driver.get(url + "/sessions")
            assert "PERMISSION_DENIED" in _body(driver) and "'bob' may not read" in _body(driver)
            driver.get(url + "/sessions?prefix=shop/")
            assert "shop/a" in _body(driver)
            driver.get(url + "/session?" + urllib.parse.urlencode({"name": "secret/x"}))
            assert "Error 403" in _body(driver)
            driver.get(url + "/session?" + urllib.parse.urlencode({"name": "shop/a"}))
            assert driver.find_element(By.ID, "consumer-denied")
            assert "first" in driver.find_element(By.ID, "messages").text
            driver.find_element(By.ID, "append-body").send_keys("from bob")
            click_to_load(driver, driver.find_element(By.ID, "append"))
            click_to_load(driver, driver.find_element(By.ID, "confirm"))
            assert "Error 403" in _body(driver) and "'bob' may not append" in _body(driver)
            screenshot(driver, "login-bob-denied")
            assert admin.describe_session("shop/a").next_offset == 1
            # log out, then alice may do it
            driver.get(url + "/")
            click_to_load(driver, driver.find_element(By.ID, "logout"))
            assert driver.current_url == url + "/login"
            _log_in(driver, url, alice)
            driver.get(url + "/session?" + urllib.parse.urlencode({"name": "shop/a"}))
            driver.find_element(By.ID, "append-body").send_keys("from alice")
            click_to_load(driver, driver.find_element(By.ID, "append"))
            click_to_load(driver, driver.find_element(By.ID, "confirm"))
            assert "appended the test message at offset 1" in _body(driver)
            record = admin.read("shop/a", 1).records[0]
            assert record.data == b"from alice"
            assert record.envelope is not None
            assert record.envelope.headers["quorumlog-console"] == "alice"
            # the login outlives a console restart (the cookie key is kept in a file)
            console.stop()
            console.start()
            driver.get(url + "/")
            assert "signed in as alice" in _body(driver)
        except BaseException:
            print(console.log())
            raise
        finally:
            console.stop()
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(line["principal"], line["action"], line["outcome"]) for line in lines] == [
        ("bob", "append", "PERMISSION_DENIED"), ("alice", "append", "OK")]
    text = audit.read_text()
    assert alice not in text and bob not in text


def test_the_consoles_mutual_tls_identity_decides_what_it_shows_and_does(
        tmp_path: Path) -> None:
    directory = tls_dir(tmp_path)
    with running_tls_cluster(tmp_path, directory, size=1) as cluster, \
            Client(cluster.addresses, deadline=15, security=client_security(directory)) \
            as admin, chromium() as driver:
        _admin_and_a_shop_reader(admin, "admin")
        console = ConsoleProcess(cluster.addresses, tmp_path / "console.log", [
            "--tls-dir", str(directory), "--tls-client", "bob"])
        console.start()
        try:
            driver.get(console.url + "/")  # the overview's status calls are public
            assert "acting as the console's own identity" in _body(driver)
            assert len(driver.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")) == 1
            driver.get(console.url + "/sessions")
            assert "'bob' may not read" in _body(driver)
            driver.get(console.url + "/sessions?prefix=shop/")
            assert "shop/a" in _body(driver)
            driver.get(console.url + "/session?" + urllib.parse.urlencode({"name": "shop/a"}))
            driver.find_element(By.ID, "append-body").send_keys("from bob")
            click_to_load(driver, driver.find_element(By.ID, "append"))
            click_to_load(driver, driver.find_element(By.ID, "confirm"))
            assert "Error 403" in _body(driver) and "'bob' may not append" in _body(driver)
            assert admin.describe_session("shop/a").next_offset == 1
        except BaseException:
            print(console.log())
            raise
        finally:
            console.stop()
