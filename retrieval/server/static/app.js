// The search page: choose a query image, draw or pick a box, and see the ranked gallery results.
// Boxes are [x1, y1, x2, y2] in the query image's own pixels (EXIF orientation applied), as the API takes them.
// A video's sampled frames are gallery items too: their results and listing entries carry the frame's time.
// A server with a token answers 401 without it: the page asks for it once, keeps it in sessionStorage (this tab
// only) and sends it as "Authorization: Bearer …" with every request, pictures included (fetched as blobs, so
// the token is never in a URL).
"use strict";

const $ = (id) => document.getElementById(id);
const query = {
  file: null,       // an uploaded File, or
  imageId: null,    // a gallery image id
  picture: null,    // the HTMLImageElement drawn on the canvas
  box: null,        // [x1, y1, x2, y2] or null for the whole image
  candidates: [],   // [{box, label}] boxes offered for clicking (detections or the gallery image's objects)
};
let info = null;
let drag = null;

const canvas = $("query-canvas");
const context = canvas.getContext("2d");

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

const TOKEN_KEY = "retrieval-token";
let tokenAsked = null; // the promise of the token dialog while it is open: parallel requests wait for one answer

function withToken(options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return options;
  return { ...options, headers: { ...options.headers, Authorization: "Bearer " + token } };
}

// Resolves once the user has given a token (kept for this tab); `reason` is the server's 401 detail.
function askForToken(reason) {
  if (!tokenAsked) {
    tokenAsked = new Promise((resolve) => {
      $("token-reason").textContent = reason;
      $("token-input").value = "";
      $("token-form").onsubmit = (event) => {
        event.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
        $("token-dialog").close();
        tokenAsked = null;
        resolve();
      };
      $("token-dialog").showModal();
    });
  }
  return tokenAsked;
}
$("token-dialog").addEventListener("cancel", (event) => event.preventDefault()); // no request goes without it

// fetch() with the token; a 401 forgets the token, asks for one and sends the request again.
async function send(path, options) {
  for (;;) {
    const response = await fetch(path, withToken(options));
    if (response.status !== 401) return response;
    const body = await response.json().catch(() => ({}));
    sessionStorage.removeItem(TOKEN_KEY);
    await askForToken(typeof body.detail === "string" ? body.detail : "this server needs its token");
  }
}

async function api(path, options) {
  const response = await send(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || response.statusText);
    throw new Error(detail);
  }
  return body;
}

// A picture of the API as an object URL for an <img> (an <img src> request could not carry the token).
async function pictureUrl(path) {
  const response = await send(path);
  if (!response.ok) throw new Error("the picture cannot be loaded (" + response.status + ")");
  return URL.createObjectURL(await response.blob());
}

// Fills `element` (an <img>) with the API picture at `path`; the object URL is let go once it is shown.
function showPicture(element, path) {
  return pictureUrl(path).then((url) => {
    element.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
    element.src = url;
  });
}

// Pictures of the gallery listing are fetched as they scroll into view, as loading="lazy" would.
const lazyPictures = new IntersectionObserver(
  (entries) => {
    for (const { target, isIntersecting } of entries) {
      if (!isIntersecting) continue;
      lazyPictures.unobserve(target);
      showPicture(target, target.dataset.picture).catch(() => {});
    }
  },
  { rootMargin: "200px" },
);

function loadPicture(url) {
  return new Promise((resolve, reject) => {
    const picture = new Image();
    picture.onload = () => resolve(picture);
    picture.onerror = () => reject(new Error("the browser cannot show this image"));
    picture.src = url;
  });
}

function draw() {
  const picture = query.picture;
  if (!picture) return;
  canvas.width = picture.naturalWidth;
  canvas.height = picture.naturalHeight;
  context.drawImage(picture, 0, 0);
  const line = Math.max(2, Math.round(Math.max(canvas.width, canvas.height) / 320));
  context.lineWidth = line;
  context.setLineDash([4 * line, 3 * line]);
  context.strokeStyle = "rgba(255, 255, 255, 0.9)";
  for (const candidate of query.candidates) strokeBox(candidate.box);
  context.setLineDash([]);
  const box = drag ? drag.box : query.box;
  if (box) {
    context.lineWidth = line * 1.5;
    context.strokeStyle = "#ffb000";
    strokeBox(box);
  }
}

function strokeBox([x1, y1, x2, y2]) {
  context.strokeRect(x1, y1, x2 - x1, y2 - y1);
}

function showBoxText() {
  $("query-box").textContent = query.box
    ? "box " + query.box.map((v) => Math.round(v)).join(", ")
    : "whole image";
}

async function setQueryImage(picture, candidates) {
  query.picture = picture;
  query.box = null;
  query.candidates = candidates;
  canvas.hidden = false;
  $("drop-hint").hidden = true;
  $("canvas-hint").hidden = false;
  $("search-button").disabled = false;
  showBoxText();
  draw();
}

