// posehook playground: the native API (/v1/files, /v1/requests) driven from a page.
// The options come from /playground/options.json (openapi.yaml's PoseInput), so the form
// shows the contract's ranges and defaults. The API key lives in sessionStorage only.
"use strict";

const KEY_STORE = "posehook.apiKey";
const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
const POLL_MS = 500;
const $ = (id) => document.getElementById(id);

const state = {
  spec: null,        // the input's schema from openapi.yaml
  file: null,        // the photo picked or dropped
  fileUrl: "",       // its blob: URL for the preview
  current: "",       // the request being shown
  inputUrl: "",      // what the input preview shows for it
  record: null,      // its whole record, once finished
  timer: 0,
  seenAt: 0,         // when this page started watching it
};

function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

// One API call; an error answer becomes an ApiError carrying the API's own body.
async function api(method, path, body) {
  const headers = { Authorization: `Key ${apiKey()}` };
  let payload;
  if (body instanceof FormData) {
    payload = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  } catch (error) {
    throw new ApiError(0, { message: `The server did not answer (${error.message})` });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text.slice(0, 500) };
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node[name] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// ---- errors, as the API words them -------------------------------------------------

// {"input": {"image_url": ["reason"]}} -> [["input.image_url", "reason"]]
function flatten(errors, prefix = "") {
  const out = [];
  for (const [key, value] of Object.entries(errors || {})) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (Array.isArray(value)) {
      for (const item of value) {
        if (item && typeof item === "object") out.push(...flatten(item, name));
        else out.push([name, String(item)]);
      }
    } else if (value && typeof value === "object") {
      out.push(...flatten(value, name));
    } else {
      out.push([name, String(value)]);
    }
  }
  return out;
}

