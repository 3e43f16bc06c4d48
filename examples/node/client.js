#!/usr/bin/env node
// quorumlog from Node.js: find the leader, append to a session (each message with an
// envelope), read it back, then consume one message for a consumer group with peek-lock
// (lease, receive, complete, release).
//
// The .proto files are loaded at run time from the repository's proto/ folder (or
// QUORUMLOG_PROTO_DIR, e.g. an installed wheel's site-packages/quorumlog/proto) with
// @grpc/proto-loader: no generated code. Every line printed says what happened; any failure
// prints `error: ...` on stderr and exits 1.
//
//   npm ci
//   node client.js --cluster 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 \
//       [--session S] [--group G] [--consumer C] [--message TEXT ...] [--lock-ms N]
//       [--deadline SECONDS]
//
// Routing follows the Python SDK (client/leader.py): ask ClusterStatus for the leader, send
// every call there, and when a node answers UNAVAILABLE (a follower, or a node that lost the
// leadership) follow its `quorumlog-leader-addr` trailing-metadata hint, else try the next
// node, backing off 25-100 ms once every node has failed, until the call's deadline.
"use strict";

const path = require("node:path");
const crypto = require("node:crypto");
const { parseArgs } = require("node:util");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const DEFAULT_CLUSTER = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";
const LEADER_ADDR_KEY = "quorumlog-leader-addr";
const ATTEMPT_TIMEOUT_MS = 3000; // one try; a node that black-holes costs one attempt only
// Worth another try: the node is down or not the leader, or this attempt ran out of time.
const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED,
  grpc.status.ABORTED]);
// As the Python SDK: reconnect fast to a restarted node, never use an HTTP proxy.
const CHANNEL_OPTIONS = {
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.min_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1000,
  "grpc.enable_http_proxy": 0,
};

function loadServices(protoDir) {
  const definition = protoLoader.loadSync(
    ["quorumlog/v1/quorumlog.proto", "quorumlog/v1/consumer.proto"],
    {
      includeDirs: [protoDir],
      keepCase: true, // field names as in the .proto (first_offset, delivery_count)
      longs: String, // uint64 as decimal strings: exact, and accepted back in requests
      enums: String,
      defaults: true,
    },
  );
  const v1 = grpc.loadPackageDefinition(definition).quorumlog.v1;
  return { QuorumLog: v1.QuorumLog, Consumer: v1.Consumer };
}

class QuorumLogError extends Error {
  constructor(what, error) {
    const name = Object.keys(grpc.status).find((key) => grpc.status[key] === error.code);
    super(`${what}: ${name || error.code}: ${error.details || error.message}`);
    this.code = error.code;
  }
}

// Routes calls to the leader and follows leader hints; one channel per node address.
class Cluster {
  constructor(addresses, services, deadlineMs) {
    this.addresses = [...addresses];
    this.services = services;
    this.deadlineMs = deadlineMs;
    this.leader = null;
    this.cursor = 0;
    this.stubs = new Map(); // "service@address" -> client
  }

  stub(service, address) {
    const key = `${service}@${address}`;
    if (!this.stubs.has(key)) {
      const Service = this.services[service];
      this.stubs.set(key, new Service(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS));
    }
    return this.stubs.get(key);
  }

