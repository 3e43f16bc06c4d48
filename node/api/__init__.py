"""The gRPC services of a node's client port, and the interceptors in front of them
(authentication, authorization, audit, rate limits, input guards, reflection).

Owns: validating requests and turning them into proposals or reads, and mapping results to
gRPC statuses. Must never: import the process layer (wiring, flags, metrics HTTP).
"""
