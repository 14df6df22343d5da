// Drives /playground (and /docs) in Debian's Chromium with playwright-core, against a live stack.
// SCENARIO=result: options from openapi.yaml, key, photo, result pixels, overlay, downloads,
//                  recent list, 422 messages, screenshots at two widths.
// SCENARIO=cancel: (no inference worker) submit, see it queued, cancel it; then /docs renders.
// Prints one JSON line with what happened; exits non-zero when a check fails.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BASE = process.env.POSEHOOK_URL;
const KEY = process.env.API_KEY;
const PHOTO = process.env.PHOTO;
const OUT = process.env.OUT_DIR;
const SCENARIO = process.env.SCENARIO;
const POSE_INPUT = JSON.parse(process.env.POSE_INPUT || "{}");
const WAIT = 120_000;  // an upper bound for slow machines, not a measurement

const report = {};
const check = (name, ok, detail) => {
  report[name] = ok ? "ok" : `FAILED: ${JSON.stringify(detail)}`;
};

async function api(method, path, body) {
  const response = await fetch(BASE + path, {
    method, headers: { Authorization: `Key ${KEY}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

const statusIs = (page, wanted) => page.waitForFunction(
  (names) => names.includes(document.getElementById("status").textContent), wanted,
  { timeout: WAIT });

async function openPlayground(page) {
  if (SCENARIO === "cancel") return openWithKeyInFragment(page);
  const answer = await page.goto(`${BASE}/playground`);
  const csp = answer.headers()["content-security-policy"] || "";
  check("page headers", answer.status() === 200 && csp.includes("script-src 'self'") &&
    !csp.includes("unsafe") && answer.headers()["x-content-type-options"] === "nosniff", csp);
  await page.waitForSelector("[data-option]", { timeout: WAIT });
  await page.fill("#api-key", KEY);
  await page.click("#key-form button[type=submit]");
  const stored = await page.evaluate(() => ({
    session: sessionStorage.getItem("posehook.apiKey"), local: localStorage.length,
    field: document.getElementById("api-key").value }));
  check("key kept in sessionStorage only", stored.session === KEY && stored.local === 0 &&
    stored.field === "" && !(await page.content()).includes(KEY), stored);
}

// The link `make run` prints: the key rides in the #fragment, which no server ever sees.
async function openWithKeyInFragment(page) {
  const sent = [];
  page.on("request", (request) => sent.push(request.url()));
  await page.goto(`${BASE}/playground#key=${KEY}`);
  await page.waitForSelector("[data-option]", { timeout: WAIT });
  const seen = await page.evaluate(() => ({
    session: sessionStorage.getItem("posehook.apiKey"), hash: location.hash,
    href: location.href }));
  check("key taken from the #fragment, then dropped from the address",
    seen.session === KEY && seen.hash === "" && !seen.href.includes(KEY) &&
    !sent.some((url) => url.includes(KEY)), { seen, sent });
}

// Every input option of openapi.yaml has a control with the contract's default and range.
async function checkOptions(page) {
  const wrong = [];
  for (const [name, prop] of Object.entries(POSE_INPUT.properties)) {
    if (name === "image_url") continue;
    const seen = await page.evaluate((n) => {
      const c = document.querySelector(`[data-option="${n}"]`);
      return c && { tag: c.tagName, type: c.type, value: c.value, checked: c.checked,
                    min: c.min, max: c.max, choices: [...(c.options || [])].map((o) => o.value) };
    }, name);
    let ok = Boolean(seen);
    if (ok && prop.type === "boolean") ok = seen.type === "checkbox" && seen.checked === (prop.default === true);
    else if (ok && prop.enum) {
      ok = seen.tag === "SELECT" && prop.enum.every((v) => seen.choices.includes(String(v))) &&
        seen.value === String(prop.default ?? "");
    } else if (ok && prop.type === "integer") {
      ok = seen.type === "number" && seen.value === String(prop.default ?? "") &&
        seen.min === String(prop.minimum ?? "") && seen.max === String(prop.maximum ?? "");
    }
    if (!ok) wrong.push({ name, prop, seen });
  }
  const count = await page.locator("[data-option]").count();
  check("every option from openapi.yaml", wrong.length === 0 &&
    count === Object.keys(POSE_INPUT.properties).length - 1, { wrong, count });
}

// Pixels of the result image, read in the page: coloured (skeleton) ones on black.
const resultPixels = (page) => page.evaluate(() => {
  const img = document.getElementById("result-image");
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let coloured = 0;
  let black = 0;
  for (let i = 0; i < data.length; i += 4) {
    const hi = Math.max(data[i], data[i + 1], data[i + 2]);
    const lo = Math.min(data[i], data[i + 1], data[i + 2]);
    if (hi > 80 && hi - lo > 80) coloured += 1;
    if (hi < 16) black += 1;
  }
  return { width: canvas.width, height: canvas.height, coloured, black, total: data.length / 4 };
});

async function download(page, selector) {
  const [file] = await Promise.all([page.waitForEvent("download", { timeout: WAIT }),
                                    page.click(selector)]);
  return { name: file.suggestedFilename(), bytes: readFileSync(await file.path()) };
}

async function errorShown(page) {
  await page.waitForSelector("#error:not([hidden])", { timeout: WAIT });
  return page.evaluate(() => ({
    status: document.querySelector("#error .error-status").textContent,
    message: document.querySelector("#error .error-message").textContent,
    fields: [...document.querySelectorAll("#error .error-fields li")].map((li) => li.textContent),
  }));
}

function flatten(errors, prefix = "") {
  return Object.entries(errors || {}).flatMap(([key, value]) => {
    const name = prefix ? `${prefix}.${key}` : key;
    if (Array.isArray(value)) return value.map((v) => `${name}: ${v}`);
    return typeof value === "object" ? flatten(value, name) : [`${name}: ${value}`];
  });
}

async function screenshots(page, name) {
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: width > 800 ? 900 : 844 });
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    check(`${name} fits ${width}px`, wide <= width, wide);
    await page.screenshot({ path: join(OUT, `${name}-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

async function resultScenario(page) {
  await openPlayground(page);
  await checkOptions(page);
  await page.setInputFiles("#file", PHOTO);
  await page.check("#opt-return_keypoints");
  await page.click("#submit");
  await statusIs(page, ["COMPLETED", "FAILED", "CANCELLED"]);
  const id = await page.textContent("#request-id");
  const status = await page.textContent("#status");
  const logs = await page.locator("#logs li").count();
  check("completed with logs", status === "COMPLETED" && logs > 0, { status, logs, id });
  await page.waitForFunction(() => {
    const img = document.getElementById("result-image");
    return !img.hidden && img.complete && img.naturalWidth > 0;
  }, null, { timeout: WAIT });
  const pixels = await resultPixels(page);
  check("skeleton in the result image", pixels.width === 194 && pixels.height === 259 &&
    pixels.coloured > 300 && pixels.black > pixels.total / 2, pixels);

  await page.check("#overlay");
  await page.locator("#overlay-mix").fill("85");
  const overlaid = await page.evaluate(() => {
    const photo = document.getElementById("overlay-photo");
    const pose = document.getElementById("result-image");
    return { on: document.getElementById("result-frame").classList.contains("overlaid"),
             photo: !photo.hidden && photo.naturalWidth, blend: getComputedStyle(pose).mixBlendMode,
             opacity: getComputedStyle(pose).opacity };
  });
  check("overlay on", overlaid.on && overlaid.photo === 194 && overlaid.blend === "screen" &&
    overlaid.opacity === "0.85", overlaid);
  await page.screenshot({ path: join(OUT, "playground-overlay-1280.png"), fullPage: true });
  await page.uncheck("#overlay");
  const off = await page.evaluate(() => ({
    on: document.getElementById("result-frame").classList.contains("overlaid"),
    photoHidden: document.getElementById("overlay-photo").hidden,
    opacity: getComputedStyle(document.getElementById("result-image")).opacity }));
  check("overlay off", !off.on && off.photoHidden && off.opacity === "1", off);

  const record = (await api("GET", `/v1/requests/${id}`)).body;
  const json = await download(page, "#download-json");
  const keypoints = JSON.parse(json.bytes.toString("utf8"));
  check("keypoints JSON download", json.name === `keypoints-${id}.json` &&
    keypoints.people?.length >= 1 && keypoints.canvas_width === 194 &&
    keypoints.people[0].pose_keypoints_2d.length === 54 &&
    JSON.stringify(keypoints) === JSON.stringify(record.output.keypoints), { name: json.name, keypoints });
  const png = await download(page, "#download-png");
  check("image download", png.name.endsWith(".png") &&
    png.bytes.subarray(1, 4).toString() === "PNG", { name: png.name, size: png.bytes.length });

  await page.waitForSelector(`#recent tr[data-request-id="${id}"] .s-COMPLETED`, { timeout: WAIT });
  check("recent list", true);
  await screenshots(page, "playground");

  // A URL the API refuses: the page shows the API's status, message, field and reason.
  const bad = "ftp://nope.invalid/x.jpg";
  await page.fill("#image-url", bad);
  await page.click("#submit");
  const shown = await errorShown(page);
  const direct = await api("POST", "/v1/requests", { input: { image_url: bad, return_keypoints: true } });
  check("422 for a bad URL, as the API words it", direct.status === 422 &&
    shown.status.startsWith("422") && shown.message === direct.body.message &&
    JSON.stringify(shown.fields) === JSON.stringify(flatten(direct.body.errors)) &&
    shown.fields.length > 0 &&
    await page.getAttribute("#image-url", "aria-invalid") === "true", { shown, direct });
  await page.fill("#image-url", `${BASE}/files/x.jpg`);
  await page.fill("#opt-detect_resolution", "99999");
  await page.click("#submit");
  await page.waitForFunction(() => document.querySelector("#error .error-fields li code")
    ?.textContent === "input.detect_resolution", null, { timeout: WAIT });
  const range = await errorShown(page);
  const sent = { image_url: `${BASE}/files/x.jpg`, detect_resolution: 99999, return_keypoints: true };
  const rangeDirect = await api("POST", "/v1/requests", { input: sent });
  check("422 for an option out of range, field and reason", rangeDirect.status === 422 &&
    JSON.stringify(range.fields) === JSON.stringify(flatten(rangeDirect.body.errors)) &&
    range.message === rangeDirect.body.message, { range, rangeDirect });
  await screenshots(page, "playground-error");
}

async function cancelScenario(page) {
  await openPlayground(page);
  await page.setInputFiles("#file", PHOTO);
  await page.click("#submit");
  await statusIs(page, ["IN_QUEUE"]);
  const detail = await page.textContent("#status-detail");
  const id = await page.textContent("#request-id");
  check("queued with its position", /queue position \d+/.test(detail) &&
    await page.isEnabled("#cancel"), detail);
  await screenshots(page, "playground-queued");
  await page.click("#cancel");
  await statusIs(page, ["CANCELLED", "COMPLETED", "FAILED"]);
  const api_status = (await api("GET", `/v1/requests/${id}/status`)).body.status;
  check("cancelled", await page.textContent("#status") === "CANCELLED" &&
    api_status === "CANCELLED" && !(await page.isEnabled("#cancel")) &&
    (await page.textContent("#result-note")).includes("Cancelled"), api_status);
  await page.waitForSelector(`#recent tr[data-request-id="${id}"] .s-CANCELLED`, { timeout: WAIT });
  check("recent list shows the cancel", true);

  await page.click("a[href='/docs']");
  await page.waitForSelector(".opblock-summary-path", { timeout: WAIT });
  const paths = await page.locator(".opblock-summary-path").allTextContents();
  const text = await page.textContent("#swagger");
  check("docs render openapi.yaml", paths.some((p) => p.includes("/v1/requests")) &&
    text.includes("Submit a photo") && await page.locator("a[href='/playground']").count() === 1,
    paths);
  await screenshots(page, "docs");
}

mkdirSync(OUT, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), "posehook-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  acceptDownloads: true,
  viewport: { width: 1280, height: 900 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage"],
});
const problems = [];
try {
  const page = context.pages()[0] || await context.newPage();
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && /Content.Security.Policy|Refused to/i.test(message.text())) {
      problems.push(message.text());
    }
  });
  if (SCENARIO === "result") await resultScenario(page);
  else if (SCENARIO === "cancel") await cancelScenario(page);
  else throw new Error(`unknown SCENARIO ${SCENARIO}`);
  check("no script errors or CSP refusals", problems.length === 0, problems);
} catch (error) {
  report.exception = `FAILED: ${error.stack || error}`;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(report));
process.exit(Object.values(report).every((v) => v === "ok") ? 0 : 1);
