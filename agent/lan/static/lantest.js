// The agent's LAN speed test page: latency, then download and upload against this gateway's test
// endpoints with several parallel streams, discarding the first part (TCP ramp-up), then the
// figures are posted to /api/result with the room. No framework: it must run on any phone.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const SECONDS = Math.max(2, Math.min(60, Number(params.get("seconds")) || 8));
const STREAMS = Math.max(1, Math.min(8, Number(params.get("streams")) || 4));
const WARMUP = 0.25; // share of each phase discarded as ramp-up
const testId = "page-" + Math.random().toString(36).slice(2, 10);
const $ = (id) => document.getElementById(id);

function url(path, extra) {
  const q = new URLSearchParams(extra || {});
  q.set("test", testId);
  if (token) q.set("token", token);
  return path + "?" + q.toString();
}
function headers() { return token ? { Authorization: "Bearer " + token } : {}; }
function show(id, value, digits) { $(id).textContent = value == null ? "—" : Number(value).toFixed(digits ?? 1); }
function status(text) { $("status").textContent = text; }

async function latency(count) {
  const rtts = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    const r = await fetch(url("/latency", { n: i }), { cache: "no-store", headers: headers() });
    await r.arrayBuffer();
    rtts.push(performance.now() - t0);
  }
  const sorted = [...rtts].sort((a, b) => a - b);
  let jitter = 0;
  for (let i = 1; i < rtts.length; i++) jitter += Math.abs(rtts[i] - rtts[i - 1]);
  return { median: sorted[Math.floor(sorted.length / 2)], jitter: jitter / (rtts.length - 1) };
}

// Runs `stream(counter, signal)` STREAMS times in parallel for SECONDS; returns Mbit/s over the
// part after the warm-up, and all bytes moved.
async function phase(name, stream) {
  const counter = { bytes: 0 };
  const stop = new AbortController();
  const started = performance.now();
  let mark = null;
  const ticker = setInterval(() => {
    const t = (performance.now() - started) / 1000;
    if (mark === null && t >= SECONDS * WARMUP) mark = { t, bytes: counter.bytes };
    if (mark) show(name, (counter.bytes - mark.bytes) * 8 / 1e6 / Math.max(0.001, t - mark.t));
    if (t >= SECONDS) stop.abort();
  }, 100);
  const runners = [];
  for (let i = 0; i < STREAMS; i++) runners.push(stream(counter, stop.signal).catch((e) => {
    if (!stop.signal.aborted) throw e;
  }));
  try {
    await Promise.all(runners);
  } finally {
    clearInterval(ticker);
  }
  const end = { t: (performance.now() - started) / 1000, bytes: counter.bytes };
  if (!mark || end.t <= mark.t) throw new Error(name + ": the test ended before it could be measured");
  return { mbps: (end.bytes - mark.bytes) * 8 / 1e6 / (end.t - mark.t), bytes: end.bytes };
}

async function downloadStream(counter, signal) {
  while (!signal.aborted) {
    const r = await fetch(url("/download", { bytes: 256 * 1024 * 1024 }), { cache: "no-store", signal, headers: headers() });
    if (!r.ok) throw new Error("download: the gateway answered " + r.status + " " + (await r.text()));
    const reader = r.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      counter.bytes += value.length;
    }
  }
}

let uploadBlob = null;
function blob() {
  if (!uploadBlob) {
    const chunk = new Uint8Array(65536);
    crypto.getRandomValues(chunk); // incompressible
    uploadBlob = new Blob(new Array(128).fill(chunk)); // 8 MiB
  }
  return uploadBlob;
}

function uploadStream(counter, signal) {
  return new Promise((resolve, reject) => {
    const once = () => {
      if (signal.aborted) return resolve();
      const xhr = new XMLHttpRequest();
      let sent = 0;
      xhr.upload.onprogress = (e) => { counter.bytes += e.loaded - sent; sent = e.loaded; };
      xhr.onload = () => {
        if (xhr.status !== 200) return reject(new Error("upload: the gateway answered " + xhr.status));
        counter.bytes += blob().size - sent;
        once();
      };
      xhr.onerror = () => (signal.aborted ? resolve() : reject(new Error("upload failed")));
      xhr.onabort = () => resolve();
      signal.addEventListener("abort", () => xhr.abort(), { once: true });
      xhr.open("POST", url("/upload"));
      if (token) xhr.setRequestHeader("Authorization", "Bearer " + token);
      xhr.send(blob());
    };
    once();
  });
}

function showStation(st) {
  if (!st) return;
  show("signal", st.signal_dbm, 0);
  show("phy", st.tx_bitrate_mbps);
}

async function run() {
  const room = $("room").value.trim();
  if (!room) { status("Name the room first · 请输入房间"); return; }
  $("start").disabled = true;
  document.body.dataset.state = "running";
  $("verdict").hidden = true;
  const out = { room, client: "browser" };
  const t0 = performance.now();
  try {
    status("Latency…");
    const lat = await latency(10);
    out.latency_ms = lat.median; out.jitter_ms = lat.jitter;
    show("latency", lat.median);
    status("Download…");
    const down = await phase("down", downloadStream);
    out.down_mbps = down.mbps; out.down_bytes = down.bytes;
    show("down", down.mbps);
    status("Upload…");
    const up = await phase("up", uploadStream);
    out.up_mbps = up.mbps; out.up_bytes = up.bytes;
    show("up", up.mbps);
  } catch (e) {
    out.error = String(e && e.message || e).slice(0, 500);
  }
  out.duration_s = (performance.now() - t0) / 1000;
  status("Recording…");
  try {
    const r = await fetch(url("/api/result"), {
      method: "POST", headers: { ...headers(), "Content-Type": "application/json" }, body: JSON.stringify(out)
    });
    const answer = await r.json();
    if (!r.ok) throw new Error(answer.detail || answer.error);
    showStation(answer.station);
    const v = $("verdict");
    const problems = answer.findings.map((f) => f.message);
    v.className = answer.status === "ok" ? "ok" : "problem";
    v.textContent = answer.status === "ok"
      ? `${room}: recorded, on target · 已记录，达标`
      : (problems.length ? problems.join(" ") : (answer.reason || answer.status));
    v.dataset.status = answer.status;
    v.dataset.resultId = answer.result_id;
    v.hidden = false;
    status(out.error ? "The test failed: " + out.error : "Done · 完成");
  } catch (e) {
    status("Could not record the result: " + e.message);
  }
  document.body.dataset.state = "done";
  $("start").disabled = false;
}

async function init() {
  try {
    const r = await fetch(url("/api/station"), { cache: "no-store", headers: headers() });
    const info = await r.json();
    if (!r.ok) throw new Error(info.detail || info.error);
    const list = $("rooms");
    for (const room of Object.keys(info.rooms || {})) {
      const o = document.createElement("option"); o.value = room; list.appendChild(o);
    }
    showStation(info.station);
    status(info.station && info.station.station_found_flag === 1
      ? `Connected to ${info.station.ssid || info.station.wifi_interface} · 已连接`
      : (info.station && info.station.note) || "Ready · 就绪");
  } catch (e) {
    status("The gateway did not answer: " + e.message);
    return;
  }
  if (params.get("room")) $("room").value = params.get("room");
  $("start").disabled = false;
  $("start").addEventListener("click", run);
}
init();
