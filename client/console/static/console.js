// quorumlog console: the overview's live charts and the session page's live tail.
// Served by the package (the content security policy allows only this origin's scripts);
// every value from the server goes into the page as text, never as HTML.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const FINAL = ["NOT_FOUND", "PERMISSION_DENIED", "UNAUTHENTICATED", "OUT_OF_RANGE",
                 "INVALID_ARGUMENT"];

  function setText(id, text) {
    const node = document.getElementById(id);
    if (node) node.textContent = text;
  }

  // -- overview: charts fed by /api/overview ----------------------------------------------
  function draw(svg, points) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const width = 600, height = 150, pad = 14;
    const values = points.filter((p) => p.v !== null);
    const top = Math.max(1, ...values.map((p) => p.v)) * 1.1;
    const axis = document.createElementNS(SVG, "line");
    axis.setAttribute("class", "axis");
    axis.setAttribute("x1", "0"); axis.setAttribute("x2", String(width));
    axis.setAttribute("y1", String(height - pad)); axis.setAttribute("y2", String(height - pad));
    svg.appendChild(axis);
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", "4"); label.setAttribute("y", "12");
    label.textContent = "max " + top.toFixed(top < 10 ? 2 : 0);
    svg.appendChild(label);
    if (values.length < 2) return;
    const t0 = points[0].t, t1 = points[points.length - 1].t, span = Math.max(1, t1 - t0);
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", values.map((p) => {
      const x = ((p.t - t0) / span) * width;
      const y = height - pad - (p.v / top) * (height - 2 * pad);
      return x.toFixed(1) + "," + y.toFixed(1);
    }).join(" "));
    svg.appendChild(line);
  }

  function series(samples, key) {
    return samples.map((s) => ({ t: s.t, v: s[key] }));
  }

  function last(samples, key, digits, unit) {
    for (let i = samples.length - 1; i >= 0; i--) {
      if (samples[i][key] !== null) return "now " + samples[i][key].toFixed(digits) + unit;
    }
    return "(no data)";
  }

  function when(seconds) {
    return new Date(seconds * 1000).toISOString().replace("T", " ");
  }

  // Replace a table's rows with one row per item, each cell's text from `cells(item)`.
  function fill(tableId, items, cells, mark) {
    const body = document.querySelector("#" + tableId + " tbody");
    if (!body) return;
    while (body.firstChild) body.removeChild(body.firstChild);
    for (const item of items) {
      const row = document.createElement("tr");
      if (mark) mark(row, item);
      for (const value of cells(item)) {
        const cell = document.createElement("td");
        cell.textContent = value === null || value === undefined ? "" : String(value);
        row.appendChild(cell);
      }
      body.appendChild(row);
    }
  }

  function refreshTables(body) {
    fill("nodes", body.nodes, (n) => [
      n.id || "?", n.address, n.reachable ? "yes" : "no: " + n.error, n.role, n.term,
      n.commit_index, n.applied_index, n.last_index, n.lag, n.leads.join(" "),
    ], (row, n) => {
      row.setAttribute("data-node", n.id);
      if (!n.reachable) row.className = "down";
    });
    fill("shards", body.shards, (s) => [
      s.shard, s.group, s.leader || "?", s.replicas.join(", "), s.term, s.commit_index,
      s.max_lag, s.sessions,
    ]);
    setText("meta-leader", body.leader || "none known");
  }

  function refreshOverview() {
    fetch("/api/overview", { credentials: "same-origin", cache: "no-store" })
      .then((answer) => (answer.ok ? answer.json() : Promise.reject(answer.status)))
      .then((body) => {
        const samples = body.samples;
        draw(document.getElementById("chart-rate"), series(samples, "append_calls_per_s"));
        draw(document.getElementById("chart-latency"), series(samples, "latency_ms"));
        draw(document.getElementById("chart-entries"), series(samples, "entries_per_s"));
        setText("rate-now", last(samples, "append_calls_per_s", 1, "/s"));
        setText("latency-now", last(samples, "latency_ms", 2, " ms"));
        setText("entries-now", last(samples, "entries_per_s", 1, "/s"));
        document.body.setAttribute("data-samples", String(samples.length));
        refreshTables(body);
        const list = document.getElementById("leader-changes");
        if (list && body.leader_changes.length) {
          while (list.firstChild) list.removeChild(list.firstChild);
          for (const change of body.leader_changes) {
            const item = document.createElement("li");
            item.textContent = when(change.t) + ": " + change.group +
              " " + (change.old || "none") + " → " + (change.new || "none") +
              " (term " + change.term + ")";
            list.appendChild(item);
          }
        }
      })
      .catch(() => setText("metrics-note", "the console did not answer; retrying"));
  }

  // -- session page: the live tail ----------------------------------------------------------
  function startTail(button) {
    const rows = document.querySelector("#tail tbody");
    let next = -1; // the offset expected next; anything below it was shown already
    let dropped = 0;
    const source = new EventSource(button.getAttribute("data-url"));
    source.addEventListener("open", () => setText("tail-status", "live"));
    source.addEventListener("start", (event) => {
      const start = JSON.parse(event.data).from;
      if (next < 0) next = start;
      setText("tail-status", "live from offset " + start);
    });
    source.addEventListener("record", (event) => {
      const record = JSON.parse(event.data);
      if (next >= 0 && record.offset < next) {
        // already shown: never twice (counted, so a test sees whether the server resent any)
        dropped += 1;
        document.body.setAttribute("data-tail-dropped", String(dropped));
        return;
      }
      next = record.offset + 1;
      const row = document.createElement("tr");
      row.setAttribute("data-offset", String(record.offset));
      for (const value of [record.offset, record.time, record.size, record.message_id,
                           record.preview]) {
        const cell = document.createElement("td");
        cell.textContent = String(value);
        row.appendChild(cell);
      }
      rows.appendChild(row);
      document.body.setAttribute("data-tail-next", String(next));
    });
    source.addEventListener("trouble", (event) => {
      const problem = JSON.parse(event.data);
      setText("tail-status", "interrupted (" + problem.code + "): reconnecting");
      // a refusal that a reconnect cannot cure: stop instead of asking again every second
      if (FINAL.includes(problem.code)) {
        source.close();
        setText("tail-status", "stopped: " + problem.code + ": " + problem.message);
      }
    });
    source.addEventListener("error", () => setText("tail-status", "reconnecting…"));
    button.textContent = "Stop live tail";
    button.onclick = () => {
      source.close();
      setText("tail-status", "stopped");
      button.textContent = "Start live tail";
      button.onclick = () => startTail(button);
    };
  }

  function selectAll(box) {
    for (const other of document.querySelectorAll("#dead-letters input[name=sequence]")) {
      other.checked = box.checked;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const page = document.body.getAttribute("data-page");
    if (page === "overview") {
      refreshOverview();
      window.setInterval(refreshOverview, 2000);
    }
    const tail = document.getElementById("tail-toggle");
    if (tail) tail.onclick = () => startTail(tail);
    const all = document.getElementById("all-dead-letters");
    if (all) all.addEventListener("change", () => selectAll(all));
  });
})();