function clearError() {
  $("error").hidden = true;
  $("error").replaceChildren();
  for (const node of document.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

function showError(error) {
  const body = error.body || {};
  const box = $("error");
  const head = error.label ||
    (error.status ? `${error.status}${body.code ? " " + body.code : ""}` : "no answer");
  box.replaceChildren(
    el("p", {}, el("strong", { className: "error-status" }, head), " ",
       el("span", { className: "error-message" }, body.message || error.message)));
  const fields = flatten(body.errors);
  if (fields.length) {
    box.append(el("ul", { className: "error-fields" }, ...fields.map(([field, reason]) =>
      el("li", { dataset: { field } }, el("code", {}, field), ": ", reason))));
  }
  for (const [field] of fields) {
    const name = field.split(".").pop();
    for (const node of document.querySelectorAll(`[data-field="${CSS.escape(name)}"]`)) {
      node.setAttribute("aria-invalid", "true");
    }
  }
  box.hidden = false;
}

// ---- options from openapi.yaml --------------------------------------------------------

function describe(prop) {
  const bits = [];
  if (prop.minimum !== undefined || prop.maximum !== undefined) {
    bits.push(`${prop.minimum ?? "…"}–${prop.maximum ?? "…"}`);
  }
  bits.push(prop.default !== undefined ? `default ${prop.default}` : "no default");
  if (prop.description) bits.push(prop.description);
  return bits.join(" · ");
}

function renderOptions(spec) {
  const box = $("options");
  box.replaceChildren(el("legend", {}, "Options"));
  for (const [name, prop] of Object.entries(spec.properties)) {
    if (name === "image_url") continue;
    const id = `opt-${name}`;
    const common = { id, dataset: { option: name, field: name } };
    let control;
    if (prop.type === "boolean") {
      control = el("input", { ...common, type: "checkbox", checked: prop.default === true });
    } else if (Array.isArray(prop.enum)) {
      const choices = prop.enum.map((v) => el("option", { value: v }, String(v)));
      if (prop.default === undefined) choices.unshift(el("option", { value: "" }, "(server default)"));
      control = el("select", common, ...choices);
      control.value = prop.default ?? "";
    } else if (prop.type === "integer" || prop.type === "number") {
      control = el("input", { ...common, type: "number", inputMode: "numeric",
                              value: prop.default ?? "", placeholder: "auto" });
      if (prop.minimum !== undefined) control.min = prop.minimum;
      if (prop.maximum !== undefined) control.max = prop.maximum;
      if (prop.type === "integer") control.step = 1;
    } else {
      control = el("input", { ...common, type: "text", value: prop.default ?? "" });
    }
    const label = el("label", { htmlFor: id }, el("code", {}, name));
    const hint = el("small", { className: "muted" }, describe(prop));
    const row = prop.type === "boolean"
      ? el("div", { className: "option check" }, control, label, hint)
      : el("div", { className: "option" }, label, control, hint);
    box.append(row);
  }
}

// The options the person changed from their defaults (the server applies the rest).
function readOptions() {
  const input = {};
  for (const control of document.querySelectorAll("[data-option]")) {
    const name = control.dataset.option;
    const prop = state.spec.properties[name];
    if (prop.type === "boolean") {
      if (prop.default === undefined || control.checked !== prop.default) input[name] = control.checked;
    } else if (control.tagName === "SELECT" || prop.type === "string") {
      if (control.value !== "" && control.value !== prop.default) input[name] = control.value;
    } else {
      const raw = control.value.trim();
      if (raw === "" || raw === String(prop.default)) continue;
      const number = Number(raw);
      input[name] = Number.isFinite(number) ? number : raw;  // the API says what is wrong
    }
  }
  return input;
}

// ---- the API key ---------------------------------------------------------------------

function renderKey() {
  const set = Boolean(apiKey());
  $("key-form").hidden = set;
  $("key-state").hidden = !set;
}

// ---- the photo -----------------------------------------------------------------------

function setFile(file) {
  if (!file) return;
  if (state.fileUrl) URL.revokeObjectURL(state.fileUrl);
  state.file = file;
  state.fileUrl = URL.createObjectURL(file);
  $("image-url").value = "";
  $("file-name").textContent = `${file.name || "pasted image"} · ${Math.ceil(file.size / 1024)} KB`;
  $("file-name").hidden = false;
  showInput(state.fileUrl);
}

// Only images this page may load (its Content-Security-Policy): its own origin, the origin
// of the service's file URLs, and the person's own photo (blob:).
function previewable(url) {
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === "blob:" || parsed.origin === location.origin ||
      parsed.origin === (state.spec && state.spec.files_origin);
  } catch {
    return false;
  }
}

function showInput(url) {
  if (url && !previewable(url)) {
    showInput("");
    $("input-note").textContent = "No preview: this page shows images only from this server " +
      "(the service fetches the URL itself).";
    return;
  }
  state.inputUrl = url || "";
  const img = $("input-image");
  const note = $("input-note");
  if (!url) {
    img.hidden = true;
    img.removeAttribute("src");
    note.textContent = "No photo yet.";
    note.hidden = false;
    return;
  }
  note.hidden = true;
  img.hidden = false;
  img.src = url;
  $("overlay-photo").src = url;
}

function inputFailed() {
  if (!state.inputUrl) return;
  $("input-image").hidden = true;
  state.inputUrl = "";
  $("input-note").textContent = "The photo could not be shown (gone, or not an image).";
  $("input-note").hidden = false;
  $("overlay").disabled = true;
  renderOverlay();
}

// ---- the result ----------------------------------------------------------------------

function resetResult() {
  state.record = null;
  const img = $("result-image");
  img.hidden = true;
  img.removeAttribute("src");
  $("result-note").textContent = "The pose appears here.";
  $("result-note").hidden = false;
  const png = $("download-png");
  png.removeAttribute("href");
  png.setAttribute("aria-disabled", "true");
  $("download-json").disabled = true;
  $("keypoints-note").hidden = true;
  $("overlay").disabled = true;
  renderOverlay();
}

function showResult(record) {
  state.record = record;
  const image = record.output && record.output.image;
  if (record.status !== "COMPLETED" || !image) {
    $("result-note").textContent = record.status === "CANCELLED"
      ? "Cancelled: no result." : "No result.";
    if (record.error) {
      showError({ label: `${record.status} ${record.error.type}`, body: record.error });
    }
    return;
  }
  const img = $("result-image");
  img.src = image.url;
  img.hidden = false;
  $("result-note").hidden = true;
  const ext = (image.content_type || "image/png").split("/")[1].replace("jpeg", "jpg");
  const png = $("download-png");
  png.href = image.url;
  png.download = `pose-${record.request_id}.${ext}`;
  png.removeAttribute("aria-disabled");
  $("download-png").textContent = `Download ${ext.toUpperCase()}`;
  const keypoints = record.output.keypoints;
  $("download-json").disabled = !keypoints;
  $("keypoints-note").hidden = Boolean(keypoints);
  $("overlay").disabled = !state.inputUrl;
  renderOverlay();
}

function renderOverlay() {
  const on = $("overlay").checked && !$("overlay").disabled && Boolean(state.inputUrl);
  $("result-frame").classList.toggle("overlaid", on);
  $("overlay-photo").hidden = !on;
  $("overlay-mix").disabled = !on;
  $("result-image").style.opacity = on ? String($("overlay-mix").value / 100) : "";
}

function downloadKeypoints() {
  const record = state.record;
  if (!record || !record.output || !record.output.keypoints) return;
  const blob = new Blob([JSON.stringify(record.output.keypoints, null, 2) + "\n"],
                        { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: `keypoints-${record.request_id}.json` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// ---- status, logs, cancel ------------------------------------------------------------

function seconds(ms) {
  return `${Math.max(0, ms / 1000).toFixed(1)} s`;
}

function showStatus(status) {
  const badge = $("status");
  badge.textContent = status.status;
  badge.className = `badge s-${status.status}`;
  const waited = seconds(Date.now() - state.seenAt);
  let detail = "";
  if (status.status === "IN_QUEUE") detail = `queue position ${status.queue_position ?? 0} · ${waited}`;
  else if (status.status === "IN_PROGRESS") detail = `running · ${waited}`;
  else if (status.metrics && status.metrics.inference_time !== undefined) {
    detail = `inference ${seconds(status.metrics.inference_time * 1000)}`;
  }
  $("status-detail").textContent = detail;
  const done = TERMINAL.has(status.status);
  $("progress").hidden = done;
  $("steps").hidden = false;
  const order = ["IN_QUEUE", "IN_PROGRESS", "DONE"];
  const at = done ? 2 : order.indexOf(status.status);
  for (const step of $("steps").children) {
    const index = order.indexOf(step.dataset.step);
    step.className = index < at ? "past" : index === at ? "now" : "";
  }
  $("cancel").disabled = done;
  if (Array.isArray(status.logs)) renderLogs(status.logs);
}

function renderLogs(lines) {
  $("logs").replaceChildren(...lines.map((line) => el("li", { className: `log-${(line.level || "INFO").toLowerCase()}` },
    el("time", {}, (line.timestamp || "").replace(/^.*T/, "").replace(/\..*$/, "")), " ",
    line.message)));
}

function stopPolling() {
  clearTimeout(state.timer);
  state.timer = 0;
}

function watch(requestId) {
  stopPolling();
  state.current = requestId;
  state.seenAt = Date.now();
  $("request-id").textContent = requestId;
  poll(requestId);
}

async function poll(requestId) {
  if (requestId !== state.current) return;
  let status;
  try {
    status = await api("GET", `/v1/requests/${encodeURIComponent(requestId)}/status?logs=1`);
  } catch (error) {
    if (requestId !== state.current) return;
    showError(error);
    if (error.status === 0 || error.status >= 500) state.timer = setTimeout(() => poll(requestId), 2000);
    return;
  }
  if (requestId !== state.current) return;
  showStatus(status);
  if (!TERMINAL.has(status.status)) {
    state.timer = setTimeout(() => poll(requestId), POLL_MS);
    return;
  }
  try {
    const record = await api("GET", `/v1/requests/${encodeURIComponent(requestId)}`);
    if (requestId === state.current) showResult(record);
  } catch (error) {
    showError(error);
  }
  $("submit").disabled = false;
  refreshRecent();
}

async function cancel() {
  const requestId = state.current;
  if (!requestId) return;
  $("cancel").disabled = true;
  try {
    showStatus(await api("PUT", `/v1/requests/${encodeURIComponent(requestId)}/cancel`));
  } catch (error) {
    showError(error);  // e.g. 400: it finished first; the status shows how
  }
  poll(requestId);
}

// ---- submit --------------------------------------------------------------------------

async function submit(event) {
  event.preventDefault();
  clearError();
  stopPolling();
  state.current = "";
  resetResult();
  $("submit").disabled = true;
  $("logs").replaceChildren();
  $("request-id").textContent = "";
  $("status-detail").textContent = "";
  $("steps").hidden = true;
  $("progress").hidden = true;
  $("status").textContent = "sending";
  $("status").className = "badge";
  try {
    let imageUrl = $("image-url").value.trim();
    if (state.file) {
      $("status").textContent = "UPLOADING";
      $("status").className = "badge s-IN_QUEUE";
      const form = new FormData();
      form.append("file", state.file, state.file.name || "photo");
      imageUrl = (await api("POST", "/v1/files", form)).url;
      showInput(state.fileUrl);
    } else {
      showInput(imageUrl);
    }
    const input = { ...(imageUrl ? { image_url: imageUrl } : {}), ...readOptions() };
    const answer = await api("POST", "/v1/requests", { input });
    watch(answer.request_id);
    refreshRecent();
  } catch (error) {
    $("status").textContent = "not sent";
    $("status").className = "badge s-FAILED";
    showError(error);
    $("submit").disabled = false;
    if (error.status === 401) $("key-form").hidden = false;
  }
}

// ---- recent requests -----------------------------------------------------------------

async function refreshRecent() {
  const note = $("recent-note");
  const table = $("recent");
  if (!apiKey()) {
    note.textContent = "Set your API key to see your requests.";
    note.hidden = false;
    table.hidden = true;
    return;
  }
  let page;
  try {
    page = await api("GET", "/v1/requests?limit=10");
  } catch (error) {
    note.textContent = `${error.status || ""} ${error.body.message || error.message}`.trim();
    note.hidden = false;
    table.hidden = true;
    return;
  }
  const rows = page.requests.map((record) => el("tr", { dataset: { requestId: record.request_id } },
    el("td", {}, new Date(record.created_at).toLocaleTimeString()),
    el("td", {}, el("code", { title: record.request_id }, record.request_id.slice(0, 12))),
    el("td", {}, el("span", { className: `badge s-${record.status}` }, record.status)),
    el("td", {}, el("button", { type: "button", className: "quiet show",
                                onclick: () => show(record) }, "Show"))));
  table.tBodies[0].replaceChildren(...rows);
  note.textContent = rows.length ? "" : "No requests yet.";
  note.hidden = Boolean(rows.length);
  table.hidden = !rows.length;
}

function show(record) {
  clearError();
  resetResult();
  const url = record.input && record.input.image_url;
  showInput(url && !url.startsWith("data:") ? url : "");
  $("submit").disabled = false;
  watch(record.request_id);
}

// ---- wiring --------------------------------------------------------------------------

async function loadOptions() {
  try {
    const response = await fetch("/playground/options.json");
    state.spec = await response.json();
    renderOptions(state.spec);
  } catch (error) {
    $("options").append(el("p", { className: "error" }, `Could not read the options: ${error.message}`));
  }
}

// `make run` prints /playground#key=<dev key>: the fragment never reaches any server; the
// key goes to sessionStorage and leaves the address bar (and the history) at once.
function takeKeyFromFragment() {
  const match = /^#key=([A-Za-z0-9_\-]+)$/.exec(location.hash);
  if (match) sessionStorage.setItem(KEY_STORE, match[1]);
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
}

function wire() {
  takeKeyFromFragment();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("api-key").value.trim();
    if (!value) return;
    sessionStorage.setItem(KEY_STORE, value);
    $("api-key").value = "";
    renderKey();
    refreshRecent();
  });
  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    renderKey();
    refreshRecent();
  });
  $("file").addEventListener("change", () => setFile($("file").files[0]));
  $("image-url").addEventListener("input", () => {
    state.file = null;
    $("file").value = "";
    $("file-name").hidden = true;
  });
  $("image-url").addEventListener("change", () => showInput($("image-url").value.trim()));
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    setFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) setFile(file);
  });
  $("input-image").addEventListener("error", inputFailed);
  $("request-form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancel);
  $("overlay").addEventListener("change", renderOverlay);
  $("overlay-mix").addEventListener("input", renderOverlay);
  $("download-json").addEventListener("click", downloadKeypoints);
  $("refresh").addEventListener("click", refreshRecent);
}

wire();
renderKey();
resetResult();
loadOptions();
refreshRecent();
