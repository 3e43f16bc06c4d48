"""quorumlog chaos: in-memory cluster, deterministic simulator, fault injection, checkers."""
