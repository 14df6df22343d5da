// Runs the unmodified @fal-ai/client against a live posehook through its proxy.
// The only posehook-specific line is fal.config({ proxyUrl }); the credentials are a
// posehook API key in FAL_KEY, exactly where fal's client looks for them.
// Prints one JSON line with what happened; exits non-zero when a check fails.
import { createHash, createPublicKey, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createFalClient, fal, ApiError, ValidationError } from "@fal-ai/client";

const BASE = process.env.POSEHOOK_URL;
const PHOTO = readFileSync(process.env.PHOTO);
fal.config({ proxyUrl: { url: `${BASE}/api/fal/proxy`, when: "always" } });

const report = {};
const check = (name, ok, detail) => {
  report[name] = ok ? "ok" : `FAILED: ${JSON.stringify(detail)}`;
};
const dataUri = `data:image/jpeg;base64,${PHOTO.toString("base64")}`;

// Section 1: subscribe with logs and queue updates.
const updates = [];
const result = await fal.subscribe("fal-ai/dwpose", {
  input: { image_url: dataUri },
  logs: true,
  pollInterval: 200,
  onQueueUpdate: (update) => updates.push(update.status),
});
check("subscribe", result.data?.image?.content_type === "image/png" && result.requestId &&
  result.data.image.width === 194 && updates.includes("COMPLETED"), { result, updates });
const picture = await fetch(result.data.image.url);
check("result image served", picture.ok && picture.headers.get("content-type") === "image/png",
  picture.status);

// Section 3: queue submit, status with logs, result, cancel.
const { request_id } = await fal.queue.submit("fal-ai/dwpose", { input: { image_url: dataUri } });
let status;
for (let i = 0; i < 300; i++) {
  status = await fal.queue.status("fal-ai/dwpose", { requestId: request_id, logs: true });
  if (status.status === "COMPLETED") break;
  await new Promise((r) => setTimeout(r, 200));
}
check("queue status", status.status === "COMPLETED" && Array.isArray(status.logs) &&
  status.logs.length > 0, status);
const queued = await fal.queue.result("fal-ai/dwpose", { requestId: request_id });
check("queue result", queued.requestId === request_id && queued.data.image.url, queued);
let cancelOutcome;
try {
  await fal.queue.cancel("fal-ai/dwpose", { requestId: request_id });
  cancelOutcome = "accepted";
} catch (error) {
  cancelOutcome = error instanceof ApiError ? error.status : String(error);
}
check("cancel after completion is 400", cancelOutcome === 400, cancelOutcome);

// Section 4: storage upload of a Blob, then subscribe with its URL.
const url = await fal.storage.upload(new Blob([PHOTO], { type: "image/jpeg" }));
check("storage upload", url.startsWith(BASE), url);
const fromUpload = await fal.subscribe("fal-ai/dwpose", { input: { image_url: url } });
check("subscribe with uploaded file", fromUpload.data?.image?.height === 259, fromUpload);

// fal's storage takes any file; one that is not an image fails only when used as the image.
const textUrl = await fal.storage.upload(new File(["Hello"], "hello.txt", { type: "text/plain" }));
const text = await fetch(textUrl);
check("non-image upload", textUrl.startsWith(BASE) && text.ok && await text.text() === "Hello" &&
  text.headers.get("content-type").startsWith("text/plain"), { textUrl, status: text.status });
try {
  await fal.subscribe("fal-ai/dwpose", { input: { image_url: textUrl } });
  check("non-image as the image is a validation error", false, "no error");
} catch (error) {
  check("non-image as the image is a validation error", error instanceof ValidationError &&
    error.getFieldErrors("image_url").length === 1, { name: error.name, body: error.body });
}

