"""The gRPC services of a node's client port, and the interceptors in front of them
(authentication, authorization, audit, rate limits, input guards, reflection).

Owns: validating requests and turning them into proposals or reads, and mapping results to
gRPC statuses. Every service reaches the node through ``node_port.NodePort`` (proposals, read
points, membership, read-only status) and answers failures through ``rpc`` (one status
mapping, leader hints included); every append takes ``appends.Appender.append_many``.
``tests/test_api_boundaries.py`` keeps it so. Must never: import the process layer (wiring,
flags, metrics HTTP), or call into another service.
"""
