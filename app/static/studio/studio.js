// better-loom studio: the template as a person points at it. Every change is checked by the
// server (the same code as `loom create-template`); the page only draws and collects.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  info: null,            // the recording: {recording, duration, fps, frames, width, height}
  template: null,        // the template being made, in the template format
  selected: null,        // {kind: "visual_segments" | "voice_segments", index}
  selection: null,       // [start, end] seconds on the waveform
  tracks: {},            // visual segment id -> {first_frame, boxes, lost}
  wave: null,
  t: 0,
  placeholders: [],
  imagePlaceholders: [],
};

async function api(path, options = {}) {
  const r = await fetch(path, {credentials: "same-origin", ...options});
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
  if (!r.ok) {
    const detail = body && body.detail;
    const line = typeof detail === "string" ? detail : (body && body.problems && body.problems[0] && body.problems[0].message) || `HTTP ${r.status}`;
    const error = new Error(line);
    error.body = body;
    error.status = r.status;
    throw error;
  }
  return body;
}
const post = (path, data) => api(path, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(data)});
const round = (x, n = 4) => Math.round(x * 10 ** n) / 10 ** n;
const slug = (s) => (s.toLowerCase().replace(/\.[a-z0-9]+$/, "").replace(/^[0-9a-f]{12}-/, "").replace(/[^a-z0-9._-]+/g, "-").replace(/^[-.]+|[-.]+$/g, "") || "template").slice(0, 60);

// ------------------------------------------------------------------ the recording

async function useRecording(info) {
  state.info = info;
  $("recording-error").textContent = "";
  state.template = {
    id: slug(info.name), name: info.name, base_video_path: info.recording, voice_id: "",
    voice_segments: [], visual_segments: [],
  };
  $("tpl-id").value = state.template.id;
  $("tpl-name").value = state.template.name;
  $("tpl-voice").value = "";
  $("scrub").max = Math.max(info.frames - 1, 0);
  $("scrub").step = 1;
  $("editor").hidden = false;
  await showTime(0);
  state.wave = await api(`/studio/api/waveform?recording=${encodeURIComponent(info.recording)}&bins=640`);
  $("player").src = `/studio/api/media?recording=${encodeURIComponent(info.recording)}`;
  drawWave();
  renderSegments();
  validate();
}

$("upload").addEventListener("change", async () => {
  const file = $("upload").files[0];
  if (!file) return;
  $("upload-status").textContent = `uploading ${file.name}…`;
  try {
    const info = await api(`/studio/api/uploads?name=${encodeURIComponent(file.name)}`, {method: "POST", body: file});
    $("upload-status").textContent = `${info.name}: ${info.width}x${info.height}, ${info.duration.toFixed(2)} s`;
    await useRecording(info);
  } catch (e) {
    $("upload-status").textContent = "";
    $("recording-error").textContent = e.message;
  }
});

$("use-location").addEventListener("click", async () => {
  try {
    await useRecording(await post("/studio/api/recordings", {recording: $("location").value}));
  } catch (e) {
    $("recording-error").textContent = e.message;
  }
});

// ------------------------------------------------------------------ frame, boxes and scrubber

const frameTime = (index) => index / state.info.fps;

async function showTime(index) {
  state.t = frameTime(index);
  $("time").textContent = `${state.t.toFixed(2)} s`;
  const img = $("frame");
  const loaded = new Promise((resolve) => { img.onload = resolve; img.onerror = resolve; });
  img.src = `/studio/api/frame?recording=${encodeURIComponent(state.info.recording)}&t=${state.t + 0.5 / state.info.fps}&w=640`;
  await loaded;
  drawOverlay();
  drawWave();
}

$("scrub").addEventListener("input", () => showTime(Number($("scrub").value)));

function overlaySize() {
  const img = $("frame");
  const canvas = $("overlay");
  if (canvas.width !== img.clientWidth || canvas.height !== img.clientHeight) {
    canvas.width = img.clientWidth;
    canvas.height = img.clientHeight;
  }
  return [canvas.width, canvas.height];
}

