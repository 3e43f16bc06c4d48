"""quorumlog chaos: a Toxiproxy-compatible fault proxy (``chaos.toxiproxy``) and the chaos run
(``chaos.run``: nemesis, workload, history, checker, report). The Raft simulator and the
in-memory cluster that test the pure core live in ``quorumlog.raft.testing``."""
