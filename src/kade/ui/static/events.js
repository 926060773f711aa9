// The events page: the state-change stream (/v1/events, the one kade.js keeps open) as
// rows, newest first, filtered by type and key text, bounded, with pause.
"use strict";

(() => {
  const view = document.getElementById("events-view");
  if (!view) return;
  const rows = document.getElementById("events-rows");
  const form = document.getElementById("events-filters");
  const keyInput = document.getElementById("events-key");
  const state = document.getElementById("events-state");
  const empty = document.getElementById("events-empty");
  const pauseButton = document.getElementById("events-pause");
  const keep = Number(view.dataset.keep) || 500;
  let paused = false;
  let held = [];
  let heldCount = 0;

  function wanted() {
    return new Set([...form.querySelectorAll('input[name="type"]:checked')].map((i) => i.value));
  }

  function visible(tr, types, text) {
    return types.has(tr.dataset.type) && tr.dataset.key.toLowerCase().includes(text);
  }

  function filter() {
    const types = wanted();
    const text = keyInput.value.trim().toLowerCase();
    for (const tr of rows.rows) tr.hidden = !visible(tr, types, text);
  }

  function summary(data) {
    if (data.type === "quarantine") return data.reason || data.message || "";
    const value = data.value;
    if (value === undefined || value === null) return "";
    const text = typeof value === "object" ? JSON.stringify(value) : String(value);
    return text.length > 160 ? text.slice(0, 160) + "…" : text;
  }

  function row(detail) {
    const data = detail.data || {};
    const tr = document.createElement("tr");
    tr.dataset.type = detail.type;
    tr.dataset.key = data.key || data.entity || "";
    const cells = [
      new Date().toISOString().slice(11, 23), detail.type,
      detail.name.endsWith("_deleted") ? "deleted" : detail.type === "quarantine" ? "quarantined" : "updated",
      tr.dataset.key, detail.id || data.revision || "", summary(data)];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = String(text);
      td.className = i === 5 ? "mono small" : i === 3 ? "mono" : "nowrap";
      tr.append(td);
    });
    return tr;
  }

  function show(details) {
    const types = wanted();
    const text = keyInput.value.trim().toLowerCase();
    const fragment = document.createDocumentFragment();
    for (const detail of details.reverse()) {
      const tr = row(detail);
      tr.hidden = !visible(tr, types, text);
      fragment.append(tr);
    }
    rows.prepend(fragment);
    while (rows.rows.length > keep) rows.deleteRow(rows.rows.length - 1);
    empty.hidden = rows.rows.length > 0;
    counted();
  }

  function counted() {
    state.textContent = paused ? `paused: ${heldCount} new held back` : `${rows.rows.length} shown`;
  }

  document.addEventListener("kade:event", (event) => {
    if (paused) {
      held.push(event.detail);
      heldCount++;
      if (held.length > keep) held = held.slice(-keep);
      counted();
    } else {
      show([event.detail]);
    }
  });

  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.setAttribute("aria-pressed", String(paused));
    pauseButton.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      const details = held;
      held = [];
      heldCount = 0;
      show(details);
    }
    counted();
  });
  document.getElementById("events-clear").addEventListener("click", () => {
    rows.replaceChildren();
    empty.hidden = false;
    counted();
  });
  form.addEventListener("input", filter);
  form.addEventListener("submit", (event) => event.preventDefault());
})();