  unary(service, method, address, request, timeoutMs) {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + timeoutMs);
      this.stub(service, address)[method](request, { deadline }, (error, response) => {
        if (error) reject(error);
        else resolve(response);
      });
    });
  }

  // The leader's client address, asked of the nodes with ClusterStatus (the one saying
  // role "leader", or the member a follower names as leader).
  async findLeader() {
    const end = Date.now() + this.deadlineMs;
    let lastError = null;
    for (let round = 0; Date.now() < end; round++) {
      for (const address of this.addresses) {
        let status;
        try {
          status = await this.unary("QuorumLog", "ClusterStatus", address, {},
            Math.min(1000, Math.max(1, end - Date.now())));
        } catch (error) {
          lastError = error;
          continue;
        }
        if (status.role === "leader") {
          this.leader = status.address || address;
          return { id: status.id, address: this.leader, askedAt: address };
        }
        const named = status.members.find((member) => member.id === status.leader);
        if (named && named.client_address) {
          this.leader = named.client_address;
          if (!this.addresses.includes(this.leader)) this.addresses.push(this.leader);
          return { id: named.id, address: this.leader, askedAt: address };
        }
      }
      await sleep(backoffMs(round));
    }
    const detail = lastError ? ` (last error: ${lastError.details || lastError.message})` : "";
    throw new Error(`no leader found among ${this.addresses.join(",")}${detail}`);
  }

  // One RPC on the leader, retried on UNAVAILABLE / DEADLINE_EXCEEDED / ABORTED until the
  // deadline; any other status fails at once. The same request object is resent, so a retried
  // append carries the same producer id and sequence and is deduplicated by the cluster.
  async call(service, method, request, extraMs = 0) {
    const end = Date.now() + this.deadlineMs + extraMs;
    let address = this.leader || this.addresses[this.cursor % this.addresses.length];
    const hinted = new Set();
    const tried = new Set();
    let retries = 0;
    let lastError = null;
    while (Date.now() < end) {
      try {
        const timeoutMs = Math.min(ATTEMPT_TIMEOUT_MS + extraMs, end - Date.now());
        const response = await this.unary(service, method, address, request, timeoutMs);
        this.leader = address;
        return response;
      } catch (error) {
        if (!RETRYABLE.has(error.code)) throw new QuorumLogError(`${service}.${method}`, error);
        lastError = error;
        tried.add(address);
        const hint = error.metadata ? error.metadata.get(LEADER_ADDR_KEY)[0] : undefined;
        if (error.code === grpc.status.UNAVAILABLE && hint && String(hint) !== address) {
          // A node that is not the leader named it: go there at once (once per address).
          const leader = String(hint);
          if (!this.addresses.includes(leader)) this.addresses.push(leader);
          this.leader = leader;
          if (!hinted.has(leader)) {
            hinted.add(leader);
            address = leader;
            continue;
          }
        } else if (this.leader === address) {
          this.leader = null;
        }
        const untried = this.addresses.filter((node) => !tried.has(node));
        if (untried.length > 0) {
          address = untried[0];
          continue;
        }
        tried.clear();
        await sleep(Math.min(backoffMs(retries++), Math.max(0, end - Date.now())));
        address = this.leader || this.addresses[++this.cursor % this.addresses.length];
      }
    }
    throw new QuorumLogError(`${service}.${method} (deadline passed)`,
      lastError || { code: grpc.status.DEADLINE_EXCEEDED, details: "no attempt" });
  }

  close() {
    for (const client of this.stubs.values()) client.close();
  }
}

