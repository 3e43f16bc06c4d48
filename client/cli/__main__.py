"""``python -m quorumlog.client.cli``: the ``quorumlog`` command line."""

from quorumlog.client.cli import main

if __name__ == "__main__":  # importing this module (pkgutil.walk_packages) runs nothing
    raise SystemExit(main())
