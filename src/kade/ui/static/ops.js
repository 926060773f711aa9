// The operator's pages: the drain dialog of /ui/nodes and the compare-and-swap editor of
// /ui/kv. Everything else (live regions, actions, toasts) is kade.js.
"use strict";

(() => {
  // -- drain dialog: one node (data-drain-open="<name>") or a zone (data-drain-zone) -------
  const dialog = document.getElementById("drain-dialog");
  if (dialog) {
    const form = document.getElementById("drain-form");
    const attr = document.getElementById("drain-attr");
    const attrLabel = document.getElementById("drain-attr-label");
    document.addEventListener("click", (event) => {
      const opener = event.target.closest("[data-drain-open]");
      if (opener) {
        const node = opener.dataset.drainOpen;
        const zone = opener.dataset.drainZone !== undefined;
        attr.disabled = !zone;
        attrLabel.hidden = !zone;
        form.dataset.action = zone ? "POST /v1/nodes/drain"
          : `POST /v1/nodes/${encodeURIComponent(node)}/drain`;
        form.dataset.done = zone ? "zone drain started" : `drain of ${node} started`;
        document.getElementById("drain-title").textContent =
          zone ? "Drain every node of a zone" : `Drain ${node}`;
        dialog.showModal();
        (zone ? attr : document.getElementById("drain-deadline")).focus();
      } else if (event.target.closest("[data-drain-close]")) {
        dialog.close();
      }
    });
    form.addEventListener("kade:done", () => { dialog.close(); kade.refreshAll(); });
  }

  // -- KV editor: a save carries the ModifyIndex it was read at -----------------------------
  const editor = document.getElementById("kv-editor");
  if (editor) {
    const key = editor.dataset.key;
    const path = key.split("/").map(encodeURIComponent).join("/");  // every part of the key
    const url = (index) => `/v1/kv/${path}?cas=${index}` +
      (editor.dataset.flags ? `&flags=${editor.dataset.flags}` : "");
    const stale = document.getElementById("kv-stale");
    const decode = (b64) => {
      const bytes = Uint8Array.from(atob(b64 || ""), (c) => c.charCodeAt(0));
      return new TextDecoder().decode(bytes);
    };
    async function showCurrent() {
      const response = await fetch(`/v1/kv/${path}`,
                                   { credentials: "same-origin", headers: { Accept: "application/json" } });
      const current = response.ok ? (await response.json())[0] : null;
      editor.elements.cas.value = current ? current.ModifyIndex : 0;
      document.getElementById("kv-stale-index").textContent =
        current ? `index ${current.ModifyIndex}` : "deleted";
      document.getElementById("kv-current").textContent =
        current ? decode(current.Value) : "(the key no longer exists)";
      stale.hidden = false;
      stale.focus();
    }
    editor.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = editor.querySelector("button[type=submit]");
      button.setAttribute("aria-busy", "true");
      try {
        const saved = await kade.api("PUT", url(editor.elements.cas.value), editor.elements.value.value,
                                     { "Content-Type": "text/plain; charset=utf-8" });
        if (saved === true) {
          const creating = editor.dataset.create !== undefined;
          kade.toast(`${key} saved`);
          if (creating) { window.location.assign(`/ui/kv/${path}`); return; }
          stale.hidden = true;
          const fresh = await fetch(`/v1/kv/${path}`,
                                    { credentials: "same-origin", headers: { Accept: "application/json" } });
          if (fresh.ok) {
            const entry = (await fresh.json())[0];
            editor.elements.cas.value = entry.ModifyIndex;
            document.getElementById("kv-index").textContent = entry.ModifyIndex;
          }
        } else {
          kade.toast(`${key} was changed since you opened it: not saved`, true);
          await showCurrent();
        }
      } catch (error) {
        kade.toast(error.message, true);
      } finally {
        button.removeAttribute("aria-busy");
      }
    });
    const remove = document.getElementById("kv-delete");
    if (remove) {
      remove.addEventListener("click", async () => {
        if (!(await kade.confirm(`Delete ${key}?`))) return;
        try {
          const done = await kade.api("DELETE", url(editor.elements.cas.value));
          if (done === true) { window.location.assign(remove.dataset.parent); return; }
          kade.toast(`${key} was changed since you opened it: not deleted`, true);
          await showCurrent();
        } catch (error) {
          kade.toast(error.message, true);
        }
      });
    }
  }
})();

// -- alert rules: the table of /v1/alert-rules (cluster, built-in and apps' rules, and why
// one cannot run), filled from the API and again when a rule or an app changes ---------------
(() => {
  const table = document.querySelector("table[data-rules]");
  if (!table) return;
  const cell = kade.cell;
  async function load() {
    const problem = document.getElementById("rules-error");
    try {
      const { rules } = await kade.api("GET", table.dataset.rules);
      const body = document.createElement("tbody");
      for (const item of rules) {
        const tr = document.createElement("tr");
        const rule = item.rule || {};
        const expr = cell("");
        const code = document.createElement("code");
        code.textContent = rule.expr || "";
        expr.appendChild(code);
        tr.append(cell(item.key), cell(item.app ? `app ${item.app}` : item.source), expr,
                  cell(rule.for ? `${rule.for}s` : ""), cell(item.error || "", item.error ? "error" : ""));
        body.appendChild(tr);
      }
      table.tBodies[0].replaceWith(body);
      document.getElementById("rules-count").textContent = String(rules.length);
      problem.hidden = true;
    } catch (error) {
      problem.textContent = `The rules could not be read: ${error.message}`;
      problem.hidden = false;
    }
  }
  let timer = null;
  document.addEventListener("kade:event", (event) => {
    if (!["alert_rule", "app"].includes(event.detail.type)) return;
    clearTimeout(timer);
    timer = setTimeout(load, 200);
  });
  // what changed while the stream was broken is read again when it opens
  document.addEventListener("kade:opened", load);
  load();
})();