function backoffMs(attempt) {
  const base = Math.min(100, 25 * 2 ** Math.min(attempt, 10));
  return base / 2 + Math.random() * (base / 2);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function parseAddresses(text) {
  const addresses = [...new Set(text.split(",").map((item) => item.trim()).filter(Boolean))];
  for (const address of addresses) {
    if (!/^.+:\d{1,5}$/.test(address)) throw new Error(`invalid node address ${JSON.stringify(address)}: expected HOST:PORT`);
  }
  if (addresses.length === 0) throw new Error("no node addresses given");
  return addresses;
}

function options() {
  const { values } = parseArgs({
    options: {
      cluster: { type: "string", default: process.env.QUORUMLOG_CLUSTER || DEFAULT_CLUSTER },
      session: { type: "string", default: `node-example-${crypto.randomUUID().slice(0, 8)}` },
      group: { type: "string", default: "node-example" },
      consumer: { type: "string", default: `node-${process.pid}` },
      message: { type: "string", multiple: true },
      "lock-ms": { type: "string", default: "0" }, // when the group is created; 0: 30000
      deadline: { type: "string", default: "30" }, // seconds per call, retries included
      "proto-dir": {
        type: "string",
        default: process.env.QUORUMLOG_PROTO_DIR || path.resolve(__dirname, "..", "..", "proto"),
      },
    },
  });
  const messages = values.message && values.message.length > 0
    ? values.message : ["hello from Node.js", "second message"];
  return {
    addresses: parseAddresses(values.cluster),
    session: values.session,
    group: values.group,
    consumer: values.consumer,
    messages,
    lockMs: Number.parseInt(values["lock-ms"], 10),
    deadlineMs: Number.parseFloat(values.deadline) * 1000,
    protoDir: values["proto-dir"],
  };
}

async function main() {
  const opts = options();
  const cluster = new Cluster(opts.addresses, loadServices(opts.protoDir), opts.deadlineMs);
  try {
    console.log(`cluster: ${cluster.addresses.join(",")}`);
    const leader = await cluster.findLeader();
    console.log(`leader: ${leader.id} at ${leader.address} (asked ${leader.askedAt})`);

    // Append with an idempotent producer: (producer_id, sequence) makes a retry harmless.
    // Each message carries an envelope (docs/envelope.md): its own message id (duplicate
    // detection), a content type and an application header.
    const appended = await cluster.call("QuorumLog", "Append", {
      session: opts.session,
      messages: opts.messages.map((text) => Buffer.from(text, "utf8")),
      envelopes: opts.messages.map(() => ({
        message_id: crypto.randomUUID(),
        content_type: "text/plain; charset=utf-8",
        headers: [{ key: "sent-by", text: "node" }],
      })),
      producer_id: `node-${crypto.randomUUID()}`,
      sequence: "0",
    });
    const first = Number(appended.first_offset);
    const last = first + appended.count - 1;
    console.log(`appended: session ${opts.session} offsets ${first}..${last} `
      + `(commit index ${appended.commit_index}${appended.duplicate ? ", duplicate" : ""})`);

    const page = await cluster.call("QuorumLog", "Read", {
      session: opts.session, from_offset: String(first), max_count: opts.messages.length,
      consistency: "LINEARIZABLE",
    });
    for (const record of page.records) {
      console.log(`read: offset ${record.offset} ${JSON.stringify(record.data.toString("utf8"))}`);
    }
    for (const record of page.records) {
      const envelope = record.envelope;
      const headers = envelope.headers.map((header) => `${header.key}=${header.text}`).join(",");
      console.log(`envelope: offset ${record.offset} message_id ${envelope.message_id} `
        + `content_type ${JSON.stringify(envelope.content_type)} headers ${headers} `
        + `appended at ${record.append_time_ms}`);
    }
    const texts = page.records.map((record) => record.data.toString("utf8"));
    if (JSON.stringify(texts) !== JSON.stringify(opts.messages)) {
      throw new Error(`read back ${JSON.stringify(texts)}, appended ${JSON.stringify(opts.messages)}`);
    }

    // Consumer group (durable cursor per session); an existing group is returned unchanged.
    const group = await cluster.call("Consumer", "CreateGroup", {
      group: opts.group, lock_ms: String(opts.lockMs), exist_ok: true,
    });
    console.log(`group: ${group.group} lock ${group.lock_ms} ms, max deliveries `
      + `${group.max_deliveries} (${group.created ? "created" : "existing"})`);

    // Own the session: the lease's fencing token goes with every receive and settle, so a
    // late settle from a consumer whose lease lapsed is refused (FAILED_PRECONDITION).
    const lease = await cluster.call("Consumer", "AcceptSession", {
      session: opts.session, group: opts.group, consumer: opts.consumer,
    });
    console.log(`lease: session ${lease.session} group ${lease.group} consumer ${lease.consumer} `
      + `token ${lease.token}`);

    // Peek-lock: the message stays locked (not removed) until settled; long-poll for it.
    let received = null;
    const until = Date.now() + opts.deadlineMs;
    while (!received && Date.now() < until) {
      const response = await cluster.call("Consumer", "Receive", {
        session: opts.session, group: opts.group, token: lease.token, max_messages: 1,
        mode: "PEEK_LOCK", wait_ms: 1000,
      }, 1000);
      received = response.messages[0] || null;
    }
    if (!received) throw new Error(`no message received from ${opts.session} in time`);
    console.log(`received: offset ${received.offset} delivery ${received.delivery_count} `
      + `${JSON.stringify(received.data.toString("utf8"))} locked until ${received.locked_until_ms}`);

    // Complete: settles by (offset, delivery_count) under the lease's token.
    const settled = await cluster.call("Consumer", "Settle", {
      session: opts.session, group: opts.group, token: lease.token,
      settlements: [{
        offset: received.offset, delivery_count: received.delivery_count, action: "COMPLETE",
      }],
    });
    if (settled.completed !== 1) throw new Error(`settle completed ${settled.completed}, not 1`);
    console.log(`completed: offset ${received.offset} (commit index ${settled.commit_index})`);

    await cluster.call("Consumer", "ReleaseSession", {
      session: opts.session, group: opts.group, token: lease.token,
    });
    console.log(`released: session ${opts.session} group ${opts.group}`);
    console.log("ok");
    return 0;
  } finally {
    cluster.close();
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`error: ${error.message}`);
    process.exit(1);
  },
);