function drawOverlay(drag) {
  if (!state.template) return;
  const [w, h] = overlaySize();
  const ctx = $("overlay").getContext("2d");
  ctx.clearRect(0, 0, w, h);
  state.template.visual_segments.forEach((seg, index) => {
    const active = seg.start_time <= state.t + 1e-6 && state.t < seg.end_time;
    const selected = state.selected && state.selected.kind === "visual_segments" && state.selected.index === index;
    if (!active && !selected) return;
    let box = [seg.x, seg.y, seg.width, seg.height];
    let colour = selected ? "#8f7bff" : "#ffd34d";
    const track = state.tracks[seg.id];
    if (track) {
      const k = Math.round(state.t * state.info.fps) - track.first_frame;
      if (k >= 0 && k < track.boxes.length) {
        box = track.boxes[k];
        colour = track.lost[k] ? "#ff3b3b" : "#37d67a";  // flagged frames: left untouched by the engine
      }
    }
    ctx.strokeStyle = colour;
    ctx.lineWidth = selected ? 3 : 2;
    ctx.setLineDash(active ? [] : [6, 4]);
    ctx.strokeRect(box[0] * w, box[1] * h, box[2] * w, box[3] * h);
    ctx.fillStyle = colour;
    ctx.font = "12px system-ui";
    ctx.fillText(seg.id, box[0] * w + 3, box[1] * h + 13);
  });
  if (drag) {
    ctx.setLineDash([4, 3]);
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 1.5;
    ctx.strokeRect(drag.x, drag.y, drag.w, drag.h);
  }
}

let dragStart = null;
function canvasPoint(event) {
  const rect = $("overlay").getBoundingClientRect();
  return [Math.min(Math.max(event.clientX - rect.left, 0), rect.width), Math.min(Math.max(event.clientY - rect.top, 0), rect.height)];
}
$("overlay").addEventListener("mousedown", (event) => { dragStart = canvasPoint(event); });
$("overlay").addEventListener("mousemove", (event) => {
  if (!dragStart) return;
  const [x, y] = canvasPoint(event);
  drawOverlay({x: Math.min(x, dragStart[0]), y: Math.min(y, dragStart[1]), w: Math.abs(x - dragStart[0]), h: Math.abs(y - dragStart[1])});
});
window.addEventListener("mouseup", (event) => {
  if (!dragStart) return;
  const [x, y] = canvasPoint(event);
  const [w, h] = overlaySize();
  const box = {x: Math.min(x, dragStart[0]) / w, y: Math.min(y, dragStart[1]) / h, width: Math.abs(x - dragStart[0]) / w, height: Math.abs(y - dragStart[1]) / h};
  dragStart = null;
  if (box.width * w < 4 || box.height * h < 4) { drawOverlay(); return; }  // a click, not a box
  const segs = state.template.visual_segments;
  let n = segs.length + 1;
  while (segs.some((s) => s.id === `box${n}`)) n += 1;
  segs.push({
    id: `box${n}`, segment_type: "text", placeholder_key: "company_name",
    start_time: round(state.t, 3), end_time: round(Math.min(state.t + 2, state.info.duration), 3),
    x: round(box.x, 5), y: round(box.y, 5), width: round(box.width, 5), height: round(box.height, 5),
  });
  state.selected = {kind: "visual_segments", index: segs.length - 1};
  changed();
});

function setSelectedTime(attr) {
  if (!state.selected) return;
  const seg = state.template[state.selected.kind][state.selected.index];
  seg[attr] = round(state.t, 3);
  changed();
}
$("start-here").addEventListener("click", () => setSelectedTime("start_time"));
$("end-here").addEventListener("click", () => setSelectedTime("end_time"));

// ------------------------------------------------------------------ waveform and voice windows