// Status stream (SSE) mode: the client adds each event's logs to the lines it has, so what
// it shows last must be the request's lines once each, in order (the move to COMPLETED comes
// just before its own log line, so that last line may be after the stream closed).
const streamedUpdates = [];
const streamed = await fal.subscribe("fal-ai/dwpose", {
  input: { image_url: dataUri }, mode: "streaming", logs: true,
  onQueueUpdate: (update) => streamedUpdates.push(update),
});
check("streaming subscribe", streamed.data?.image?.url !== undefined, streamed);
const shown = (streamedUpdates.filter((u) => Array.isArray(u.logs)).at(-1)?.logs ?? [])
  .map((line) => line.message);
const stored = (await fal.queue.status("fal-ai/dwpose", {
  requestId: streamed.requestId, logs: true,
})).logs.map((line) => line.message);
check("streaming logs counted exactly", shown.length >= 5 &&
  shown.length >= stored.length - 1 && shown.every((m, i) => m === stored[i]) &&
  shown.some((m) => m.startsWith("pose image stored")), { shown, stored });

// A plain string proxyUrl is used only in a browser: in Node the call goes to fal itself,
// with the key. The object form with when: "always" sends it to the proxy.
const reached = async (proxyUrl) => {
  const seen = [];
  const client = createFalClient({
    credentials: "not-a-real-key", proxyUrl,
    fetch: async (url) => {
      seen.push(String(url));
      return new Response(JSON.stringify({ detail: "stopped here" }), {
        status: 401, headers: { "content-type": "application/json" },
      });
    },
  });
  await client.queue.submit("fal-ai/dwpose", { input: { image_url: "https://x/y.jpg" } })
    .catch(() => {});
  return seen[0];
};
const proxied = `${BASE}/api/fal/proxy`;
const plain = await reached(proxied);
const always = await reached({ url: proxied, when: "always" });
check("string proxyUrl goes to fal in node", plain === "https://queue.fal.run/fal-ai/dwpose" &&
  always === proxied, { plain, always });

// A synchronous run (fal.run host) answers with the result itself.
const ran = await fal.run("fal-ai/dwpose", { input: { image_url: dataUri } });
check("sync run", ran.data?.image?.content_type === "image/png" && ran.requestId, ran);

// A bad input makes the client raise its own ValidationError.
try {
  await fal.subscribe("fal-ai/dwpose", { input: { image_url: "ftp://nope/x.jpg" } });
  check("validation error", false, "no error");
} catch (error) {
  check("validation error", error instanceof ValidationError && error.status === 422 &&
    error.getFieldErrors("image_url").length === 1, { name: error.name, body: error.body });
}

// A fal_webhook, verified with fal's recipe against posehook's JWKS.
const received = new Promise((resolve) => {
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      res.writeHead(200).end();
      server.close();
      resolve({ headers: req.headers, body: Buffer.concat(chunks) });
    });
  }).listen(0, "127.0.0.1", () => {
    const { port } = server.address();
    fal.queue.submit("fal-ai/dwpose", {
      input: { image_url: dataUri }, webhookUrl: `http://127.0.0.1:${port}/fal-hook`,
    });
  });
});
const hook = await received;
const jwks = await (await fetch(`${BASE}/.well-known/jwks.json`)).json();
const h = hook.headers;
const message = Buffer.from([h["x-fal-webhook-request-id"], h["x-fal-webhook-user-id"],
  h["x-fal-webhook-timestamp"], createHash("sha256").update(hook.body).digest("hex")].join("\n"));
const fresh = Math.abs(Date.now() / 1000 - Number(h["x-fal-webhook-timestamp"])) <= 300;
const verified = jwks.keys.some((jwk) => verify(null, message,
  createPublicKey({ key: jwk, format: "jwk" }), Buffer.from(h["x-fal-webhook-signature"], "hex")));
const payload = JSON.parse(hook.body.toString());
check("fal_webhook verified", verified && fresh && payload.status === "OK" &&
  payload.payload.image.url, { headers: h, payload });

const failed = Object.entries(report).filter(([, v]) => v !== "ok");
console.log(JSON.stringify(report));
process.exit(failed.length ? 1 : 0);
