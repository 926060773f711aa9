// The logs page: a live tail of /v1/logs (server-sent events) with the page's filters,
// highlight of what they matched, pause/resume, and a bounded number of rows on screen.
"use strict";

(() => {
  const view = document.getElementById("log-view");
  if (!view) return;
  const body = document.getElementById("log-lines");
  const scroller = document.getElementById("log-scroll");
  const state = document.getElementById("log-state");
  const count = document.getElementById("log-count");
  const pauseButton = document.getElementById("log-pause");
  const unanswered = document.getElementById("log-unanswered");
  const keep = Number(view.dataset.keep) || 2000;
  const live = view.dataset.liveTail === "yes";
  const marker = highlighter(view.dataset.grep, view.dataset.q);

  let received = 0;
  let paused = false;
  let held = []; // lines that came while paused, the newest `keep` of them
  let heldCount = 0;
  let last = null; // the newest line's time (seconds), where a reconnect resumes
  let atLast = new Set(); // the lines stamped `last`, not shown twice after a reconnect
  let source = null;
  let retry = 1000;

  // -- highlight: the regex's matches and the text's words, as <mark> -------------------
  function highlighter(grep, q) {
    const patterns = [];
    if (grep) {
      let text = grep;
      let flags = "g";
      if (text.startsWith("(?i)")) { text = text.slice(4); flags += "i"; }
      // the server matched it with RE2 (linear time); the browser's own engine backtracks,
      // so a pattern with a repeated group (`(a+)+`, which a link could carry to make this
      // tab spin) is not marked here: its lines are still the ones shown
      if (!/\)[*+?{]/.test(text)) {
        try { patterns.push(new RegExp(text, flags)); } catch (_) { /* RE2 only: not marked */ }
      }
    }
    if (q) {
      const terms = (q.match(/"[^"]+"|\S+/g) || []).map((t) => t.replace(/"/g, "")).filter(Boolean);
      if (terms.length) {
        const escaped = terms.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
        patterns.push(new RegExp(escaped.join("|"), "gi"));
      }
    }
    return (text) => {
      const ranges = [];
      for (const re of patterns) {
        re.lastIndex = 0;
        let m;
        while ((m = re.exec(text)) !== null && ranges.length < 200) {
          if (m[0].length === 0) { re.lastIndex++; continue; }
          ranges.push([m.index, m.index + m[0].length]);
        }
      }
      ranges.sort((a, b) => a[0] - b[0]);
      const out = document.createDocumentFragment();
      let at = 0;
      for (const [start, end] of ranges) {
        if (end <= at) continue;
        const from = Math.max(start, at);
        if (from > at) out.append(text.slice(at, from));
        const mark = document.createElement("mark");
        mark.textContent = text.slice(from, end);
        out.append(mark);
        at = end;
      }
      if (at < text.length) out.append(text.slice(at));
      return out;
    };
  }

  // -- rows ---------------------------------------------------------------------------
  function shortTask(id) {
    const dot = id.lastIndexOf(".");
    return dot >= 0 ? id.slice(dot + 1, dot + 9) : id.slice(0, 12);
  }

  const cell = (tr, content, className) => kade.cell(content, className, tr);

  function row(line) {
    const tr = document.createElement("tr");
    tr.className = line.stream === "stderr" ? "stderr" : "stdout";
    tr.dataset.task = line.task;
    const when = new Date(line.time * 1000);
    const time = document.createElement("time");
    time.dateTime = when.toISOString();
    time.title = when.toISOString();
    time.textContent = when.toISOString().slice(11, 23);
    cell(tr, time, "nowrap mono");
    const link = document.createElement("a");
    link.href = "/ui/logs?task=" + encodeURIComponent(line.task);
    link.textContent = shortTask(line.task);
    link.title = `${line.task} on ${line.node}, version ${line.version}`;
    cell(tr, link, "nowrap mono");
    const stream = document.createElement("span");
    stream.className = "badge" + (line.stream === "stderr" ? " s-failed" : "");
    stream.textContent = line.stream;
    cell(tr, stream, "nowrap");
    cell(tr, marker(line.line), "line mono");
    return tr;
  }

  function nearBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  }

  function show(lines) {
    if (!lines.length) return;
    const follow = nearBottom();
    const rows = document.createDocumentFragment();
    for (const line of lines.slice(-keep)) rows.append(row(line));
    body.append(rows);
    while (body.rows.length > keep) body.deleteRow(0);
    if (follow) scroller.scrollTop = scroller.scrollHeight;
    counted();
  }

  function counted() {
    const onScreen = body.rows.length;
    document.getElementById("log-empty").hidden = received > 0;
    let text = `${received} line${received === 1 ? "" : "s"}`;
    if (onScreen < received) text += `, the last ${onScreen} shown`;
    if (paused) text += ` · ${heldCount} new held back`;
    count.textContent = text;
  }

  function take(line) {
    if (last !== null && line.time < last) return; // before the resume point: seen
    const key = `${line.task} ${line.stream} ${line.line}`;
    if (line.time === last) {
      if (atLast.has(key)) return;
    } else {
      last = line.time;
      atLast = new Set();
    }
    atLast.add(key);
    received++;
    if (paused) {
      held.push(line);
      heldCount++;
      if (held.length > keep) held = held.slice(-keep);
      counted();
      return;
    }
    pending.push(line);
    if (!flushTimer) flushTimer = requestAnimationFrame(flush);
  }
  let pending = [];
  let flushTimer = 0;
  function flush() {
    flushTimer = 0;
    const lines = pending;
    pending = [];
    show(lines);
  }

  // -- pause / resume -------------------------------------------------------------------
  if (pauseButton) {
    pauseButton.hidden = !live;
    pauseButton.addEventListener("click", () => {
      paused = !paused;
      pauseButton.setAttribute("aria-pressed", String(paused));
      pauseButton.textContent = paused ? "Resume" : "Pause";
      if (!paused) {
        const lines = held;
        held = [];
        heldCount = 0;
        show(lines);
        setState(`live: resumed`);
      } else {
        setState("paused: new lines are held back, not lost");
      }
      counted();
    });
  }

  function setState(text) { state.textContent = text; }

  const absent = new Set();
  function missing(node, reason) {
    if (absent.has(node)) return; // said once, also after a reconnect
    absent.add(node);
    unanswered.hidden = false;
    const item = document.createElement("div");
    item.textContent = `Node ${node} did not answer: ${reason} (its lines are missing)`;
    unanswered.append(item);
  }

  // -- the stream ---------------------------------------------------------------------
  function url(follow) {
    const u = new URL(view.dataset.stream, window.location.href);
    if (last !== null) { // resume where the last line was, not from the history again
      u.searchParams.delete("tail");
      u.searchParams.set("since", last.toFixed(6));
    }
    if (follow) u.searchParams.set("follow", "1");
    return u.toString();
  }

  async function explain() {
    // an EventSource does not read a refusal's body: ask the same query once as JSON. A
    // refusal (4xx) is final and said; a server away or failing (no answer, 5xx) is not:
    // the stream is tried again
    try {
      const u = new URL(url(false));
      u.searchParams.set("tail", "0");
      u.searchParams.delete("since");
      await kade.api("GET", u.pathname + u.search);
      return "";
    } catch (error) {
      if (error.status === 401) {
        window.location.assign("/ui/login?next=" + encodeURIComponent(location.pathname + location.search));
      }
      return error.status >= 400 && error.status < 500 ? error.message : "";
    }
  }

  function open() {
    source = new EventSource(url(true), { withCredentials: true });
    source.onopen = () => { retry = 1000; setState(paused ? "paused" : "live"); };
    source.addEventListener("line", (event) => take(JSON.parse(event.data)));
    source.addEventListener("unanswered", (event) => {
      const d = JSON.parse(event.data);
      missing(d.node, d.reason);
    });
    source.onerror = async (event) => {
      if (!source) return;
      if (event.data) { // the server's own `event: error`: the query cannot go on
        source.close();
        setState("stopped: " + JSON.parse(event.data).message);
        return;
      }
      source.close();
      const message = await explain();
      if (message) { setState("stopped: " + message); return; }
      setState("reconnecting…");
      setTimeout(open, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }

  async function once() {
    setState("loading…");
    try {
      const response = await fetch(url(false), { credentials: "same-origin" });
      const text = await response.text();
      if (!response.ok) { setState("stopped: " + (JSON.parse(text).message || response.status)); return; }
      for (const part of text.split("\n")) {
        if (!part) continue;
        const item = JSON.parse(part);
        if (item.unanswered) item.unanswered.forEach((m) => missing(m.node, m.reason));
        else take(item);
      }
      setState("until a time given: not live");
      counted();
      if (!received) document.getElementById("log-empty").textContent = "No line matches.";
    } catch (error) {
      setState("stopped: " + error.message);
    }
  }

  // -- the tasks: current and replaced, with how each ended --------------------------------
  async function tasks() {
    const table = document.querySelector("#log-tasks tbody");
    if (!table || !view.dataset.tasks) return;
    let data;
    try { data = await kade.api("GET", view.dataset.tasks); } catch (error) { return; }
    const rows = document.createDocumentFragment();
    for (const t of data.tasks.slice(-200).reverse()) {
      const tr = document.createElement("tr");
      const link = document.createElement("a");
      link.href = "/ui/logs?task=" + encodeURIComponent(t.task);
      link.textContent = t.task;
      cell(tr, link, "mono");
      cell(tr, t.node);
      cell(tr, (t.version || "").slice(0, 19), "mono");
      cell(tr, kade.utc(t.started), "nowrap");
      cell(tr, t.ended ? kade.utc(t.ended) : "running", "nowrap");
      cell(tr, t.ended ? (t.reason || (t.exitCode !== null ? `exit code ${t.exitCode}` : "ended")) : "");
      const err = document.createElement("a");
      err.href = "/ui/logs?stream=stderr&task=" + encodeURIComponent(t.task);
      err.textContent = "stderr";
      cell(tr, err);
      rows.append(tr);
    }
    table.replaceChildren(rows);
  }
  // a task's status changes a moment before the node's log store records how it ended:
  // the list is asked again soon after a change, and once more a little later
  const tasksTimers = [0, 0];
  document.addEventListener("kade:event", () => {
    [500, 3000].forEach((delay, i) => {
      clearTimeout(tasksTimers[i]);
      tasksTimers[i] = setTimeout(tasks, delay);
    });
  });

  if (live) open(); else once();
  tasks();
  window.addEventListener("pagehide", () => { if (source) source.close(); source = null; });
})();