async function useFile(file) {
  if (!file) return;
  setStatus("loading " + file.name + "…");
  try {
    const picture = await loadPicture(URL.createObjectURL(file));
    query.file = file;
    query.imageId = null;
    await setQueryImage(picture, []);
    setStatus("Draw a box on the photo, or search with the whole image.");
    if (info && info.detector) detectObjects(file);
  } catch (error) {
    setStatus(file.name + ": " + error.message, true);
  }
}

async function detectObjects(file) {
  const form = new FormData();
  form.append("image", file);
  try {
    const found = await api("/api/detect", { method: "POST", body: form });
    if (query.file !== file) return;
    query.candidates = found.objects;
    draw();
    if (found.objects.length) setStatus(found.objects.length + " objects found: click one, or draw your own box.");
  } catch (error) {
    setStatus("detection failed: " + error.message, true);
  }
}

async function useGalleryImage(imageId, box) {
  const detail = await api("/api/images/" + imageId);
  const url = await pictureUrl(detail.picture);
  const picture = await loadPicture(url).finally(() => URL.revokeObjectURL(url));
  query.file = null;
  query.imageId = imageId;
  await setQueryImage(picture, detail.boxes);
  query.box = box || null;
  showBoxText();
  draw();
}

function canvasPoint(event) {
  const rect = canvas.getBoundingClientRect();
  const x = ((event.clientX - rect.left) * canvas.width) / rect.width;
  const y = ((event.clientY - rect.top) * canvas.height) / rect.height;
  return [Math.min(Math.max(x, 0), canvas.width), Math.min(Math.max(y, 0), canvas.height)];
}

canvas.addEventListener("pointerdown", (event) => {
  canvas.setPointerCapture(event.pointerId);
  const start = canvasPoint(event);
  drag = { start, box: null };
});

canvas.addEventListener("pointermove", (event) => {
  if (!drag) return;
  const [x, y] = canvasPoint(event);
  const [sx, sy] = drag.start;
  drag.box = [Math.min(sx, x), Math.min(sy, y), Math.max(sx, x), Math.max(sy, y)];
  draw();
});

canvas.addEventListener("pointerup", (event) => {
  if (!drag) return;
  const point = canvasPoint(event);
  const box = drag.box;
  drag = null;
  const minimum = Math.max(4, canvas.width / 200);
  if (box && box[2] - box[0] >= minimum && box[3] - box[1] >= minimum) {
    query.box = box.map((v) => Math.round(v * 10) / 10);
  } else {
    const hit = smallestCandidateAt(point);
    if (!hit) {
      draw();
      return;
    }
    query.box = hit.box;
  }
  showBoxText();
  draw();
  search();
});

function smallestCandidateAt([x, y]) {
  const inside = query.candidates.filter(({ box }) => box[0] <= x && x <= box[2] && box[1] <= y && y <= box[3]);
  inside.sort((a, b) => area(a.box) - area(b.box));
  return inside[0] || null;
}

function area([x1, y1, x2, y2]) {
  return (x2 - x1) * (y2 - y1);
}

async function search() {
  if (!query.picture) return;
  const form = new FormData();
  if (query.file) form.append("image", query.file);
  else form.append("image_id", String(query.imageId));
  if (query.box) form.append("box", query.box.join(","));
  form.append("top_k", $("top-k").value || "10");
  form.append("group", $("group").value);
  await runQuery(() => api("/api/query", { method: "POST", body: form }));
}

async function searchSimilar(objectId) {
  const params = new URLSearchParams({ top_k: $("top-k").value || "10", group: $("group").value });
  await runQuery(() => api("/api/objects/" + objectId + "/similar?" + params));
}

async function runQuery(request) {
  setStatus("searching…");
  $("search-button").disabled = true;
  const started = performance.now();
  try {
    const answer = await request();
    showResults(answer.results);
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    setStatus(answer.results.length + " results in " + seconds + " s");
  } catch (error) {
    setStatus(error.message, true);
  } finally {
    $("search-button").disabled = false;
  }
}

// A time in a video as mm:ss.s (minutes go past 59 in long videos), as the CLI prints it.
function clock(seconds) {
  const tenths = Math.round(seconds * 10);
  const minutes = Math.floor(tenths / 600);
  return String(minutes).padStart(2, "0") + ":" + ((tenths % 600) / 10).toFixed(1).padStart(4, "0");
}

// Under a frame: "at 00:04.0", and the span of the matching frames merged into a result when it is longer.
function timeText(item) {
  const [start, end] = item.span || [item.time, item.time];
  return "at " + clock(item.time) + (end > start ? ", seen " + clock(start) + "–" + clock(end) : "");
}