function drawWave() {
  const canvas = $("wave");
  canvas.width = canvas.clientWidth;
  const ctx = canvas.getContext("2d");
  const {width, height} = canvas;
  ctx.clearRect(0, 0, width, height);
  if (!state.wave || !state.info) return;
  const px = (t) => (t / state.info.duration) * width;
  state.template.voice_segments.forEach((seg) => {
    ctx.fillStyle = "#6a4cff44";
    ctx.fillRect(px(seg.start_time), 0, px(seg.end_time) - px(seg.start_time), height);
  });
  if (state.selection) {
    ctx.fillStyle = "#ffd34d55";
    ctx.fillRect(px(state.selection[0]), 0, px(state.selection[1]) - px(state.selection[0]), height);
  }
  ctx.fillStyle = "#9ad0ff";
  const peaks = state.wave.peaks;
  peaks.forEach(([lo, hi], i) => {
    const x = (i / peaks.length) * width;
    ctx.fillRect(x, height / 2 - hi * height / 2, Math.max(1, width / peaks.length), Math.max(1, (hi - lo) * height / 2));
  });
  ctx.fillStyle = "#fff";
  ctx.fillRect(px(state.t), 0, 1, height);
}

let waveStart = null;
const waveTime = (event) => {
  const rect = $("wave").getBoundingClientRect();
  return Math.min(Math.max((event.clientX - rect.left) / rect.width, 0), 1) * state.info.duration;
};
function setSelection(a, b) {
  state.selection = [round(Math.min(a, b), 3), round(Math.max(a, b), 3)];
  $("selection").textContent = `selected ${state.selection[0].toFixed(2)}–${state.selection[1].toFixed(2)} s`;
  drawWave();
}
$("wave").addEventListener("mousedown", (event) => { waveStart = waveTime(event); });
$("wave").addEventListener("mousemove", (event) => { if (waveStart !== null) setSelection(waveStart, waveTime(event)); });
window.addEventListener("mouseup", (event) => {
  if (waveStart === null) return;
  setSelection(waveStart, waveTime(event));
  waveStart = null;
});

$("play-selection").addEventListener("click", () => {
  if (!state.selection) return;
  const player = $("player");
  player.currentTime = state.selection[0];
  const stop = () => { if (player.currentTime >= state.selection[1]) { player.pause(); player.removeEventListener("timeupdate", stop); } };
  player.addEventListener("timeupdate", stop);
  player.play();
});

$("add-voice").addEventListener("click", () => {
  if (!state.selection) { $("selection").textContent = "drag on the waveform first"; return; }
  const segs = state.template.voice_segments;
  let n = segs.length + 1;
  while (segs.some((s) => s.id === `line${n}`)) n += 1;
  segs.push({id: `line${n}`, start_time: state.selection[0], end_time: state.selection[1], template_text: "Hi {client_name}!", lipsync: true});
  state.selected = {kind: "voice_segments", index: segs.length - 1};
  changed();
});

$("find-it").addEventListener("click", async () => {
  $("find-status").textContent = "listening…";
  try {
    const found = await post("/studio/api/transcribe", {recording: state.info.recording, phrase: $("find-phrase").value});
    if (found.window) {
      setSelection(found.window[0], found.window[1]);
      $("find-status").textContent = `found at ${found.window[0].toFixed(2)} s`;
    } else {
      $("find-status").textContent = `not heard (${found.words.length} words in the recording)`;
    }
  } catch (e) {
    $("find-status").textContent = e.message;
  }
});

// ------------------------------------------------------------------ the segment list

const FIELDS = {
  visual_segments: [["id", "text", "id"], ["segment_type", "select", "type"], ["placeholder_key", "text", "placeholder"],
                    ["start_time", "number", "start"], ["end_time", "number", "end"]],
  voice_segments: [["id", "text", "id"], ["template_text", "text", "line"], ["start_time", "number", "start"],
                   ["end_time", "number", "end"], ["lipsync", "checkbox", "lip-sync"]],
};

