// kade's web interface: live regions, actions through the JSON API, filters, shortcuts.
// No framework: the server renders; this file keeps what is on screen current.
"use strict";

const kade = (() => {
  const DEBOUNCE_MS = 120;  // a region is fetched again this long after the last change…
  const MAX_WAIT_MS = 1000;  // …or this long after the first one of a burst

  // -- toasts ---------------------------------------------------------------------------
  function toast(text, error = false) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const el = document.createElement("div");
    el.className = "toast" + (error ? " error" : "");
    el.setAttribute("role", error ? "alert" : "status");
    el.textContent = text;
    box.appendChild(el);
    setTimeout(() => el.remove(), error ? 12000 : 4000);
  }

  // -- the API, as the signed-in browser calls it ----------------------------------------
  async function api(method, url, body, headers = {}) {
    const init = { method, headers: { Accept: "application/json", ...headers },
                   credentials: "same-origin" };
    if (body !== undefined && body !== null) {
      init.body = typeof body === "string" ? body : JSON.stringify(body);
      if (!init.headers["Content-Type"]) init.headers["Content-Type"] = "application/json";
    }
    const response = await fetch(url, init);
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
    if (!response.ok) {
      const message = (data && data.message) || (typeof data === "string" && data) ||
                      `${response.status} ${response.statusText}`;
      const error = new Error(message);
      error.status = response.status;
      error.data = data;
      throw error;
    }
    return data;
  }

  // -- confirm dialog ---------------------------------------------------------------------
  function confirmDialog(text) {
    const dialog = document.getElementById("confirm");
    if (!dialog || !dialog.showModal) return Promise.resolve(window.confirm(text));
    document.getElementById("confirm-text").textContent = text;
    // Escape closes the dialog without touching returnValue: an earlier "ok" must not count
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
      document.getElementById("confirm-ok").focus();
    });
  }

  // -- actions: <button data-action="POST /v1/apps/x/scale" data-body='{...}'> ------------
  // and <form data-action="PUT /v1/..."> (fields become the JSON body; data-body-field
  // names one field whose text is the whole body). data-confirm asks first; data-done is
  // the message shown after; data-then="go:/ui/..." goes there after.
  function formBody(form) {
    const whole = form.dataset.bodyField;
    if (whole) return form.elements[whole].value;
    const out = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled) continue;
      if (el.type === "checkbox") out[el.name] = el.checked;
      else if (el.type === "number") out[el.name] = el.value === "" ? null : Number(el.value);
      else out[el.name] = el.value;
    }
    return out;
  }

  async function run(el, body) {
    // one call at a time per control: a double click does not restart an app twice
    if (el.getAttribute("aria-busy") === "true") return;
    const [method, ...rest] = el.dataset.action.trim().split(/\s+/);
    const url = rest.join(" ");
    if (el.dataset.confirm && !(await confirmDialog(el.dataset.confirm))) return;
    el.setAttribute("aria-busy", "true");
    const submit = el.tagName === "FORM" ? el.querySelector("[type=submit]:not([disabled])") : null;
    if (submit) submit.disabled = true;
    try {
      const headers = el.dataset.contentType ? { "Content-Type": el.dataset.contentType } : {};
      const data = await api(method, url, body, headers);
      if (el.dataset.done) toast(el.dataset.done);
      el.dispatchEvent(new CustomEvent("kade:done", { bubbles: true, detail: data }));
      const then = el.dataset.then || "";
      if (then.startsWith("go:")) window.location.assign(then.slice(3));
      else if (then === "refresh") refreshAll();
    } catch (error) {
      toast(error.message, true);
      el.dispatchEvent(new CustomEvent("kade:error", { bubbles: true, detail: error }));
    } finally {
      el.removeAttribute("aria-busy");
      if (submit) submit.disabled = false;
    }
  }

  document.addEventListener("click", (event) => {
    const el = event.target.closest("button[data-action], a[data-action]");
    if (!el || el.form && el.form.dataset.action) return;
    event.preventDefault();
    const body = el.dataset.body !== undefined ? JSON.parse(el.dataset.body) : undefined;
    run(el, body);
  });
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!form.dataset.action) return;
    event.preventDefault();
    run(form, formBody(form));
  });

  // -- live regions -------------------------------------------------------------------------
  // <section data-live="live_apps" data-on="app task_status"> is fetched again as
  // `?fragment=live_apps` whenever /v1/events says one of those types changed.
  const pending = new Map(); // region → { timer, since }
  const busy = new Set();

  function fragmentUrl(name) {
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", name);
    url.hash = "";
    return url.toString();
  }

  async function refresh(region) {
    if (busy.has(region)) { schedule(region); return; }
    busy.add(region);
    try {
      const response = await fetch(fragmentUrl(region.dataset.live),
                                   { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (response.status === 401 || response.redirected && response.url.includes("/ui/login")) {
        window.location.assign("/ui/login?next=" + encodeURIComponent(location.pathname + location.search));
        return;
      }
      if (!response.ok) return;
      const html = await response.text();
      // what the user was doing survives a refresh: the element with the same data-key (or
      // id) gets focus back, an open <details> stays open, a chosen <select> keeps its choice
      const active = document.activeElement;
      const focused = active && region.contains(active)
        ? (active.dataset.key ? `[data-key="${CSS.escape(active.dataset.key)}"]`
           : active.id ? `#${CSS.escape(active.id)}` : null) : null;
      const kept = [...region.querySelectorAll("details[data-key], select[data-key]")].map(
        (el) => [el.dataset.key, el.tagName === "DETAILS" ? el.open : el.value]);
      region.innerHTML = html;
      for (const [key, state] of kept) {
        const again = region.querySelector(`[data-key="${CSS.escape(key)}"]`);
        if (!again) continue;
        if (again.tagName === "DETAILS") again.open = state;
        else if ([...again.options].some((o) => o.value === state)) again.value = state;
      }
      if (focused) {
        const again = region.querySelector(focused);
        if (again) again.focus();
      }
      applyFilters(region);
      region.dispatchEvent(new CustomEvent("kade:refreshed", { bubbles: true }));
    } finally {
      busy.delete(region);
    }
  }

  // a burst of changes is one refresh after it; a change that never pauses (a deployment of
  // many tasks) still refreshes the region at least every MAX_WAIT_MS
  function schedule(region) {
    const waiting = pending.get(region);
    if (waiting && performance.now() - waiting.since >= MAX_WAIT_MS) return;
    if (waiting) clearTimeout(waiting.timer);
    const timer = setTimeout(() => { pending.delete(region); refresh(region); }, DEBOUNCE_MS);
    pending.set(region, { timer, since: waiting ? waiting.since : performance.now() });
  }

  function refreshAll() {
    document.querySelectorAll("[data-live]").forEach(schedule);
  }

  function regionsFor(type) {
    return [...document.querySelectorAll("[data-live]")].filter(
      (r) => (r.dataset.on || "").split(/\s+/).includes(type));
  }

  function setLive(state, text) {
    const el = document.getElementById("live-state");
    if (!el) return;
    el.classList.toggle("on", state === "on");
    el.classList.toggle("off", state === "off");
    el.querySelector(".live-text").textContent = text;
  }

  let source = null;

  // a stream the server ended (a session that expired, a restart): a session gone means the
  // sign-in page; anything else is opened again, waiting longer each time (up to 30 s)
  function retrier() {
    let ms = 0;
    return {
      reset() { ms = 0; },
      async again(open) {
        ms = Math.min(Math.max(ms * 2, 1000), 30000);
        await new Promise((resolve) => setTimeout(resolve, ms));
        try {
          await api("GET", "/v1/info");
        } catch (error) {
          if (error.status === 401) {
            window.location.assign("/ui/login?next=" + encodeURIComponent(location.pathname + location.search));
            return;
          }
        }
        open();
      },
    };
  }

  function connect() {
    // the types live regions need, and those a page's script listens to as `kade:event`
    // (<section data-events="app task">)
    const types = new Set();
    document.querySelectorAll("[data-live], [data-events]").forEach(
      (r) => `${r.dataset.on || ""} ${r.dataset.events || ""}`.split(/\s+/).filter(Boolean)
        .forEach((t) => types.add(t)));
    if (!types.size || !window.EventSource) {
      if (!document.querySelector("[data-own-stream]")) setLive("idle", "static");
      return;
    }
    const retry = retrier();
    const open = () => {
      source = new EventSource("/v1/events");
      source.onopen = () => {
        retry.reset();
        setLive("on", "live");
        // the stream tells what changes from now on: what changed since the page was
        // rendered (or while the stream was broken) is fetched once now
        refreshAll();
        document.dispatchEvent(new CustomEvent("kade:opened"));
      };
      source.onerror = () => {
        setLive("off", "reconnecting");
        // the browser retries by itself unless the answer was not a stream (a 401)
        if (source.readyState === EventSource.CLOSED) retry.again(open);
      };
      // the store forgot the revision the browser resumes from: start afresh, all fetched
      source.addEventListener("reset", () => {
        source.close();
        setLive("off", "reconnecting");
        retry.again(open);
      });
      listen(source, types);
    };
    open();
  }

  function listen(source, types) {
    for (const type of types) {
      const names = type === "quarantine" ? [type] : [`${type}_updated`, `${type}_deleted`];
      for (const name of names) {
        source.addEventListener(name, (event) => {
          let data = null;
          try { data = JSON.parse(event.data); } catch (_) { /* keep null */ }
          document.dispatchEvent(new CustomEvent("kade:event",
            { detail: { type, name, id: event.lastEventId, data } }));
          regionsFor(type).forEach(schedule);
        });
      }
    }
  }

  // -- pieces the page scripts build tables of ---------------------------------------------
  // a cell of text (or of an element); appended to `row` when one is given
  function cell(content, className, row) {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (content instanceof Node) td.append(content); else td.textContent = content;
    if (row) row.append(td);
    return td;
  }
  // seconds since the epoch as `2026-11-30 17:00:00` (UTC, as every time on the pages)
  const utc = (seconds) => seconds == null ? "–"
    : new Date(seconds * 1000).toISOString().slice(0, 19).replace("T", " ");

  // -- filters: <input data-filter="#table"> hides rows whose data-row lacks the text ------
  function applyFilter(input) {
    const table = document.querySelector(input.dataset.filter);
    if (!table) return;
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    table.querySelectorAll("tbody tr").forEach((tr) => {
      const text = (tr.dataset.row || tr.textContent).toLowerCase();
      tr.hidden = !words.every((w) => text.includes(w));
    });
  }
  function applyFilters(scope) {
    document.querySelectorAll("input[data-filter]").forEach((input) => {
      if (!scope || scope.querySelector(input.dataset.filter) || scope.matches(input.dataset.filter)) applyFilter(input);
    });
  }
  document.addEventListener("input", (event) => {
    if (event.target.matches("input[data-filter]")) applyFilter(event.target);
  });

  // -- keyboard: "/" searches, "Escape" leaves a field -----------------------------------
  document.addEventListener("keydown", (event) => {
    const inField = event.target.closest("input, textarea, select, [contenteditable]");
    if (event.key === "/" && !inField && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      const search = document.getElementById("search-q");
      if (search) search.focus();
    } else if (event.key === "Escape" && inField) {
      event.target.blur();
    }
  });

  document.addEventListener("DOMContentLoaded", () => { connect(); applyFilters(); });
  window.addEventListener("pagehide", () => source && source.close());

  // setLive: a page whose own stream is its live part says so in the top bar
  return { api, toast, run, refresh, refreshAll, confirm: confirmDialog, schedule, setLive,
           retrier, cell, utc };
})();
