// The app page: a task's stderr tail, the diff of two versions, ended tasks shown on demand,
// and the metrics charts (plain SVG, from /api/v1/query_range). Everything else on the page
// is kept live by kade.js.
"use strict";

(() => {
  const STDERR_LINES = 50;
  const CHART_POINTS = 240;  // steps across a chart, whatever its range
  const CHART_REFRESH_MS = 30000;
  const appId = () => document.getElementById("app-id").textContent;

  // -- a task's stderr, one click away ---------------------------------------------------
  async function showStderr(taskId) {
    const box = document.getElementById("stderr-tail");
    const lines = document.getElementById("stderr-lines");
    document.getElementById("stderr-title").textContent = `stderr of ${taskId}, last ${STDERR_LINES} lines`;
    document.getElementById("stderr-logs").href = "/ui/logs?task=" + encodeURIComponent(taskId);
    lines.textContent = "loading…";
    box.hidden = false;
    const params = new URLSearchParams({ task: taskId, stream: "stderr", tail: String(STDERR_LINES) });
    try {
      const response = await fetch("/v1/logs?" + params, { credentials: "same-origin",
                                                            headers: { Accept: "text/plain" } });
      const text = await response.text();
      if (!response.ok) {
        let message = text;
        try { message = JSON.parse(text).message || text; } catch (_) { /* plain text */ }
        lines.textContent = message;
        return;
      }
      lines.textContent = text.trim() ? text : "(nothing on stderr)";
    } catch (error) {
      lines.textContent = String(error.message || error);
    }
    box.scrollIntoView({ block: "nearest" });
  }

  // -- a coloured unified diff of two versions ---------------------------------------------
  async function showDiff(from, to) {
    const out = document.getElementById("diff");
    out.hidden = false;
    out.textContent = "loading…";
    const params = new URLSearchParams({ from, to });
    try {
      const text = await kade.api("GET", `/v1/apps${appId()}/diff?${params}`);
      out.textContent = "";
      if (!text) { out.textContent = "(no difference)"; return; }
      for (const line of String(text).split("\n")) {
        const span = document.createElement("span");
        span.className = line.startsWith("+++") || line.startsWith("---") ? "head"
          : line.startsWith("+") ? "add" : line.startsWith("-") ? "del"
          : line.startsWith("@@") ? "hunk" : "";
        span.textContent = line + "\n";
        out.appendChild(span);
      }
    } catch (error) {
      out.textContent = error.message;
    }
  }

  document.addEventListener("click", (event) => {
    const stderr = event.target.closest("button[data-stderr]");
    if (stderr) { event.preventDefault(); showStderr(stderr.dataset.stderr); return; }
    if (event.target.id === "stderr-close") document.getElementById("stderr-tail").hidden = true;
    const range = event.target.closest("button[data-range]");
    if (range) {
      document.querySelectorAll("button[data-range]").forEach(
        (b) => b.setAttribute("aria-pressed", String(b === range)));
      drawCharts();
    }
  });
  document.addEventListener("submit", (event) => {
    if (event.target.id !== "diff-form") return;
    event.preventDefault();
    const form = event.target;
    showDiff(form.elements.from.value, form.elements.to.value);
  });
  document.addEventListener("change", (event) => {
    if (event.target.id === "show-ended") {
      document.getElementById("tasks").classList.toggle("hide-ended", !event.target.checked);
    }
  });

  // -- ended tasks, from the log store: they outlive their task records ------------------
  const ENDED_SHOWN = 100;
  const when = kade.utc;
  // a task kade stopped on purpose (kade.scheduler.plan's reasons) did not fail
  const PLANNED_STOP = /^(killed on request|scaled down|app deleted|replaced by|node \S+ is draining)/;
  const failedEnding = (t) => t.exitCode != null && t.exitCode !== 0 && !PLANNED_STOP.test(t.reason || "");

  const cell = (row, text, className) => kade.cell(text, className, row);

  function endedRow(t) {
    const tr = document.createElement("tr");
    tr.className = "ended";
    tr.dataset.task = t.task;
    const code = document.createElement("code");
    code.textContent = t.task;
    cell(tr, "").appendChild(code);
    cell(tr, when(t.ended), "nowrap");
    cell(tr, t.exitCode == null ? "–" : String(t.exitCode), failedEnding(t) ? "bad" : "");
    cell(tr, t.reason || "", "message");
    cell(tr, t.node || "–");
    cell(tr, (t.version || "").slice(0, 19));
    cell(tr, when(t.started), "nowrap");
    const actions = cell(tr, "", "nowrap");
    const button = document.createElement("button");
    button.className = "secondary small";
    button.type = "button";
    button.dataset.stderr = t.task;
    button.textContent = "stderr";
    const link = document.createElement("a");
    link.href = "/ui/logs?task=" + encodeURIComponent(t.task);
    link.textContent = "logs";
    actions.append(button, " ", link);
    return tr;
  }

  async function loadEnded() {
    const box = document.getElementById("ended-tasks");
    if (!box) return;
    const params = new URLSearchParams({ app: box.dataset.app, previous: "true" });
    let tasks;
    try {
      tasks = ((await kade.api("GET", "/v1/logs/tasks?" + params)) || {}).tasks || [];
    } catch (error) {
      document.getElementById("ended-count").textContent = error.message;
      return;
    }
    const ended = tasks.filter((t) => t.ended != null).sort((a, b) => b.ended - a.ended);
    const body = document.querySelector("#ended-table tbody");
    body.replaceChildren(...ended.slice(0, ENDED_SHOWN).map(endedRow));
    document.getElementById("ended-count").textContent =
      ended.length > ENDED_SHOWN ? `${ENDED_SHOWN} of ${ended.length}` : String(ended.length);
    const failed = ended.find(failedEnding);
    const panel = document.getElementById("failed-task");
    panel.hidden = !failed;
    if (failed) {
      panel.querySelector(".task-id").textContent = failed.task;
      panel.querySelector(".ending").textContent =
        `${failed.reason || "exited with code " + failed.exitCode} at ${when(failed.ended)}`;
      document.getElementById("failed-stderr").dataset.stderr = failed.task;
      panel.querySelector(".logs-link").href = "/ui/logs?task=" + encodeURIComponent(failed.task);
    }
  }

  // a task's end reaches the log store a moment after its status: asked again shortly after
  let endedTimer = null;
  document.addEventListener("kade:event", (event) => {
    if (!["task", "task_status", "queue"].includes(event.detail.type)) return;
    clearTimeout(endedTimer);
    endedTimer = setTimeout(loadEnded, 700);
  });
  document.addEventListener("kade:opened", loadEnded);  // what ended while it was broken

  // an app destroyed elsewhere while its page is open: said, not left as a stale page
  document.addEventListener("kade:event", (event) => {
    const { name, data } = event.detail;
    if (name !== "app_deleted" || !data || "/" + data.key !== appId()) return;
    const gone = document.getElementById("app-gone");
    if (gone) gone.hidden = false;
  });

  // -- metrics charts ----------------------------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  const SERIES_COLOURS = 6;  // .s0 … .s5 in kade.css, one set per theme

  function human(value, unit) {
    if (!Number.isFinite(value)) return "–";
    if (unit === "bytes") {
      const units = ["B", "KiB", "MiB", "GiB", "TiB"];
      let i = 0;
      while (Math.abs(value) >= 1024 && i < units.length - 1) { value /= 1024; i++; }
      return `${value.toFixed(i ? 1 : 0)} ${units[i]}`;
    }
    if (unit === "s" && value < 1) return `${(value * 1000).toFixed(1)} ms`;
    return Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3);
  }

  function node(name, attrs) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    return el;
  }

  function plot(figure, series, start, end) {
    const box = figure.querySelector(".plot");
    const unit = figure.dataset.unit;
    const width = 320, height = 110, pad = 2;
    box.textContent = "";
    const values = series.flatMap((s) => s.values.map(([, v]) => Number(v))).filter(Number.isFinite);
    const last = series.map((s) => Number(s.values.at(-1)?.[1])).filter(Number.isFinite);
    figure.querySelector(".value").textContent = last.length ? human(last.reduce((a, b) => a + b, 0), unit) : "";
    if (!values.length) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "No data in this range.";
      box.appendChild(p);
      return;
    }
    const max = Math.max(...values, 0) || 1;
    const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" });
    svg.appendChild(node("line", { x1: 0, y1: height - pad, x2: width, y2: height - pad, class: "axis" }));
    series.forEach((s, i) => {
      const points = s.values.map(([t, v]) => {
        const x = ((t - start) / (end - start)) * width;
        const y = height - pad - (Number(v) / max) * (height - 2 * pad);
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      });
      const line = node("polyline", { points: points.join(" "), fill: "none",
                                      class: `s${i % SERIES_COLOURS}`, "stroke-width": 1.5,
                                      "vector-effect": "non-scaling-stroke" });
      const title = node("title", {});
      title.textContent = Object.values(s.metric || {}).join(" ") || figure.dataset.chart;
      line.appendChild(title);
      svg.appendChild(line);
    });
    box.appendChild(svg);
    const scale = document.createElement("div");
    scale.className = "scale muted";
    const from = new Date(start * 1000).toISOString().replace("T", " ");
    scale.textContent = `max ${human(max, unit)} · ${end - start > 86400 ? from.slice(0, 16) : from.slice(11, 16)} UTC to now`;
    box.appendChild(scale);
  }

  // a chart drawn again (a range chosen, the periodic refresh) before its last answer came:
  // only the newest request's answer is drawn
  const asked = new WeakMap();

  async function drawChart(figure, seconds) {
    const ask = (asked.get(figure) || 0) + 1;
    asked.set(figure, ask);
    const end = Math.floor(Date.now() / 1000);
    const start = end - seconds;
    const step = Math.max(Math.floor(seconds / CHART_POINTS), 15);
    const window = `${Math.max(step * 4, 60)}s`;
    const params = new URLSearchParams({ query: figure.dataset.query.replaceAll("$w", window),
                                         start: String(start), end: String(end), step: String(step) });
    try {
      const data = await kade.api("GET", "/api/v1/query_range?" + params);
      if (asked.get(figure) !== ask) return;
      plot(figure, (data && data.data && data.data.result) || [], start, end);
    } catch (error) {
      if (asked.get(figure) !== ask) return;
      const box = figure.querySelector(".plot");
      box.textContent = "";
      const p = document.createElement("p");
      p.className = "bad";
      // the query API's own words (Prometheus' `error`) before the HTTP status line
      p.textContent = (error.data && error.data.error) || error.message || "query failed";
      box.appendChild(p);
    }
  }

  function drawCharts() {
    const pressed = document.querySelector('button[data-range][aria-pressed="true"]');
    if (!pressed) return;
    const seconds = Number(pressed.dataset.range);
    document.querySelectorAll("figure[data-chart]").forEach((f) => drawChart(f, seconds));
  }

  document.addEventListener("DOMContentLoaded", () => {
    loadEnded();
    drawCharts();
    setInterval(() => { if (!document.hidden) drawCharts(); }, CHART_REFRESH_MS);
  });
})();
