// Runs the unmodified @fal-ai/client's calls of fal-ai/dwpose/video against a live posehook
// through its proxy, as fal_client.mjs does for the photo endpoint. Prints one JSON line:
// each check "ok" or what failed, and under "outputs" the URLs of the videos it got back
// (the Python side decodes them). Exits non-zero when a check fails.
import { readFileSync } from "node:fs";
import { fal, ApiError, ValidationError } from "@fal-ai/client";

const BASE = process.env.POSEHOOK_URL;
const VIDEO = readFileSync(process.env.VIDEO);
const FRAMES = Number(process.env.FRAMES);
fal.config({ proxyUrl: { url: `${BASE}/api/fal/proxy`, when: "always" } });

const report = {};
const outputs = {};
const check = (name, ok, detail) => {
  report[name] = ok ? "ok" : `FAILED: ${JSON.stringify(detail)}`;
};
const isVideo = (data) => data?.video?.content_type === "video/mp4" &&
  data.video.url && data.video.num_frames === FRAMES;

// The Blob goes up through fal's storage upload (the client does it), then subscribe polls
// with logs until the pose video is there.
const updates = [];
const result = await fal.subscribe("fal-ai/dwpose/video", {
  input: { video_url: new Blob([VIDEO], { type: "video/mp4" }) },
  logs: true,
  pollInterval: 200,
  onQueueUpdate: (update) => updates.push(update),
});
check("subscribe", isVideo(result.data) && result.requestId, result);
outputs.subscribe = result.data?.video?.url;
const lines = updates.flatMap((u) => u.logs ?? []).map((line) => line.message);
check("progress logs on the way", lines.some((m) => m.startsWith("video loaded:")) &&
  lines.some((m) => /^posed \d+ of \d+ frames$/.test(m)), lines);
const served = await fetch(result.data.video.url);
const bytes = new Uint8Array(await served.arrayBuffer());
check("video served as MP4", served.ok && served.headers.get("content-type") === "video/mp4" &&
  new TextDecoder().decode(bytes.slice(4, 8)) === "ftyp", served.status);

// The queue calls one by one, on the URL the client builds for fal-ai/dwpose/video.
const dataUri = `data:video/mp4;base64,${VIDEO.toString("base64")}`;
const { request_id } = await fal.queue.submit("fal-ai/dwpose/video", {
  input: { video_url: dataUri, draw_mode: "full-pose" },
});
let status;
for (let i = 0; i < 600; i++) {
  status = await fal.queue.status("fal-ai/dwpose/video", { requestId: request_id, logs: true });
  if (status.status === "COMPLETED") break;
  await new Promise((r) => setTimeout(r, 100));
}
check("queue status", status.status === "COMPLETED" &&
  status.logs.some((l) => l.message.startsWith("pose video stored")), status);
const queued = await fal.queue.result("fal-ai/dwpose/video", { requestId: request_id });
check("queue result", queued.requestId === request_id && isVideo(queued.data), queued);
outputs.queue = queued.data?.video?.url;
let cancelOutcome;
try {
  await fal.queue.cancel("fal-ai/dwpose/video", { requestId: request_id });
  cancelOutcome = "accepted";
} catch (error) {
  cancelOutcome = error instanceof ApiError ? error.status : String(error);
}
check("cancel after completion is 400", cancelOutcome === 400, cancelOutcome);

// Streaming status mode.
const streamed = await fal.subscribe("fal-ai/dwpose/video", {
  input: { video_url: dataUri }, mode: "streaming", logs: true,
});
check("streaming subscribe", isVideo(streamed.data), streamed);

// A synchronous run (fal.run host) answers with the pose video itself.
const ran = await fal.run("fal-ai/dwpose/video", { input: { video_url: dataUri } });
check("sync run", isVideo(ran.data) && ran.requestId, ran);

// A file that is not a video: the client raises its own ValidationError on video_url.
try {
  await fal.subscribe("fal-ai/dwpose/video", {
    input: { video_url: `data:video/mp4;base64,${Buffer.from("no video here").toString("base64")}` },
  });
  check("not a video is a validation error", false, "no error");
} catch (error) {
  check("not a video is a validation error", error instanceof ValidationError &&
    error.status === 422 && error.getFieldErrors("video_url").length === 1,
    { name: error.name, body: error.body });
}

const failed = Object.entries(report).filter(([, v]) => v !== "ok");
console.log(JSON.stringify({ ...report, outputs }));
process.exit(failed.length ? 1 : 0);
