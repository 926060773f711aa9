// The domain events page: search (/v1/domain-events with its histogram), one event's
// details with the events around it, and a live tail (/v1/domain-events/follow).
"use strict";

(() => {
  const view = document.getElementById("de-view");
  if (!view) return;
  const form = document.getElementById("de-form");
  const rows = document.getElementById("de-rows");
  const errorBox = document.getElementById("de-error");
  const state = document.getElementById("de-state");
  const liveBox = document.getElementById("de-live");
  const detail = document.getElementById("de-detail-body");
  const keep = Number(view.dataset.keep) || 500;
  const STEPS = [10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400];
  const UNITS = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };
  let source = null;
  let histogramTimer = 0;
  const retry = kade.retrier();  // the follow stream, reopened when the server ended it
  let selected = view.dataset.event || "";

  function params() {
    const p = new URLSearchParams();
    for (const name of ["q", "since", "until"]) {
      const value = form.elements[name].value.trim();
      if (value) p.set(name, value);
    }
    return p;
  }

  // seconds since the epoch of a `since`/`until` as the API reads them (roughly: the bars)
  function when(text, fallback) {
    if (!text) return fallback;
    const d = text.match(/^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/);
    if (d && !(text.length > 8 && !d[2])) return Date.now() / 1000 - Number(d[1]) * UNITS[d[2] || "s"];
    if (d) return Number(d[1]);
    const parsed = Date.parse(text);
    return Number.isNaN(parsed) ? fallback : parsed / 1000;
  }

  function interval(p) {
    const until = when(p.get("until"), Date.now() / 1000);
    const since = when(p.get("since"), until - 86400);
    const span = Math.max(until - since, 10);
    return STEPS.find((s) => s >= span / 60) || STEPS[STEPS.length - 1];
  }

  function iso(seconds) { return new Date(seconds * 1000).toISOString(); }

  const cell = (tr, content, className) => kade.cell(content, className, tr);

  function brief(value) {
    const text = JSON.stringify(value);
    return text.length > 120 ? text.slice(0, 120) + "…" : text;
  }

  function row(e) {
    const tr = document.createElement("tr");
    tr.dataset.id = String(e.id);
    if (String(e.id) === selected) tr.className = "selected";
    cell(tr, iso(e.time).replace("T", " ").slice(0, 23), "nowrap mono");
    cell(tr, e.type, "nowrap");
    cell(tr, e.source || "–", "nowrap");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "link";
    open.textContent = `#${e.id}`;
    open.setAttribute("aria-label", `Details of event ${e.id}, ${e.type}`);
    open.addEventListener("click", () => show(e.id));
    cell(tr, open, "nowrap");
    cell(tr, brief(e.body), "mono small");
    return tr;
  }

  // -- search and histogram -------------------------------------------------------------
  async function search() {
    const p = params();
    p.set("limit", String(keep));
    p.set("interval", `${interval(p)}s`);
    errorBox.hidden = true;
    state.textContent = "searching…";
    let data;
    try {
      data = await kade.api("GET", "/v1/domain-events?" + p.toString());
    } catch (error) {
      errorBox.textContent = error.status === 404
        ? "This kade does not keep domain events (they are kept by `kade up`)." : error.message;
      errorBox.hidden = false;
      state.textContent = "";
      return false;
    }
    rows.replaceChildren(...data.events.map(row));
    document.getElementById("de-empty").hidden = data.events.length > 0;
    histogram(data.histogram || [], interval(p));
    state.textContent = "";
    return true;
  }

  async function refreshHistogram() {
    const p = params();
    p.set("limit", "0");
    p.set("interval", `${interval(p)}s`);
    try {
      const data = await kade.api("GET", "/v1/domain-events?" + p.toString());
      histogram(data.histogram || [], interval(p));
    } catch (_) { /* the next search says what is wrong */ }
  }

  function histogram(buckets, step) {
    const box = document.getElementById("de-histogram");
    const total = buckets.reduce((n, b) => n + b.count, 0);
    document.getElementById("de-total").textContent =
      `${total} event${total === 1 ? "" : "s"}, per ${step >= 3600 ? step / 3600 + " h" : step >= 60 ? step / 60 + " min" : step + " s"}`;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    const width = Math.max(buckets.length, 1) * 10;
    const height = 90;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "histogram");
    const most = Math.max(1, ...buckets.map((b) => b.count));
    buckets.forEach((b, i) => {
      if (!b.count) return;
      const h = Math.max(2, (b.count / most) * (height - 4));
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", String(i * 10 + 1));
      rect.setAttribute("width", "8");
      rect.setAttribute("y", String(height - h));
      rect.setAttribute("height", String(h));
      rect.dataset.count = String(b.count);
      const title = document.createElementNS(ns, "title");
      title.textContent = `${iso(b.start)}: ${b.count}`;
      rect.append(title);
      // a bar narrows the search to its interval, by click or by keyboard
      rect.setAttribute("tabindex", "0");
      rect.setAttribute("role", "button");
      rect.setAttribute("aria-label", `${b.count} from ${iso(b.start)}: narrow to this interval`);
      const narrow = () => {
        form.elements.since.value = iso(b.start);
        form.elements.until.value = iso(b.start + step);
        go();
      };
      rect.addEventListener("click", narrow);
      rect.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); narrow(); }
      });
      svg.append(rect);
    });
    box.replaceChildren(svg);
    const stamp = (t) => iso(t).slice(0, 16).replace("T", " ");
    document.getElementById("de-from").textContent = buckets.length ? stamp(buckets[0].start) : "";
    document.getElementById("de-to").textContent =
      buckets.length ? stamp(buckets[buckets.length - 1].start + step) + " UTC" : "";
  }

  // -- one event and the events around it --------------------------------------------------
  function link(text, q, since, until) {
    const a = document.createElement("a");
    const p = new URLSearchParams({ q, since, until });
    a.href = "/ui/domain-events?" + p.toString();
    a.textContent = text;
    return a;
  }

  async function show(id) {
    selected = String(id);
    for (const tr of rows.rows) tr.classList.toggle("selected", tr.dataset.id === selected);
    const p = new URLSearchParams(location.search);
    p.set("event", selected);
    history.replaceState(null, "", "?" + p.toString());
    let data;
    try {
      data = await kade.api("GET", `/v1/domain-events/${encodeURIComponent(id)}?around=5`);
    } catch (error) {
      detail.replaceChildren(Object.assign(document.createElement("p"), { className: "error", textContent: error.message }));
      return;
    }
    const e = data.event;
    const out = document.createDocumentFragment();
    const title = document.createElement("h3");
    title.textContent = `#${e.id} ${e.type}`;
    out.append(title);
    const dl = document.createElement("dl");
    dl.className = "fields";
    for (const [name, value] of [["time", iso(e.time)], ["received", e.received ? iso(e.received) : ""],
      ["source", e.source], ["correlation id", e.correlationId], ["message id", e.messageId],
      ["routing key", e.routingKey], ["exchange", e.exchange]]) {
      if (!value) continue;
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      dl.append(dt, dd);
    }
    out.append(dl);
    const body = document.createElement("pre");
    body.className = "json";
    body.textContent = JSON.stringify(e.body, null, 2);
    out.append(body);
    if (e.headers && Object.keys(e.headers).length) {
      const headers = document.createElement("pre");
      headers.className = "json";
      headers.textContent = "headers " + JSON.stringify(e.headers, null, 2);
      out.append(headers);
    }
    const related = document.createElement("p");
    related.className = "small";
    related.append("Search: ");
    if (e.correlationId) related.append(link("same correlation id", `correlationId:"${e.correlationId}"`, "7d", ""), " · ");
    related.append(link("same type", `type:${e.type}`, form.elements.since.value, form.elements.until.value), " · ");
    related.append(link("everything ±5 minutes", "", iso(e.time - 300), iso(e.time + 300)));
    out.append(related);
    if (e.correlationId) {
      try {
        const same = await kade.api("GET", "/v1/domain-events?" + new URLSearchParams(
          { q: `correlationId:"${e.correlationId}"`, since: "7d", limit: "20" }).toString());
        out.append(listing("Same correlation id", same.events, "de-correlated"));
      } catch (_) { /* the time window below still shows the neighbours */ }
    }
    out.append(listing("Around it in time", [...data.before, e, ...data.after], "de-around"));
    detail.replaceChildren(out);
  }

  function listing(title, events, id) {
    const out = document.createDocumentFragment();
    const heading = document.createElement("h3");
    heading.textContent = title;
    const table = document.createElement("table");
    table.className = "dense";
    table.id = id;
    const tbody = document.createElement("tbody");
    for (const near of events.sort((a, b) => b.time - a.time || b.id - a.id)) tbody.append(row(near));
    table.append(tbody);
    const scroll = document.createElement("div");
    scroll.className = "scroll";
    scroll.append(table);
    out.append(heading, scroll);
    return out;
  }

  // -- live tail ---------------------------------------------------------------------------
  function follow() {
    if (source) { source.close(); source = null; }
    const p = params();
    if (!liveBox.checked || p.get("until")) {
      kade.setLive("idle", "not live");
      state.textContent = p.get("until") ? "until a time given: not live" : "";
      return;
    }
    const q = p.get("q") || "";
    // from the newest event the search showed: none stored meanwhile is missed
    const newest = Math.max(0, ...[...rows.rows].map((tr) => Number(tr.dataset.id)));
    const query = new URLSearchParams({ q });
    if (newest) query.set("after", String(newest));
    source = new EventSource("/v1/domain-events/follow?" + query.toString());
    source.onopen = () => { retry.reset(); state.textContent = "live"; kade.setLive("on", "live"); };
    source.onerror = () => {
      if (!source) return;
      state.textContent = "reconnecting…";
      kade.setLive("off", "reconnecting");
      // the browser retries by itself unless the answer was not a stream (a 401)
      if (source.readyState === EventSource.CLOSED) retry.again(follow);
    };
    source.addEventListener("domain_event", (message) => {
      const e = JSON.parse(message.data);
      if (rows.querySelector(`tr[data-id="${e.id}"]`)) return;
      rows.prepend(row(e));
      while (rows.rows.length > keep) rows.deleteRow(rows.rows.length - 1);
      document.getElementById("de-empty").hidden = true;
      clearTimeout(histogramTimer);
      histogramTimer = setTimeout(refreshHistogram, 1000);
    });
  }

  async function go() {
    const p = params();
    if (selected) p.set("event", selected);
    history.replaceState(null, "", "?" + p.toString());
    if (await search()) follow();
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); go(); });
  liveBox.addEventListener("change", follow);
  window.addEventListener("pagehide", () => { if (source) source.close(); source = null; });
  go().then(() => { if (selected) show(selected); });
})();
