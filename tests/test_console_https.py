"""The console over HTTPS (``--https-cert``/``--https-key``): TLS with the given certificate,
cookies marked Secure, browsers told to stay on HTTPS; plain HTTP is not served."""

from __future__ import annotations

import ssl
from http.client import HTTPConnection, HTTPException
from pathlib import Path

import pytest
from console_harness import ConsoleProcess, http

from quorumlog.client.cli import certs


def test_https_console_serves_tls_and_marks_its_cookie_secure(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    certs.init_directory(directory, ("console",), ())
    cert, key = certs.node_files(directory, "console")
    trust = ssl.create_default_context(cafile=str(directory / certs.CA_CERT))
    # no cluster answers at 127.0.0.1:1: the login page and the assets need none
    console = ConsoleProcess(["127.0.0.1:1"], tmp_path / "console.log",
                             ["--https-cert", str(cert), "--https-key", str(key),
                              "--require-login"], tls=trust)
    console.start()
    try:
        assert console.url.startswith("https://")
        status, headers, text = http(console.url + "/login", context=trust)
        assert status == 200 and "Log in" in text
        cookie = headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert headers["strict-transport-security"] == "max-age=31536000"
        # the same port does not speak plain HTTP: no answer at all, not even an error page
        plain = HTTPConnection("127.0.0.1", console.port, timeout=5)
        try:
            with pytest.raises((HTTPException, OSError)):
                plain.request("GET", "/login")
                plain.getresponse()
        finally:
            plain.close()
    finally:
        console.stop()