function renderSegments() {
  const root = $("segments");
  root.innerHTML = "";
  for (const kind of ["voice_segments", "visual_segments"]) {
    state.template[kind].forEach((seg, index) => {
      const card = document.createElement("div");
      card.className = "seg";
      card.dataset.kind = kind;
      card.dataset.index = index;
      if (state.selected && state.selected.kind === kind && state.selected.index === index) card.classList.add("selected");
      const title = kind === "visual_segments" ? `box · ${seg.x.toFixed(3)}, ${seg.y.toFixed(3)}, ${seg.width.toFixed(3)} x ${seg.height.toFixed(3)}` : "voice line";
      card.innerHTML = `<h3><span>${title}</span><span><button class="track" hidden>show track</button> <button class="remove">remove</button></span></h3>`;
      for (const [attr, type, label] of FIELDS[kind]) {
        const wrap = document.createElement("label");
        wrap.textContent = `${label} `;
        let input;
        if (type === "select") {
          input = document.createElement("select");
          for (const option of ["text", "image"]) input.add(new Option(option, option));
          input.value = seg[attr];
        } else {
          input = document.createElement("input");
          input.type = type;
          if (type === "number") input.step = "0.01";
          if (type === "checkbox") input.checked = seg[attr] !== false; else input.value = seg[attr] ?? "";
        }
        input.dataset.attr = attr;
        input.addEventListener("change", () => {
          seg[attr] = type === "number" ? Number(input.value) : type === "checkbox" ? input.checked : input.value;
          if (attr === "segment_type" && input.value === "image" && seg.placeholder_key === "company_name") seg.placeholder_key = "logo";
          changed();
        });
        wrap.appendChild(input);
        card.appendChild(wrap);
        const error = document.createElement("div");
        error.className = "error";
        error.dataset.attr = attr;
        card.appendChild(error);
      }
      const general = document.createElement("div");
      general.className = "error";
      general.dataset.attr = "";
      card.appendChild(general);
      card.addEventListener("mousedown", () => {
        if (!(state.selected && state.selected.kind === kind && state.selected.index === index)) {
          state.selected = {kind, index};
          document.querySelectorAll(".seg").forEach((c) => c.classList.toggle("selected", c === card));
          drawOverlay();
        }
      });
      card.querySelector(".remove").addEventListener("click", () => {
        state.template[kind].splice(index, 1);
        state.selected = null;
        changed();
      });
      if (kind === "visual_segments") {
        const button = card.querySelector(".track");
        button.hidden = false;
        button.addEventListener("click", () => showTrack(seg, button));
      }
      root.appendChild(card);
    });
  }
}

async function showTrack(seg, button) {
  button.textContent = "tracking…";
  try {
    const track = await post("/studio/api/track", {template: collect(), segment_id: seg.id});
    state.tracks[seg.id] = track;
    button.textContent = track.flagged ? `track: ${track.flagged} frames flagged` : "track: every frame found";
    drawOverlay();
  } catch (e) {
    button.textContent = "show track";
    $("general-error").textContent = e.message;
  }
}

function collect() {
  state.template.id = $("tpl-id").value.trim();
  state.template.name = $("tpl-name").value.trim();
  state.template.voice_id = $("tpl-voice").value.trim();
  return state.template;
}
for (const id of ["tpl-id", "tpl-name", "tpl-voice"]) $(id).addEventListener("change", () => changed(false));

// ------------------------------------------------------------------ checking, saving, trying

let validateTimer = null;
function changed(rerender = true) {
  collect();
  state.tracks = {};
  if (rerender) renderSegments();
  drawOverlay();
  drawWave();
  clearTimeout(validateTimer);
  validateTimer = setTimeout(validate, 200);
}

function showProblems(problems) {
  document.querySelectorAll(".error").forEach((e) => { if (e.id !== "recording-error") e.textContent = ""; });
  for (const p of problems) {
    let target = null;
    if (p.kind !== null && p.index !== null) {
      const card = document.querySelector(`.seg[data-kind="${p.kind}"][data-index="${p.index}"]`);
      if (card) target = card.querySelector(`.error[data-attr="${p.attr || ""}"]`) || card.querySelector('.error[data-attr=""]');
    } else {
      target = document.querySelector(`.error[data-problem="${p.field}"]`);
    }
    (target || $("general-error")).textContent = p.message;
  }
}

