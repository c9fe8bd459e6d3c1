// The console's only script: the live record view and the DLQ picker. Every change is a
// plain form post, so the console works without it.
"use strict";

const WINDOW = 500; // rows the live view keeps

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function liveRecords(form) {
  const body = document.querySelector("#records tbody");
  const state = document.getElementById("stream-state");
  const rate = document.getElementById("rate");
  const shown = document.getElementById("shown");
  const skippedEl = document.getElementById("skipped");
  const pauseButton = document.getElementById("pause");
  let source = null, paused = false, held = [], skipped = 0, seen = 0;

  function render(records) {
    const fragment = document.createDocumentFragment();
    for (const r of records) {
      const tr = document.createElement("tr");
      tr.dataset.id = r.id || "";
      tr.append(cell(r.timestamp ? r.timestamp.slice(11, 23) : ""), cell(r.topic), cell(r.type),
        cell(r.source), cell(r.correlation_id), cell(r.hops), cell(r.preview, "payload"));
      const td = document.createElement("td");
      const a = document.createElement("a");
      a.href = r.href; a.textContent = `${r.partition}/${r.offset}`;
      td.append(a); tr.append(td);
      fragment.prepend(tr);
    }
    body.prepend(fragment);
    while (body.rows.length > WINDOW) body.deleteRow(body.rows.length - 1);
    shown.textContent = body.rows.length;
  }

  function connect() {
    if (source) source.close();
    const params = new URLSearchParams(new FormData(form));
    for (const [k, v] of [...params]) if (!v) params.delete(k);
    source = new EventSource(`${form.dataset.stream}?${params}`);
    state.textContent = "connecting …";
    source.addEventListener("open", () => { state.textContent = paused ? "paused" : "live"; });
    source.addEventListener("error", () => { state.textContent = "reconnecting …"; });
    source.addEventListener("records", (event) => {
      const batch = JSON.parse(event.data);
      seen += batch.seen;
      skipped += batch.skipped;
      skippedEl.textContent = skipped;
      if (paused) {
        held = held.concat(batch.records).slice(-WINDOW);
        state.textContent = `paused (${held.length} waiting)`;
      } else {
        render(batch.records);
      }
    });
  }

  setInterval(() => { rate.textContent = seen; seen = 0; }, 1000);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    body.replaceChildren();
    const params = new URLSearchParams(new FormData(form));
    history.replaceState(null, "", `?${params}`);
    connect();
  });
  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.textContent = paused ? "resume" : "pause";
    if (!paused) { render(held); held = []; state.textContent = "live"; }
    else state.textContent = "paused";
  });
  connect();
}

function dlqPicker(form) {
  form.addEventListener("submit", () => {
    const ids = [...form.querySelectorAll("input.pick:checked")].map((box) => box.value);
    document.getElementById("redrive-ids").value = ids.join(",");
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const filters = document.getElementById("filters");
  if (filters) liveRecords(filters);
  const redrive = document.getElementById("redrive-form");
  if (redrive) dlqPicker(redrive);
});

// The graph's edge labels: records per second, refreshed every few seconds.
function liveRates(container) {
  const url = `/orgs/${container.dataset.org}/graph/rates`;
  const state = document.getElementById("rates-source");
  async function refresh() {
    try {
      const answer = await (await fetch(url, { headers: { accept: "application/json" } })).json();
      for (const edge of container.querySelectorAll('g[id^="edge|"]')) {
        if (edge.id.startsWith("edge|spawned|")) continue;
        const label = edge.querySelector("text");
        if (label) label.textContent = `${(answer.rates[edge.id] || 0).toFixed(1)}/s`;
      }
      if (state) state.textContent = `rates from ${answer.source}`;
    } catch (err) {
      if (state) state.textContent = "rates unavailable";
    }
  }
  refresh();
  setInterval(refresh, 3000);
}

document.addEventListener("DOMContentLoaded", () => {
  const graph = document.getElementById("graph");
  if (graph) liveRates(graph);
});
