"""quorumlog wire protocol: .proto files and generated code (lands with the cluster issue)."""