async function validate() {
  const result = await post("/studio/api/validate", {template: collect()});
  showProblems(result.problems);
  if (result.ok) {
    state.placeholders = result.placeholders;
    state.imagePlaceholders = result.image_placeholders;
  }
  $("save").disabled = !result.ok;
  return result.ok;
}

async function poll(jobId, status) {
  for (;;) {
    const job = await api(`/studio/api/jobs/${jobId}`);
    if (job.status !== "running") return job;
    status.textContent = `${status.dataset.doing}… ${Math.round((Date.now() / 1000) - job.started)} s`;
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
}

$("save").addEventListener("click", async () => {
  if (!(await validate())) return;
  const status = $("save-status");
  status.dataset.doing = "preparing";
  status.textContent = "preparing…";
  try {
    const started = await post("/studio/api/templates", {template: collect()});
    const job = await poll(started.job, status);
    if (job.status !== "done") { status.textContent = ""; $("general-error").textContent = job.error; return; }
    status.textContent = `saved and prepared as ${job.template_id} (${job.seconds} s)` + (job.warnings.length ? ` — ${job.warnings.join("; ")}` : "");
    state.savedId = job.template_id;
    showTry();
  } catch (e) {
    status.textContent = "";
    if (e.body && e.body.problems) showProblems(e.body.problems); else $("general-error").textContent = e.message;
  }
});

const SAMPLES = {client_name: "Ada", company_name: "Globex", first_name: "Ada", name: "Ada"};
function showTry() {
  const root = $("try-values");
  root.innerHTML = "";
  for (const key of state.placeholders) {
    const wrap = document.createElement("label");
    wrap.textContent = `${key} `;
    const input = document.createElement("input");
    input.dataset.key = key;
    input.value = SAMPLES[key] || "";
    if (state.imagePlaceholders.includes(key)) input.placeholder = "logo: path under $LOOM_HOME or https:// URL";
    wrap.appendChild(input);
    root.appendChild(wrap);
  }
  $("try").hidden = false;
}

$("try-run").addEventListener("click", async () => {
  const values = {};
  document.querySelectorAll("#try-values input").forEach((input) => { values[input.dataset.key] = input.value; });
  const status = $("try-status");
  status.dataset.doing = "rendering";
  status.textContent = "rendering…";
  try {
    const started = await post("/studio/api/try", {template_id: state.savedId, values});
    const job = await poll(started.job, status);
    if (job.status !== "done") { status.textContent = job.error; return; }
    status.textContent = `made in ${job.seconds} s` + (job.warnings.length ? ` — ${job.warnings.join("; ")}` : "");
    $("result").src = job.video_url;
    if (job.preview_url) $("result-preview").src = job.preview_url;
    $("result").play().catch(() => {});
  } catch (e) {
    status.textContent = e.message;
  }
});

$("try-sheet").addEventListener("change", async () => {
  const file = $("try-sheet").files[0];
  if (!file) return;
  try {
    const sheet = await api(`/studio/api/sheet-rows?name=${encodeURIComponent(file.name)}`, {method: "POST", body: file});
    const select = $("try-row");
    select.innerHTML = "";
    sheet.rows.forEach((row, i) => select.add(new Option(`row ${i + 1}: ${Object.values(row).slice(0, 2).join(", ")}`, String(i))));
    select.hidden = sheet.rows.length === 0;
    select.onchange = () => {
      const row = sheet.rows[Number(select.value)];
      document.querySelectorAll("#try-values input").forEach((input) => {
        if (input.dataset.key in row) input.value = row[input.dataset.key];
      });
    };
    select.onchange();
    const missing = state.placeholders.filter((key) => !sheet.columns.includes(key));
    $("try-sheet-status").textContent = `${sheet.rows.length} rows` + (missing.length ? ` — no column for ${missing.join(", ")}` : "") + (sheet.warnings.length ? ` — ${sheet.warnings.join("; ")}` : "");
  } catch (e) {
    $("try-sheet-status").textContent = e.message;
  }
});
