// kubetaskqueue dashboard: live state from /api/stream (server-sent events), dead tasks
// from /api/topics/{topic}/dead. Task data is only ever put into the page as text
// (textContent, element properties), never parsed as HTML.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const DEAD_REFRESH_MS = 5000;
const SCHEDULES_REFRESH_MS = 5000;
const FILTER_DELAY_MS = 300;

const ui = {
  info: { actions_enabled: false, namespace: "" },
  state: null,
  deadTopic: "",
  deadCount: null,
  deadSignature: "",
  openTracebacks: new Set(),
};

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "class") node.className = value;
    else node[key] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.floor(seconds % 60)} s`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function fmtRate(perSecond) {
  return perSecond ? perSecond.toFixed(1) : "0";
}

function fmtTime(epochSeconds) {
  if (!epochSeconds) return "—";
  const d = new Date(epochSeconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function sparkline(counts, bucketSeconds, now) {
  const width = 120, height = 24, gap = 1;
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const max = Math.max(1, ...counts);
  const barWidth = width / counts.length;
  const base = document.createElementNS(SVG_NS, "line");
  for (const [k, v] of [["x1", 0], ["x2", width], ["y1", height - 0.5], ["y2", height - 0.5]]) {
    base.setAttribute(k, v);
  }
  svg.append(base);
  const lastBucket = Math.floor(now / bucketSeconds);
  counts.forEach((count, i) => {
    const bar = document.createElementNS(SVG_NS, "rect");
    const h = count ? Math.max(1, (count / max) * (height - 1)) : 0;
    bar.setAttribute("x", i * barWidth);
    bar.setAttribute("y", height - h);
    bar.setAttribute("width", Math.max(1, barWidth - gap));
    bar.setAttribute("height", h);
    if (i === counts.length - 1) bar.setAttribute("class", "current");
    const title = document.createElementNS(SVG_NS, "title");
    const start = (lastBucket - (counts.length - 1 - i)) * bucketSeconds;
    title.textContent = `${count} completed in the minute from ${fmtTime(start)}`;
    bar.append(title);
    svg.append(bar);
  });
  svg.dataset.total = counts.reduce((a, b) => a + b, 0);
  return svg;
}

// -- live state -----------------------------------------------------------------------

function renderState(state) {
  ui.state = state;
  const banner = $("banner");
  banner.hidden = !state.error;
  banner.textContent = state.error || "";
  $("updated").textContent = state.redis_time ? `updated ${fmtTime(state.redis_time)}` : "";
  renderTopics(state);
  renderManagers(state.managers || []);
  syncDeadTopics(state.topics || []);
}

function renderTopics(state) {
  const topics = state.topics || [];
  const rows = topics.map((t) => {
    const cell = (col, text, cls = "num") => el("td", { class: cls, dataset: { col } }, text);
    const deadCell = cell("dead", t.dead);
    if (t.dead > 0) deadCell.classList.add("has-dead");
    const row = el("tr", { class: "selectable", dataset: { topic: t.name } },
      cell("name", t.name, ""),
      stateCell(t),
      cell("input", t.input),
      cell("scheduled", t.scheduled),
      cell("work", t.work),
      deadCell,
      cell("enqueued_rate", fmtRate(t.rates_per_s.enqueued)),
      cell("completed_rate", fmtRate(t.rates_per_s.completed)),
      cell("retried_rate", fmtRate(t.rates_per_s.retried)),
      cell("failed_rate", fmtRate(t.rates_per_s.failed)),
      cell("oldest_ready", fmtAge(t.oldest_ready_age_s)),
      cell("completed", t.counters.completed || 0),
      el("td", { dataset: { col: "sparkline" } },
        sparkline(t.completions_per_min, state.sparkline_bucket_s, state.redis_time)));
    if (t.name === ui.deadTopic) row.classList.add("selected");
    row.addEventListener("click", () => selectDeadTopic(t.name));
    return row;
  });
  $("topics").tBodies[0].replaceChildren(...rows);
  $("topics-empty").hidden = topics.length > 0;
}

function stateCell(topic) {
  const td = el("td", { dataset: { col: "state" } }, topic.paused
    ? el("span", { class: "pill paused", title: "no manager claims from it; enqueues still go in" },
      "paused")
    : el("span", { class: "muted" }, "active"));
  if (ui.info.actions_enabled) {
    const pause = !topic.paused;
    td.append(" ", el("button", {
      type: "button", class: pause ? "pause-topic" : "resume-topic",
      onclick: (event) => { event.stopPropagation(); setPaused(topic.name, pause); },
    }, pause ? "Pause" : "Resume"));
  }
  return td;
}

async function setPaused(topic, pause) {
  const verb = pause ? "pause" : "resume";
  if (pause && !(await confirmDialog(`Pause topic "${topic}"? No manager claims from it until ` +
    "it is resumed; enqueues still go in and tasks in work finish.", "Pause"))) {
    return;
  }
  const message = $("topics-message");
  try {
    await postJson(`/api/topics/${encodeURIComponent(topic)}/${verb}`, {});
    message.textContent = `${pause ? "paused" : "resumed"} topic "${topic}"`;
    message.classList.remove("error");
  } catch (err) {
    message.textContent = `${verb} failed: ${err.message}`;
    message.classList.add("error");
  }
}

function renderManagers(managers) {
  const rows = managers.map((m) => el("tr", { dataset: { manager: m.id } },
    el("td", { dataset: { col: "pod" } }, m.pod || "—"),
    el("td", { dataset: { col: "id" }, class: "muted" }, m.id),
    el("td", { dataset: { col: "topics" } }, m.topics.join(", ")),
    el("td", { class: "num", dataset: { col: "busy" } }, m.busy),
    el("td", { class: "num", dataset: { col: "idle" } }, m.idle),
    el("td", { class: "num", dataset: { col: "slots" } }, m.slots),
    el("td", { class: "num", dataset: { col: "heartbeat" } }, `${fmtAge(m.heartbeat_age_s)} ago`)));
  $("managers").tBodies[0].replaceChildren(...rows);
  $("managers-empty").hidden = managers.length > 0;
  $("manager-count").textContent = `(${managers.length} live)`;
}

function connect() {
  const status = $("status");
  const source = new EventSource("/api/stream");
  source.addEventListener("open", () => {
    status.textContent = "live";
    status.className = "pill status-live";
  });
  source.addEventListener("error", () => {
    status.textContent = "reconnecting…";
    status.className = "pill status-error";
  });
  source.addEventListener("state", (message) => renderState(JSON.parse(message.data)));
}

// -- schedules ------------------------------------------------------------------------

async function loadSchedules() {
  let data;
  try {
    const response = await fetch("/api/schedules");
    data = await response.json();
    if (!response.ok) throw new Error(data.error || response.statusText);
  } catch {
    return;  // the stream's banner and status pill show an outage
  }
  const rows = data.schedules.map((s) => {
    const missed = s.last_missed ? ` (after ${s.last_missed} missed)` : "";
    return el("tr", { dataset: { schedule: s.name } },
      el("td", { dataset: { col: "name" } }, s.name),
      el("td", { dataset: { col: "topic" } }, s.topic),
      el("td", { dataset: { col: "rule" } }, s.rule),
      el("td", { dataset: { col: "last_fire" } },
        s.last_fire === null ? "never" : fmtTime(s.last_fire) + missed),
      el("td", { dataset: { col: "next_fire" } }, fmtTime(s.next_fire)),
      el("td", { class: "num", dataset: { col: "managers" } }, s.managers));
  });
  $("schedules").tBodies[0].replaceChildren(...rows);
  $("schedules-empty").hidden = rows.length > 0;
  $("schedule-count").textContent = `(${rows.length})`;
}

// -- dead tasks -----------------------------------------------------------------------

function syncDeadTopics(topics) {
  const select = $("dead-topic");
  const names = topics.map((t) => t.name);
  const current = [...select.options].map((o) => o.value);
  if (names.join("\n") !== current.join("\n")) {
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  }
  if (!ui.deadTopic || !names.includes(ui.deadTopic)) {
    const withDead = topics.find((t) => t.dead > 0);
    if (withDead || names.length) selectDeadTopic((withDead || topics[0]).name);
    return;
  }
  select.value = ui.deadTopic;
  const topic = topics.find((t) => t.name === ui.deadTopic);
  if (topic && topic.dead !== ui.deadCount) {
    ui.deadCount = topic.dead;
    loadDead();
  }
}

function selectDeadTopic(name) {
  if (name === ui.deadTopic) return;
  ui.deadTopic = name;
  ui.deadCount = null;
  ui.deadSignature = "";
  $("dead-topic").value = name;
  for (const row of $("topics").tBodies[0].rows) {
    row.classList.toggle("selected", row.dataset.topic === name);
  }
  const topic = (ui.state?.topics || []).find((t) => t.name === name);
  ui.deadCount = topic ? topic.dead : null;
  loadDead();
}

function deadUrl(topic, suffix = "") {
  return `/api/topics/${encodeURIComponent(topic)}/dead${suffix}`;
}

async function loadDead() {
  const topic = ui.deadTopic;
  if (!topic) return;
  const filter = $("dead-filter").value;
  const query = new URLSearchParams({ limit: "100" });
  if (filter) query.set("error", filter);
  let data;
  try {
    const response = await fetch(`${deadUrl(topic)}?${query}`);
    data = await response.json();
    if (!response.ok) throw new Error(data.error || response.statusText);
  } catch (err) {
    showMessage(`cannot list dead tasks: ${err.message}`, true);
    return;
  }
  if (topic !== ui.deadTopic || filter !== $("dead-filter").value) return;  // superseded
  const signature = JSON.stringify(data);
  if (signature === ui.deadSignature) return;
  ui.deadSignature = signature;
  renderDead(data);
}

function renderDead(data) {
  const n = data.tasks.length;
  const what = data.error ? ` whose error contains "${data.error}"` : "";
  $("dead-summary").textContent = n === 0
    ? `no dead tasks${what}`
    : `${data.more ? `first ${n}` : n} dead task(s)${what}, newest first`;
  $("dead-list").replaceChildren(...data.tasks.map((task) => deadItem(data.topic, task)));
}

function prettyPayload(raw) {
  try {
    return JSON.stringify(JSON.parse(raw), null, 2);
  } catch {
    return raw;  // truncated or hand-edited: show as stored
  }
}

function deadItem(topic, task) {
  const errorText = task.last_error || "(no error recorded)";
  const lines = errorText.trim().split("\n");
  const summary = lines[lines.length - 1];
  const traceback = el("details", { class: "traceback" },
    el("summary", {}, "error and traceback"),
    el("pre", { class: "error-full" }, errorText));
  traceback.open = ui.openTracebacks.has(task.id);
  traceback.addEventListener("toggle", () => {
    if (traceback.open) ui.openTracebacks.add(task.id);
    else ui.openTracebacks.delete(task.id);
  });
  const buttons = el("span", { class: "buttons" });
  if (ui.info.actions_enabled) {
    buttons.append(
      el("button", { type: "button", class: "requeue-one",
        onclick: () => act("requeue", topic, { ids: [task.id] }, `task ${task.id}`) }, "Requeue"),
      el("button", { type: "button", class: "purge-one danger",
        onclick: () => act("purge", topic, { ids: [task.id] }, `task ${task.id}`) }, "Purge"));
  }
  return el("li", { class: "dead-task", dataset: { id: task.id } },
    el("div", { class: "dead-head" },
      el("code", { class: "task-id" }, task.id),
      el("span", {}, el("span", { class: "label" }, "attempts "),
        `${task.attempts} of ${task.num_retries + 1}`),
      el("span", {}, el("span", { class: "label" }, "enqueued "), fmtTime(task.enqueued_at)),
      el("span", {}, el("span", { class: "label" }, "last error "), fmtTime(task.failed_at)),
      el("span", {}, el("span", { class: "label" }, "dead "), fmtTime(task.dead_at)),
      buttons),
    el("div", { class: "error-line" }, summary),
    traceback,
    el("div", { class: "label" }, task.payload_truncated ? "payload (truncated)" : "payload"),
    el("pre", { class: "payload" }, prettyPayload(task.payload)));
}

function showMessage(text, isError = false) {
  const message = $("dead-message");
  message.textContent = text;
  message.classList.toggle("error", isError);
}

// -- actions --------------------------------------------------------------------------

function confirmDialog(text, okLabel) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    const finish = (answer) => {
      $("confirm-ok").onclick = $("confirm-cancel").onclick = dialog.oncancel = null;
      dialog.close();
      resolve(answer);
    };
    $("confirm-ok").onclick = () => finish(true);
    $("confirm-cancel").onclick = () => finish(false);
    dialog.oncancel = () => finish(false);
    dialog.showModal();
  });
}

async function post(action, topic, body) {
  return postJson(deadUrl(topic, `/${action}`), body);
}

async function postJson(url, body) {
  const token = $("token").value.trim();
  sessionStorage.setItem("kubetaskqueue-token", token);
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

async function act(action, topic, body, what) {
  const verb = action === "requeue" ? "Requeue" : "Purge";
  try {
    if (!body.ids) {
      const preview = await post(action, topic, { ...body, dry_run: true });
      if (preview.count === 0) {
        showMessage(`nothing to ${action}: no dead task matches`);
        return;
      }
      what = `${preview.count} dead task(s)${body.error ? ` whose error contains "${body.error}"` : ""}`;
    }
    const effect = action === "requeue"
      ? "They go back to the input queue with a fresh retry budget."
      : "They are deleted for good.";
    if (!(await confirmDialog(`${verb} ${what} of topic "${topic}"? ${effect}`, verb))) {
      showMessage(`${action} cancelled`);
      return;
    }
    const result = await post(action, topic, body);
    showMessage(`${action === "requeue" ? "requeued" : "purged"} ${result.count} task(s)`);
  } catch (err) {
    showMessage(`${action} failed: ${err.message}`, true);
  }
  ui.deadSignature = "";
  loadDead();
}

function matchingBody() {
  const filter = $("dead-filter").value;
  return filter ? { all: true, error: filter } : { all: true };
}

// -- start ----------------------------------------------------------------------------

async function start() {
  try {
    ui.info = await (await fetch("/api/info")).json();
  } catch {
    // keep the read-only defaults; the stream will show whether the server is there
  }
  $("namespace").textContent = `namespace ${ui.info.namespace}`;
  $("mode").textContent = ui.info.actions_enabled ? "actions allowed" : "read-only";
  $("actions").hidden = !ui.info.actions_enabled;
  $("readonly-note").hidden = ui.info.actions_enabled;
  $("token").value = sessionStorage.getItem("kubetaskqueue-token") || "";
  $("dead-topic").addEventListener("change", (e) => selectDeadTopic(e.target.value));
  let filterTimer = null;
  $("dead-filter").addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => { ui.deadSignature = ""; loadDead(); }, FILTER_DELAY_MS);
  });
  $("requeue-matching").addEventListener("click",
    () => act("requeue", ui.deadTopic, matchingBody()));
  $("purge-matching").addEventListener("click",
    () => act("purge", ui.deadTopic, matchingBody()));
  setInterval(loadDead, DEAD_REFRESH_MS);
  loadSchedules();
  setInterval(loadSchedules, SCHEDULES_REFRESH_MS);
  connect();
}

start();
