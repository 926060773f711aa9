// kade's web interface: live regions, actions through the JSON API, filters, shortcuts.
// No framework: the server renders; this file keeps what is on screen current.
"use strict";

const kade = (() => {
  const DEBOUNCE_MS = 120;

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
    const [method, ...rest] = el.dataset.action.trim().split(/\s+/);
    const url = rest.join(" ");
    if (el.dataset.confirm && !(await confirmDialog(el.dataset.confirm))) return;
    el.setAttribute("aria-busy", "true");
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
  const pending = new Map(); // region → timer
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
      // focus survives a refresh: the element with the same data-key (or id) gets it back
      const active = document.activeElement;
      const focused = active && region.contains(active)
        ? (active.dataset.key ? `[data-key="${CSS.escape(active.dataset.key)}"]`
           : active.id ? `#${CSS.escape(active.id)}` : null) : null;
      region.innerHTML = html;
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

  function schedule(region) {
    clearTimeout(pending.get(region));
    pending.set(region, setTimeout(() => { pending.delete(region); refresh(region); }, DEBOUNCE_MS));
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
    source = new EventSource("/v1/events");
    source.onopen = () => {
      setLive("on", "live");
      // the stream tells what changes from now on: what changed since the page was
      // rendered (or while the stream was broken) is fetched once now
      refreshAll();
    };
    source.onerror = () => setLive("off", "reconnecting");
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
  return { api, toast, run, refresh, refreshAll, confirm: confirmDialog, schedule, setLive };
})();
