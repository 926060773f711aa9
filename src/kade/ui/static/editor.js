// The deploy / edit page: line numbers, the plan, problems at their lines, deploy.
// The text goes to the JSON API as written, so the lines it names are the editor's lines.
"use strict";

(() => {
  const form = document.getElementById("editor");
  if (!form) return;
  const area = document.getElementById("definition");
  const gutter = document.getElementById("gutter");
  const state = document.getElementById("editor-state");
  const problemsBox = document.getElementById("problems");
  const problemList = document.getElementById("problem-list");
  const planBox = document.getElementById("plan");
  let problems = [];
  let shownLines = -1;
  let dirty = false;

  // -- line numbers, with a marker on each line a problem names --------------------------
  function renderGutter(force = false) {
    const lines = area.value.split("\n").length;
    if (!force && lines === shownLines) return;
    shownLines = lines;
    const marked = new Map();
    for (const p of problems) {
      if (p.line) marked.set(p.line, [...(marked.get(p.line) || []), describe(p)]);
    }
    const frag = document.createDocumentFragment();
    for (let i = 1; i <= lines; i++) {
      const row = document.createElement("div");
      row.textContent = String(i);
      if (marked.has(i)) {
        row.className = "bad";
        row.title = marked.get(i).join("\n");
        row.dataset.line = String(i);
      }
      frag.appendChild(row);
    }
    gutter.replaceChildren(frag);
    gutter.scrollTop = area.scrollTop;
  }

  function describe(p) {
    return p.field ? `${p.field}: ${p.message}` : p.message;
  }

  function lineHeight() {
    return parseFloat(getComputedStyle(area).lineHeight) || 20;
  }

  function goToLine(n) {
    const lines = area.value.split("\n");
    const line = Math.min(Math.max(n, 1), lines.length);
    let start = 0;
    for (let i = 0; i < line - 1; i++) start += lines[i].length + 1;
    area.focus();
    area.setSelectionRange(start, start + lines[line - 1].length);
    area.scrollTop = Math.max((line - 1) * lineHeight() - area.clientHeight / 3, 0);
    gutter.scrollTop = area.scrollTop;
  }

  // -- problems: listed under the editor, each focusing its line on click -----------------
  function fresh() {
    for (const el of [problemsBox, planBox, form]) el.classList.remove("stale");
  }

  function showProblems(list) {
    problems = list;
    fresh();
    problemList.replaceChildren(...list.map((p) => {
      const li = document.createElement("li");
      if (p.line) {
        const go = document.createElement("button");
        go.type = "button";
        go.className = "link where";
        go.dataset.line = String(p.line);
        go.textContent = `line ${p.line}`;
        go.setAttribute("aria-label", `Go to line ${p.line}: ${describe(p)}`);
        li.appendChild(go);
      } else {
        const where = document.createElement("span");
        where.className = "where muted";
        where.textContent = "—";
        li.appendChild(where);
      }
      if (p.field) {
        const code = document.createElement("code");
        code.textContent = p.field;
        li.appendChild(code);
      }
      const text = document.createElement("span");
      text.className = "message";
      text.textContent = p.message;
      li.appendChild(text);
      return li;
    }));
    problemsBox.hidden = list.length === 0;
    renderGutter(true);
  }

  function problemsOf(error) {
    const data = error.data;
    if (data && Array.isArray(data.problems) && data.problems.length) return data.problems;
    return [{ field: null, message: error.message, line: null }];
  }

  // -- what is sent: the text as written, with its type --------------------------------------
  function contentType() {
    const start = area.value.trimStart()[0];
    return start === "{" || start === "[" ? "application/json" : "application/yaml";
  }

  function appId() {
    if (form.dataset.app) return form.dataset.app;
    const text = area.value;
    const m = contentType() === "application/json"
      ? /"id"\s*:\s*"([^"]*)"/.exec(text)
      : /^id:[ \t]*["']?([^"'\s#]*)/m.exec(text);
    const id = m ? m[1].replace(/^\/+|\/+$/g, "") : "";
    return id ? "/" + id : "";
  }

  function appPath(id) {
    return id.split("/").filter(Boolean).map(encodeURIComponent).join("/");
  }

  async function send(method, suffix) {
    const id = appId();
    if (!id) {
      const line = area.value.split("\n").findIndex((l) => /^\s*"?id"?\s*:/.test(l)) + 1;
      showProblems([{ field: "id", message: "is required: the app's id, e.g. /shop/web",
                      line: line || null }]);
      return null;
    }
    return kade.api(method, `/v1/apps/${appPath(id)}${suffix}`, area.value,
                    { "Content-Type": contentType() });
  }

  // -- the plan ---------------------------------------------------------------------------
  const cell = kade.cell;

  function value(v) {
    return v === null || v === undefined ? "(none)" : JSON.stringify(v);
  }

  function summary(plan) {
    if (!plan.changed) return `${plan.app}: unchanged — deploying makes no new version.`;
    if (plan.new) return `${plan.app} is a new app.`;
    return plan.restartsTasks
      ? `${plan.app}: a new version; its tasks are replaced.`
      : `${plan.app}: a new version; its tasks keep running.`;
  }

  function showPlan(plan) {
    document.getElementById("plan-summary").textContent = summary(plan);
    for (const td of planBox.querySelectorAll("td[data-count]")) {
      td.textContent = String(plan.instances[td.dataset.count] ?? 0);
    }
    const waiting = document.getElementById("plan-waiting");
    waiting.hidden = !plan.instances.unplaced;
    waiting.textContent = plan.instances.unplaced
      ? `${plan.instances.unplaced} task(s) cannot be placed now: ${plan.waiting || "no node fits"}` : "";
    const rows = plan.new ? [] : plan.fields.map((f) => {
      const tr = document.createElement("tr");
      const name = document.createElement("td");
      const code = document.createElement("code");
      code.textContent = f.path;
      name.appendChild(code);
      tr.append(name, cell(value(f.from), "from"), cell(value(f.to), "to"));
      return tr;
    });
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = cell(plan.new ? "every field is new" : "no field changes", "muted");
      td.colSpan = 3;
      tr.appendChild(td);
      rows.push(tr);
    }
    if (plan.moreFields) {
      const tr = document.createElement("tr");
      const td = cell(`… and ${plan.moreFields} more`, "muted");
      td.colSpan = 3;
      tr.appendChild(td);
      rows.push(tr);
    }
    planBox.querySelector("#plan-fields tbody").replaceChildren(...rows);
    const steps = plan.deployment ? plan.deployment.steps.map((s) => {
      const li = document.createElement("li");
      li.textContent = s.description;
      return li;
    }) : [Object.assign(document.createElement("li"),
                        { textContent: "none: the tasks stay as they are" })];
    document.getElementById("plan-steps").replaceChildren(...steps);
    planBox.hidden = false;
  }

  async function plan() {
    state.textContent = "planning…";
    try {
      const result = await send("POST", "/plan");
      if (!result) { planBox.hidden = true; state.textContent = ""; return; }
      showProblems([]);
      showPlan(result);
      fresh();
      state.textContent = "planned";
    } catch (error) {
      planBox.hidden = true;
      showProblems(problemsOf(error));
      state.textContent = "not accepted";
    }
  }

  async function deploy() {
    state.textContent = "deploying…";
    try {
      const result = await send("PUT", "");
      if (!result) { state.textContent = ""; return; }
      dirty = false;
      window.location.assign(`/ui/apps/${appPath(result.id)}`);
    } catch (error) {
      showProblems(problemsOf(error));
      state.textContent = "not deployed";
    }
  }

  // -- wiring --------------------------------------------------------------------------------
  function edited() {
    dirty = true;
    // what is shown was said of the text before this edit: kept, marked as such
    problemsBox.classList.add("stale");
    planBox.classList.add("stale");
    form.classList.add("stale");
    renderGutter();
  }
  area.addEventListener("input", edited);
  area.addEventListener("scroll", () => { gutter.scrollTop = area.scrollTop; });
  area.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      plan();
    } else if (event.key === "Tab" && !event.shiftKey && !event.ctrlKey && !event.altKey) {
      event.preventDefault(); // indent; Escape leaves the field, then Tab moves on
      area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end");
      edited();
    }
  });
  document.getElementById("plan-button").addEventListener("click", plan);
  const deployButton = document.getElementById("deploy-button");
  if (deployButton) deployButton.addEventListener("click", deploy);
  problemList.addEventListener("click", (event) => {
    const go = event.target.closest("[data-line]");
    if (go) goToLine(Number(go.dataset.line));
  });
  gutter.addEventListener("click", (event) => {
    const row = event.target.closest("[data-line]");
    if (row) goToLine(Number(row.dataset.line));
  });
  document.querySelectorAll("a[data-format]").forEach((a) => a.addEventListener("click", async (event) => {
    if (!dirty) return;
    event.preventDefault();
    if (await kade.confirm("Switch the format? Your edits are not kept: the definition is shown again as stored.")) {
      window.location.assign(a.href);
    }
  }));
  // the live version (kade.js refreshes it on every app event): changed elsewhere meanwhile?
  document.addEventListener("kade:refreshed", (event) => {
    if (event.target.dataset.live !== "live_version") return;
    const current = document.getElementById("current-version");
    const changed = document.getElementById("changed-meanwhile");
    if (current && changed) changed.hidden = current.dataset.version === form.dataset.version;
  });
  renderGutter(true);
})();
