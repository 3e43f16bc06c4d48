"""The web console: ``quorumlog console`` (see docs/console.md).

A separate process that shows a cluster in a browser (overview, sessions, messages, consumer
groups, dead letters, a live tail) and offers a few confirmed, audited actions. It talks to
the cluster only through the public SDK (gRPC) and the nodes' own metrics endpoints, which the
cluster names in its status. Modules, one concern each:

- ``settings``: the console's flags as one value;
- ``payload``: how a message body and its envelope are shown (text, JSON, hex);
- ``identity``: who the browser is (sealed cookie, login token, CSRF token);
- ``audit``: one JSON line per action;
- ``feed``: the cluster poller behind the overview (throughput, latency, leader changes);
- ``views``: what each page shows, read from the cluster;
- ``actions``: the changes a user may make, checked and carried out;
- ``tail``: the live tail as server-sent events, resumable by offset;
- ``app``: the Starlette application (routes, headers, templates);
- ``server``: running it under uvicorn.

Must never: import the node's code (it is a client like any other), serve anything from
outside the package, or hand-write HTTP.
"""
