"""quorumlog node: one server process (lands with the cluster issue)."""
