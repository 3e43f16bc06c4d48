"""``quorumlog acl``: grant, revoke and list access rules; enable or disable enforcement.

``acl grant PRINCIPAL VERB [PREFIX]`` / ``acl revoke ...``: VERB is append, read, consume or
manage; PREFIX (default: empty, every session) is a session-name prefix; PRINCIPAL ``*`` is
every caller. ``acl enable`` turns on deny-by-default enforcement (refused unless the caller
keeps ``manage`` on every session); ``acl disable`` allows every call again. ``acl list``
prints whether ACLs are enforced and every rule (``--json``: ``enabled``, ``rules``,
``caller``). Owns: these commands' flags and output. Must never: evaluate rules.
"""

from __future__ import annotations

import argparse

from quorumlog.client import errors
from quorumlog.client.acl import VERBS
from quorumlog.client.cli import CliError
from quorumlog.client.cli import common as cli_common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="acl_command", metavar="ACTION", required=True)
    for name, text in (("grant", "allow PRINCIPAL to VERB sessions under PREFIX"),
                       ("revoke", "remove such a rule")):
        action = sub.add_parser(name, help=text, description=text)
        action.add_argument("principal", metavar="PRINCIPAL", help='a principal, or "*"')
        action.add_argument("verb", metavar="VERB", help=" | ".join(VERBS))
        action.add_argument("prefix", metavar="PREFIX", nargs="?", default="",
                            help="session-name prefix (default: every session)")
        cli_common.add_common_arguments(action)
    for name, text in (("list", "show the rules and whether they are enforced"),
                       ("enable", "enforce the rules: deny by default"),
                       ("disable", "stop enforcing: allow every call")):
        action = sub.add_parser(name, help=text, description=text)
        cli_common.add_common_arguments(action)


def run(args: argparse.Namespace) -> int:
    command: str = args.acl_command
    if command in ("grant", "revoke") and args.verb not in VERBS:
        raise CliError(f"VERB must be one of {', '.join(VERBS)}, got {args.verb!r}")
    with cli_common.connect(args) as client:
        try:
            if command == "list":
                listing = client.acl.list()
            elif command in ("enable", "disable"):
                changed = client.acl.set_enabled(command == "enable")
            elif command == "grant":
                changed = client.acl.grant(args.principal, args.verb, args.prefix)
            else:
                changed = client.acl.revoke(args.principal, args.verb, args.prefix)
        except (errors.PermissionDenied, errors.FailedPrecondition) as error:
            refusal = f"{error.code.lower()}: {error.message}"
            raise CliError(refusal, cli_common.EXIT_USAGE) from None
    if command == "list":
        rules = [{"principal": r.principal, "verb": r.verb, "prefix": r.prefix}
                 for r in listing.rules]
        if args.json:
            cli_common.print_json(
                {"enabled": listing.enabled, "rules": rules, "caller": listing.caller}
            )
        else:
            state = "enforced (deny by default)" if listing.enabled else "not enforced"
            cli_common.print_line(f"acl {state}; {len(rules)} rule(s); you are {listing.caller!r}")
            for rule in rules:
                cli_common.print_line(f"{rule['principal']}\t{rule['verb']}\t{rule['prefix']!r}")
        return 0
    if args.json:
        cli_common.print_json({"action": command, "changed": changed})
    else:
        cli_common.print_line(f"{command}: {'done' if changed else 'already so, nothing changed'}")
    return 0
