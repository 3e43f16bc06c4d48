"""A Toxiproxy-compatible server (HTTP API + TCP proxies with toxics) and its typed client.

Owns: the API in ../shared/TOXIPROXY.md, byte for byte. Must never: know about quorumlog's
nodes or the chaos run; it is a general network-fault proxy.
"""
