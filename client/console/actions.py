"""The changes a console user may make: checked from the form, described for the confirmation,
carried out through the SDK.

Owns: :class:`Action` and :func:`parse` (a form's fields into one of ``KINDS``, or
InvalidArgument naming the field), the confirmation sentence of each, and :func:`perform`.
The kinds: append a test message, resubmit or purge dead letters (chosen ones, or all), release
a group's session lease (with the fencing token the user saw: a newer owner is never released),
trim a session before an offset. Must never: act without the caller having confirmed and
passed the CSRF check (``quorumlog.client.console.app`` does both), or decide who may act (the
cluster's ACLs do, on the user's own token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quorumlog.client import errors
from quorumlog.client.async_client import AsyncClient
from quorumlog.client.consumer import Lease
from quorumlog.client.envelope import Envelope

KINDS = ("append", "resubmit", "purge", "release", "trim")
MAX_TEST_MESSAGE = 64 * 1024
MAX_SEQUENCES = 1000
SENT_BY_HEADER = "quorumlog-console"


@dataclass(frozen=True)
class Action:
    kind: str
    session: str
    body: str = ""
    content_type: str = ""
    sequences: tuple[int, ...] = ()  # empty: all (resubmit, purge)
    group: str = ""
    token: int = 0
    before_offset: int = 0
    hidden: tuple[tuple[str, str], ...] = ()  # the form fields to confirm with

    def describe(self) -> str:
        """The confirmation question."""
        target = f"session {self.session!r}"
        chosen = (f"dead letters {', '.join(map(str, self.sequences))}"
                  if self.sequences else "every dead letter (up to 1000)")
        if self.kind == "append":
            return f"Append a {len(self.body.encode())}-byte test message to {target}?"
        if self.kind == "resubmit":
            return f"Resubmit {chosen} of {target}: append them again and remove them?"
        if self.kind == "purge":
            return f"Purge {chosen} of {target}? They are deleted for good."
        if self.kind == "release":
            return (f"Release the lease of group {self.group!r} on {target} (fencing token "
                    f"{self.token})? Its owner loses the session; the next consumer takes it.")
        return (f"Trim {target} before offset {self.before_offset}? Messages below it are "
                "deleted for good.")

    def details(self) -> dict[str, Any]:
        """What the audit line records (never a body)."""
        if self.kind == "append":
            return {"bytes": len(self.body.encode()), "content_type": self.content_type}
        if self.kind in ("resubmit", "purge"):
            return {"sequences": list(self.sequences) or "all"}
        if self.kind == "release":
            return {"group": self.group, "token": self.token}
        return {"before_offset": self.before_offset}


def _integer(name: str, text: str | None, *, minimum: int = 0) -> int:
    text = (text or "").strip()
    if not text.isdigit():
        raise errors.InvalidArgument(f"{name} must be a whole number, got {text!r}")
    value = int(text)
    if value < minimum or value >= 2**63:
        raise errors.InvalidArgument(f"{name} must be at least {minimum}, got {value}")
    return value


def parse(kind: str, form: dict[str, list[str]]) -> Action:
    """The action a submitted form asks for; InvalidArgument naming the bad field."""
    if kind not in KINDS:
        raise errors.InvalidArgument(f"unknown action {kind!r}")

    def one(name: str) -> str:
        values = form.get(name) or [""]
        return values[0]

    session = one("session")
    if not session:
        raise errors.InvalidArgument("session is missing")
    hidden = (("session", session),)
    if kind == "append":
        body = one("body")
        if len(body.encode("utf-8")) > MAX_TEST_MESSAGE:
            raise errors.InvalidArgument(
                f"the test message is {len(body.encode())} bytes, more than {MAX_TEST_MESSAGE}")
        content_type = one("content_type").strip()
        if len(content_type) > 255 or any(not c.isprintable() for c in content_type):
            raise errors.InvalidArgument("content_type must be printable, at most 255 chars")
        return Action(kind, session, body=body, content_type=content_type,
                      hidden=(*hidden, ("body", body), ("content_type", content_type)))
    if kind in ("resubmit", "purge"):
        picked = [text for text in form.get("sequence", []) if text.strip()]
        if len(picked) > MAX_SEQUENCES:
            raise errors.InvalidArgument(f"at most {MAX_SEQUENCES} dead letters at a time")
        sequences = tuple(sorted({_integer("sequence", text) for text in picked}))
        if one("all") == "yes":
            sequences = ()  # every one, not only those on the page
        if not sequences and one("all") != "yes":
            raise errors.InvalidArgument("choose dead letters, or all of them")
        fields = [*hidden, *(("sequence", str(number)) for number in sequences)] \
            if sequences else [*hidden, ("all", "yes")]
        return Action(kind, session, sequences=sequences, hidden=tuple(fields))
    if kind == "release":
        group = one("group")
        if not group:
            raise errors.InvalidArgument("group is missing")
        token = _integer("token", one("token"), minimum=1)
        return Action(kind, session, group=group, token=token,
                      hidden=(*hidden, ("group", group), ("token", str(token))))
    before = _integer("before_offset", one("before_offset"))
    return Action(kind, session, before_offset=before,
                  hidden=(*hidden, ("before_offset", str(before))))


async def perform(client: AsyncClient, action: Action, principal: str,
                  deadline: float) -> str:
    """Carry ``action`` out; the one line shown afterwards. SDK errors propagate."""
    session = action.session
    if action.kind == "append":
        envelope = Envelope(content_type=action.content_type,
                            headers={SENT_BY_HEADER: principal or "console"})
        result = await client.append(session, action.body.encode("utf-8"), envelope=envelope,
                                     deadline=deadline)
        return f"appended the test message at offset {result.first_offset}"
    if action.kind == "resubmit":
        offsets, remaining = await client.consumer.resubmit(session, action.sequences,
                                                            deadline=deadline)
        where = ", ".join(map(str, offsets)) or "-"
        return f"resubmitted {len(offsets)} dead letters as offsets {where}; {remaining} remain"
    if action.kind == "purge":
        purged, remaining = await client.consumer.purge_dead_letters(
            session, action.sequences, deadline=deadline)
        return f"purged {purged} dead letters; {remaining} remain"
    if action.kind == "release":
        await client.consumer.release(Lease(session, action.group, "", action.token, 0),
                                      deadline=deadline)
        return f"released the lease of group {action.group!r} (token {action.token})"
    info = await client.trim_session(session, action.before_offset, deadline=deadline)
    return f"trimmed: the session now starts at offset {info.first_offset}"
