// pan serve's page: open an image, paint a mask (inpaint), run, compare, download.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { models: [], file: null, undo: [], painted: false, resultUrl: null };

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function currentModel() {
  return state.models.find((m) => m.id === $("model").value);
}

function needsMask() {
  const model = currentModel();
  return Boolean(model && model.mask);
}

function refreshControls() {
  $("brush").hidden = !(needsMask() && state.file);
  $("run").disabled = !(state.file && currentModel());
}

function fillModels() {
  const task = $("task").value;
  $("model").replaceChildren(...state.models.filter((m) => m.task === task).map((m) => new Option(m.label, m.id)));
  refreshControls();
}

async function loadModels() {
  try {
    const reply = await fetch("api/models");
    state.models = await reply.json();
  } catch (err) {
    showError(`Cannot reach the pan server: ${err}`);
    return;
  }
  if (!state.models.length) {
    showError("No models: train one (pan train TASK) or start pan serve with --checkpoint.");
    return;
  }
  const tasks = [...new Set(state.models.map((m) => m.task))];
  $("task").replaceChildren(...tasks.map((t) => new Option(t, t)));
  fillModels();
}

function hideResult() {
  $("after").hidden = true;
  $("divider").hidden = true;
  $("compare").hidden = true;
  $("download").hidden = true;
}

function openFile(file) {
  if (!file) return;
  showError("");
  hideResult();
  const url = URL.createObjectURL(file);
  const image = new Image();
  image.onload = () => {
    for (const id of ["photo", "paint"]) {
      $(id).width = image.naturalWidth;
      $(id).height = image.naturalHeight;
    }
    $("photo").getContext("2d").drawImage(image, 0, 0);
    state.file = file;
    state.undo = [];
    state.painted = false;
    $("stage").hidden = false;
    $("empty").hidden = true;
    URL.revokeObjectURL(url);
    refreshControls();
  };
  image.onerror = () => {
    URL.revokeObjectURL(url);
    showError(`Cannot open ${file.name}: it is not an image (pan reads PNG, JPEG, BMP, TIFF and WebP).`);
  };
  image.src = url;
}

// Painting: strokes go onto the paint canvas at the image's own resolution.
let drawing = null;

function point(event) {
  const box = $("paint").getBoundingClientRect();
  const scale = $("paint").width / box.width;
  return { x: (event.clientX - box.left) * scale, y: (event.clientY - box.top) * scale, scale };
}

function stroke(from, to) {
  const context = $("paint").getContext("2d");
  context.globalCompositeOperation = $("eraser").checked ? "destination-out" : "source-over";
  context.strokeStyle = context.fillStyle = "#ff1744";
  context.lineWidth = Number($("size").value) * to.scale;
  context.lineCap = context.lineJoin = "round";
  context.beginPath();
  context.moveTo(from.x, from.y);
  context.lineTo(to.x + 0.01, to.y);
  context.stroke();
}

function pushUndo() {
  const canvas = $("paint");
  state.undo.push(canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height));
  if (state.undo.length > 30) state.undo.shift();
}

$("paint").addEventListener("pointerdown", (event) => {
  if (!needsMask()) return;
  event.preventDefault();
  $("paint").setPointerCapture(event.pointerId);
  hideResult();
  pushUndo();
  drawing = point(event);
  stroke(drawing, drawing);
  state.painted = true;
});
$("paint").addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const next = point(event);
  stroke(drawing, next);
  drawing = next;
});
for (const type of ["pointerup", "pointercancel"]) {
  $("paint").addEventListener(type, () => { drawing = null; });
}
$("undo").addEventListener("click", () => {
  const last = state.undo.pop();
  if (last) $("paint").getContext("2d").putImageData(last, 0, 0);
});
$("clear").addEventListener("click", () => {
  pushUndo();
  const canvas = $("paint");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
});

function maskBlob() {
  // white (fill) where the brush painted, black elsewhere, at the image's resolution
  const paint = $("paint");
  const painted = paint.getContext("2d").getImageData(0, 0, paint.width, paint.height);
  const mask = document.createElement("canvas");
  mask.width = paint.width;
  mask.height = paint.height;
  const context = mask.getContext("2d");
  const out = context.createImageData(paint.width, paint.height);
  let any = false;
  for (let i = 0; i < painted.data.length; i += 4) {
    const value = painted.data[i + 3] > 127 ? 255 : 0;
    any = any || value > 0;
    out.data[i] = out.data[i + 1] = out.data[i + 2] = value;
    out.data[i + 3] = 255;
  }
  context.putImageData(out, 0, 0);
  return any ? new Promise((resolve) => mask.toBlob(resolve, "image/png")) : Promise.resolve(null);
}

async function run() {
  const model = currentModel();
  if (!state.file || !model) return;
  showError("");
  const button = $("run");
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = "Running…";
  try {
    const form = new FormData();
    form.append("image", state.file, state.file.name);
    form.append("task", model.task);
    form.append("model", model.id);
    if (model.mask) {
      const mask = await maskBlob();
      if (mask) form.append("mask", mask, "mask.png");
    }
    const reply = await fetch("api/run", { method: "POST", body: form });
    if (!reply.ok) {
      let message = `${reply.status} ${reply.statusText}`;
      try { message = (await reply.json()).error || message; } catch (err) { /* not JSON */ }
      showError(`The server could not run the model: ${message}`);
      return;
    }
    if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
    state.resultUrl = URL.createObjectURL(await reply.blob());
    $("after").src = state.resultUrl;
    $("after").hidden = false;
    $("divider").hidden = false;
    $("compare").hidden = false;
    $("slider").dispatchEvent(new Event("input"));
    const link = $("download");
    link.href = state.resultUrl;
    link.download = state.file.name.replace(/\.[^.]*$/, "") + "-pan.png";
    link.hidden = false;
  } catch (err) {
    showError(`The request failed: ${err}`);
  } finally {
    button.removeAttribute("aria-busy");
    button.textContent = "Run";
    refreshControls();
  }
}

$("slider").addEventListener("input", () => {
  // before on the left of the divider, the result on its right
  $("after").style.clipPath = `inset(0 0 0 ${$("slider").value}%)`;
  $("divider").style.left = `${$("slider").value}%`;
});
$("task").addEventListener("change", fillModels);
$("model").addEventListener("change", refreshControls);
$("file").addEventListener("change", () => openFile($("file").files[0]));
$("run").addEventListener("click", run);
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  openFile(event.dataTransfer.files[0]);
});
loadModels();
