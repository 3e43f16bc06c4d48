"""Benchmarks that need more than ``quorumlog bench``: the side-by-side comparison with etcd
(``compare_etcd``), leader failover time (``failover``) and a node holding 10 million messages
(``large_state``). Run each as ``python -m benchmarks.<name>`` from the repository root."""