function card(item, { rank, score, label, box, onClick, lazy = false }) {
  const element = document.createElement("div");
  element.className = "card";
  const thumb = document.createElement("div");
  thumb.className = "thumb";
  thumb.style.aspectRatio = item.width && item.height ? item.width + " / " + item.height : "4 / 3";
  const picture = document.createElement("img");
  picture.alt = item.time == null ? item.path : item.path + " " + timeText(item);
  picture.dataset.picture = item.thumbnail;
  if (lazy) lazyPictures.observe(picture);
  else showPicture(picture, item.thumbnail).catch(() => {});
  thumb.append(picture);
  if (box && item.width) {
    const frame = document.createElement("div");
    frame.className = "box";
    frame.style.left = (100 * box[0]) / item.width + "%";
    frame.style.top = (100 * box[1]) / item.height + "%";
    frame.style.width = (100 * (box[2] - box[0])) / item.width + "%";
    frame.style.height = (100 * (box[3] - box[1])) / item.height + "%";
    thumb.append(frame);
  }
  if (rank) {
    const badge = document.createElement("span");
    badge.className = "rank";
    badge.textContent = "#" + rank;
    thumb.append(badge);
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  if (score !== undefined) {
    const line = document.createElement("div");
    line.innerHTML = '<span class="score"></span> <span class="label"></span>';
    line.querySelector(".score").textContent = score.toFixed(3);
    line.querySelector(".label").textContent = label || "";
    meta.append(line);
  }
  const path = document.createElement("div");
  path.className = "path";
  path.textContent = item.path;
  meta.append(path);
  if (item.time != null) {
    const time = document.createElement("div");
    time.className = "time";
    time.textContent = timeText(item);
    meta.append(time);
  }
  element.append(thumb, meta);
  element.addEventListener("click", onClick);
  return element;
}

function showResults(results) {
  const grid = $("results");
  grid.replaceChildren();
  $("results-title").textContent = "Results (" + results.length + ")";
  if (!results.length) {
    grid.innerHTML = '<p class="empty">The index is empty.</p>';
    return;
  }
  for (const result of results) {
    const element = card(result, {
      rank: result.rank,
      score: result.score,
      label: result.label,
      box: result.box,
      onClick: async () => {
        await useGalleryImage(result.image_id, result.box);
        await searchSimilar(result.object_id);
      },
    });
    element.classList.add("result");
    element.dataset.path = result.path;
    element.dataset.objectId = result.object_id;
    element.dataset.score = result.score;
    if (result.time != null) element.dataset.time = result.time;
    element.title = "Search with this object";
    grid.append(element);
  }
}

async function openGallery() {
  const dialog = $("gallery-dialog");
  dialog.showModal();
  const grid = $("gallery-grid");
  if (grid.childElementCount) return;
  const listing = await api("/api/images?limit=1000");
  for (const image of listing.images) {
    const element = card(image, {
      lazy: true,
      onClick: async () => {
        dialog.close();
        await useGalleryImage(image.image_id, null);
        setStatus("Draw a box on the photo, or click one of its objects.");
      },
    });
    element.classList.add("gallery-image");
    element.dataset.imageId = image.image_id;
    grid.append(element);
  }
  if (listing.total > listing.images.length) {
    const more = document.createElement("p");
    more.className = "empty";
    more.textContent = "showing the first " + listing.images.length + " of " + listing.total + " images";
    grid.append(more);
  }
}

$("file-input").addEventListener("change", (event) => useFile(event.target.files[0]));
$("gallery-button").addEventListener("click", () => openGallery().catch((e) => setStatus(e.message, true)));
$("gallery-close").addEventListener("click", () => $("gallery-dialog").close());
$("search-button").addEventListener("click", search);
$("whole-image").addEventListener("click", () => {
  query.box = null;
  showBoxText();
  draw();
  search();
});
const zone = $("drop-zone");
zone.addEventListener("dragover", (event) => {
  event.preventDefault();
  zone.classList.add("dragging");
});
zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("dragging");
  useFile(event.dataTransfer.files[0]);
});

// An index built with seeded random weights answers, but not as trained models would: say so, as the CLI does.
function showWeightsNotice(models) {
  if (!models.length) return;
  const notice = $("weights-notice");
  notice.textContent =
    "RANDOM weights: this index's " + models.join(" and ") + " had seeded random weights, not trained ones. " +
    "The results show that the pipeline works, not what trained models would find.";
  notice.hidden = false;
}

api("/api/info")
  .then((answer) => {
    info = answer;
    $("index-summary").textContent =
      answer.images + " images · " + answer.objects + " objects · " + answer.embedder + " embeddings (" +
      answer.dimension + "-d)";
    showWeightsNotice(answer.random_weights || []);
  })
  .catch((error) => setStatus("the index cannot be read: " + error.message, true));
