"""The web console's parts without a cluster or a browser: payload views, the sealed cookie,
action forms, the tail's start, the feed's arithmetic, the settings' rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from quorumlog.client import errors
from quorumlog.client.cli import cmd_console, main
from quorumlog.client.console import actions, feed, identity, payload, settings, tail
from quorumlog.client.envelope import Envelope
from quorumlog.client.results import (
    ClusterStatus,
    NodeReport,
    NodeStatus,
    ShardStatus,
)

# -- payload ------------------------------------------------------------------------------------


def test_views_of_a_body() -> None:
    assert payload.show(b'{"a": [1, 2]}').view == "json"
    assert json.loads(payload.show(b'{"a": [1, 2]}').text) == {"a": [1, 2]}
    assert payload.show(b"hello <script>").text == "hello <script>"
    assert payload.show(b"hello").view == "text"
    assert payload.show(b"\x00\x01\xffab").view == "hex"
    assert payload.show(b"\x00\x01\xffab").text.startswith("00000000  00 01 ff 61 62")
    # a view that does not fit falls back to hex and says so
    assert payload.show(b"\xff\xfe", "text").view == "hex"
    assert payload.show(b"plain", "json").view == "text"
    assert payload.show(b"plain", "hex").text.endswith("plain")
    big = b"x" * (payload.MAX_SHOWN + 10)
    shown = payload.show(big)
    assert shown.cut and shown.size == len(big) and len(shown.text) == payload.MAX_SHOWN


def test_preview_and_envelope_fields() -> None:
    assert payload.preview(b"a\n b") == "a b"
    assert payload.preview(b"\x00\x01").startswith("0x 00 01")
    assert payload.preview(b"y" * 500).endswith("…")
    fields = payload.envelope_fields(Envelope(message_id="m1", content_type="text/plain",
                                              headers={"k": "v", "bin": b"\x00"}))
    assert fields == [("message_id", "m1"), ("content_type", "text/plain"),
                      ("header k", "v"), ("header bin", "b64:AA==")]
    assert payload.envelope_fields(None) == []
    assert payload.iso_time(0) == ""
    assert payload.iso_time(1_700_000_000_123) == "2023-11-14 22:13:20.123Z"


# -- identity -----------------------------------------------------------------------------------

def _token(subject: str) -> str:
    import base64

    body = base64.urlsafe_b64encode(json.dumps({"sub": subject}).encode()).rstrip(b"=")
    return f"ql1.{body.decode()}.c2ln"


def test_cookie_seal_round_trip_and_forgery() -> None:
    seal = identity.CookieSeal(Fernet.generate_key())
    user = identity.fresh(_token("alice"))
    assert user.principal == "alice" and user.logged_in
    opened = seal.open(seal.seal(user))
    assert opened == user
    # another key, a flipped character, garbage: never opened
    assert identity.CookieSeal(Fernet.generate_key()).open(seal.seal(user)) is None
    value = seal.seal(user)
    middle = len(value) // 2  # inside the ciphertext: every bit of it is authenticated
    assert seal.open(value[:middle] + ("A" if value[middle] != "A" else "B")
                     + value[middle + 1:]) is None
    assert seal.open("not a cookie") is None and seal.open(None) is None
    assert identity.csrf_matches(user, user.csrf)
    assert not identity.csrf_matches(user, "x" + user.csrf)
    assert not identity.csrf_matches(user, None)
    assert identity.fresh().csrf != identity.fresh().csrf
    assert identity.principal_of("garbage") == ""
    assert identity.valid_key(Fernet.generate_key()) and not identity.valid_key(b"short")


# -- actions ------------------------------------------------------------------------------------

def test_action_forms_are_checked() -> None:
    appended = actions.parse("append", {"session": ["s"], "body": ["hi"],
                                        "content_type": ["text/plain"]})
    assert appended.describe() == "Append a 2-byte test message to session 's'?"
    assert ("body", "hi") in appended.hidden
    picked = actions.parse("purge", {"session": ["s"], "sequence": ["3", "1", "3"]})
    assert picked.sequences == (1, 3)
    assert [value for name, value in picked.hidden if name == "sequence"] == ["1", "3"]
    everything = actions.parse("resubmit", {"session": ["s"], "all": ["yes"],
                                            "sequence": ["2"]})
    assert everything.sequences == () and ("all", "yes") in everything.hidden
    release = actions.parse("release", {"session": ["s"], "group": ["g"], "token": ["7"]})
    assert (release.group, release.token) == ("g", 7)
    trim = actions.parse("trim", {"session": ["s"], "before_offset": ["10"]})
    assert trim.before_offset == 10 and trim.details() == {"before_offset": 10}
    bad = [
        ("delete", {"session": ["s"]}, "unknown action"),
        ("append", {"body": ["x"]}, "session is missing"),
        ("purge", {"session": ["s"]}, "choose dead letters"),
        ("purge", {"session": ["s"], "sequence": ["-1"]}, "sequence must be a whole number"),
        ("release", {"session": ["s"], "token": ["1"]}, "group is missing"),
        ("release", {"session": ["s"], "group": ["g"], "token": ["0"]}, "at least 1"),
        ("trim", {"session": ["s"], "before_offset": ["x"]}, "before_offset must be"),
        ("append", {"session": ["s"], "body": ["x" * (actions.MAX_TEST_MESSAGE + 1)]},
         "more than"),
    ]
    for kind, form, message in bad:
        with pytest.raises(errors.InvalidArgument, match=message):
            actions.parse(kind, form)


# -- tail ---------------------------------------------------------------------------------------

def test_tail_start_prefers_last_event_id() -> None:
    assert tail.start_offset("12", "3") == 12
    assert tail.start_offset(None, "3") == 3
    assert tail.start_offset("", "") is None
    with pytest.raises(errors.InvalidArgument, match="Last-Event-ID"):
        tail.start_offset("x", None)
    event = tail.record_event("s", 4, b"<b>", 0, "m")
    assert event.id == "5" and json.loads(str(event.data))["preview"] == "<b>"


# -- feed ---------------------------------------------------------------------------------------

METRICS = """\
# HELP quorumlog_request_seconds client request latency
# TYPE quorumlog_request_seconds histogram
quorumlog_request_seconds_bucket{code="OK",le="+Inf",method="AppendBatch"} 10.0
quorumlog_request_seconds_count{code="OK",method="AppendBatch"} 10.0
quorumlog_request_seconds_sum{code="OK",method="AppendBatch"} 0.05
quorumlog_request_seconds_count{code="OK",method="Append"} 5.0
quorumlog_request_seconds_sum{code="OK",method="Append"} 0.025
quorumlog_request_seconds_count{code="UNAVAILABLE",method="Append"} 99.0
quorumlog_request_seconds_sum{code="UNAVAILABLE",method="Append"} 9.0
quorumlog_request_seconds_count{code="OK",method="AppendStream"} 20.0
quorumlog_request_seconds_sum{code="OK",method="AppendStream"} 0.1
quorumlog_request_seconds_count{code="OK",method="Read"} 7.0
quorumlog_request_seconds_sum{code="OK",method="Read"} 1.0
"""


def test_append_totals_count_successful_appends_only() -> None:
    totals = feed.append_totals(METRICS)
    assert totals.calls == 35.0 and totals.seconds == pytest.approx(0.175)


def _node(node_id: str, role: str, term: int, leader: str, shards: list[ShardStatus]
          ) -> NodeReport:
    status = NodeStatus(node_id, f"a-{node_id}", role, term, leader, 10, 10, 10, 1, [], 1, 0,
                        shard_count=len(shards), shards=shards)
    return NodeReport(f"a-{node_id}", status, None)


def _shard(number: int, leader: str, term: int, commit: int) -> ShardStatus:
    return ShardStatus(number, number + 1, ["n1", "n2"], leader, "", "follower", term, commit,
                       commit, commit, 0, 0)


def test_leaders_and_committed_entries() -> None:
    status = ClusterStatus([
        _node("n1", "leader", 3, "n1", [_shard(0, "n2", 2, 40)]),
        _node("n2", "follower", 3, "n1", [_shard(0, "n2", 2, 44)]),
        NodeReport("a-n3", None, errors.Unavailable("down")),
    ])
    assert feed.leaders_of(status) == {"meta": ("n1", 3), "shard 0": ("n2", 2)}
    assert feed.committed_entries(status) == 10 + 44


# -- settings -----------------------------------------------------------------------------------

def test_settings_refuse_an_open_console_without_login() -> None:
    assert settings.parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert settings.parse_listen("[::1]:9") == ("::1", 9)
    for text in ("8080", "host:", ":80", "h:x"):
        with pytest.raises(settings.SettingsError, match="HOST:PORT"):
            settings.parse_listen(text)
    with pytest.raises(settings.SettingsError, match="--require-login"):
        settings.ConsoleSettings(["a:1"], "0.0.0.0", 8080)
    settings.ConsoleSettings(["a:1"], "0.0.0.0", 8080, require_login=True)
    settings.ConsoleSettings(["a:1"], "localhost", 8080)
    with pytest.raises(settings.SettingsError, match="no address"):
        settings.ConsoleSettings([], "127.0.0.1", 8080)


# -- the command --------------------------------------------------------------------------------

def test_console_command_refuses_bad_flags_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("not a key")
    cases = [
        (["--listen", "0.0.0.0:8080"], "not a loopback address: add --require-login"),
        (["--listen", "8080"], "--listen must be HOST:PORT"),
        (["--listen", "127.0.0.1:0"], "--listen port must be 1-65535"),
        (["--cookie-key-file", str(bad_key)], "not a console key"),
        (["--cookie-key-file", str(tmp_path / "missing" / "k")], "No such file or directory"),
        (["--https-cert", str(bad_key)], "give --https-cert and --https-key together"),
        (["--https-cert", str(bad_key), "--https-key", str(tmp_path / "none.pem")],
         "--https-key " + str(tmp_path / "none.pem") + ": no such file"),
    ]
    for flags, message in cases:
        assert main(["console", "--cluster", "127.0.0.1:1", *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert bad_key.read_text() == "not a key"  # a bad key file is never overwritten


def test_a_missing_cookie_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "console.key"
    first = cmd_console.cookie_key(path)
    assert first is not None and identity.valid_key(first)
    assert path.stat().st_mode & 0o777 == 0o600
    assert cmd_console.cookie_key(path) == first
    assert cmd_console.cookie_key(None) is None
