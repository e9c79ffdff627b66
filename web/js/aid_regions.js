// Region editor on the spatial-temporal region nodes: a canvas at the layout's width/height aspect with one box per
// object (name, colour). Spatial-Temporal Region edits its x/y/width/height, Typed Layout its layout lines, Auto
// Layout shows the boxes of its last run and copies them into a Typed Layout. Draw a box, drag it to move, drag a
// corner to resize, double-click (or Delete) to delete; boxes snap to the 8 px latent grid of the canvas size.
// The widgets stay the one source of truth: every edit writes them, every widget change redraws from them.
import { app } from "../../../scripts/app.js";
import { PALETTE, addCanvasWidget, setValue, value, watch, widget } from "./aid_common.js";

export const REGION = "AIDSpatialTemporalRegion";
export const TYPED = "AIDSpatialTemporalTypedLayout";
export const AUTO = "AIDSpatialTemporalAutoLayout";
const REGION_TYPES = new Set([REGION, TYPED, AUTO]);
export const GRID = 8; // latent pixels of SD-type VAEs: boxes snap to this grid of the canvas size
const HANDLE = 7; // css px around a corner that grab it
const DEFAULT_CANVAS = [512, 512];

const typeOf = (node) => node?.comfyClass ?? node?.constructor?.comfyClass;
const round6 = (v) => Math.round(v * 1e6) / 1e6;

function linkOf(graph, id) {
  if (id == null || !graph) return null;
  return graph.getLink?.(id) ?? graph.links?.get?.(id) ?? graph.links?.[id] ?? null;
}

/** The region node feeding `node`'s input `input` ("regions"), or null. */
function upstream(node, input = "regions") {
  const slot = node.inputs?.findIndex((i) => i.name === input) ?? -1;
  if (slot < 0 || node.inputs[slot].link == null) return null;
  const link = linkOf(node.graph, node.inputs[slot].link);
  const source = link ? node.graph.getNodeById(link.origin_id) : null;
  return REGION_TYPES.has(typeOf(source)) ? source : null;
}

/** The first region node that takes `node`'s region list into its own regions input, or null. */
function downstream(node) {
  for (const id of node.outputs?.[0]?.links ?? []) {
    const link = linkOf(node.graph, id);
    const target = link ? node.graph.getNodeById(link.target_id) : null;
    if (REGION_TYPES.has(typeOf(target)) && target.inputs?.[link.target_slot]?.name === "regions") return target;
  }
  return null;
}

/** The region nodes of `node`'s chain, first to last (the list keeps the first node's canvas). */
export function chainOf(node) {
  const nodes = [node], seen = new Set([node.id]);
  for (let up = upstream(node); up && !seen.has(up.id); up = upstream(up)) { nodes.unshift(up); seen.add(up.id); }
  for (let down = downstream(node); down && !seen.has(down.id); down = downstream(down)) {
    nodes.push(down); seen.add(down.id);
  }
  return nodes;
}

function canvasOf(node) {
  const w = Number(value(node, "canvas_width", DEFAULT_CANVAS[0])), h = Number(value(node, "canvas_height", DEFAULT_CANVAS[1]));
  return [w > 0 ? w : DEFAULT_CANVAS[0], h > 0 ? h : DEFAULT_CANVAS[1]];
}

/**
 * (name, box) lines of a layout text as parse_layout_text (samplers/regions/prompt_layout.py) reads them: boxes in
 * fractions with the line index of each; `error` names the first line it cannot read.
 */
export function parseLayout(text) {
  const boxes = [];
  const lines = String(text ?? "").split(/\r\n|\r|\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line || line.startsWith("#")) continue;
    const colon = line.lastIndexOf(":");
    if (colon < 0) return { boxes, error: `line ${i + 1}: '${line}' has no ':' between the object and its box.` };
    const name = line.slice(0, colon).split(/\s+/).filter(Boolean).join(" ");
    const numbers = line.slice(colon + 1).trim().split(/[,\s]+/).filter(Boolean).map(Number);
    if (!name || numbers.length !== 4 || numbers.some((v) => !Number.isFinite(v))) {
      return { boxes, error: `line ${i + 1}: '${line}' is not 'name: x, y, width, height'.` };
    }
    const [x, y, w, h] = numbers;
    if (w <= 0 || h <= 0 || x >= 1 || y >= 1 || x + w <= 0 || y + h <= 0) {
      return { boxes, error: `line ${i + 1}: the box of '${name}' is empty or outside the image (fractions 0..1).` };
    }
    boxes.push({ name, x, y, w, h, line: i });
  }
  return { boxes, error: "" };
}

/** The text of Auto Layout's last run (its UI output) as layout lines, notes left out. */
function autoText(node) {
  return (node.aidAutoLayout ?? "").split("\n").filter((l) => l.trim() && !l.startsWith("note:") && l !== "(no region)")
    .join("\n");
}

/**
 * The boxes a region node adds, in fractions of the image: [{name, x, y, w, h}], or null when they are not known in
 * the editor (a MASK input, an Auto Layout that has not run).
 */
export function boxesOf(node, canvas) {
  const type = typeOf(node);
  if (type === REGION) {
    if (node.inputs?.find((i) => i.name === "mask")?.link != null) return null;
    const name = String(value(node, "description", "")).split(/\s+/).filter(Boolean).join(" ") || "(no description)";
    let [x, y, w, h] = ["x", "y", "width", "height"].map((k) => Number(value(node, k, 0)));
    if (value(node, "units", "fractions") === "pixels") [x, y, w, h] = [x / canvas[0], y / canvas[1], w / canvas[0], h / canvas[1]];
    return [{ name, x, y, w, h }];
  }
  if (type === TYPED) return parseLayout(value(node, "layout", "")).boxes;
  if (type === AUTO) return node.aidAutoLayout == null ? null : parseLayout(autoText(node)).boxes;
  return null;
}

/** The object names of the region chain feeding `node`'s input, or null when any of them is unknown here. */
export function chainNames(node, input = "regions") {
  const first = upstream(node, input);
  if (!first) return [];
  const nodes = [first];
  for (let up = upstream(first); up && !nodes.includes(up); up = upstream(up)) nodes.unshift(up);
  const canvas = canvasOf(nodes[0]);
  const names = [];
  for (const n of nodes) {
    const boxes = boxesOf(n, canvas);
    if (boxes === null) return null;
    names.push(...boxes.map((b) => b.name));
  }
  return names;
}

/** The drawing state of `node`'s editor: canvas size, every box of the chain (own ones marked), fit rectangle. */
function layoutState(node) {
  const chain = chainOf(node);
  const canvas = canvasOf(chain[0]);
  const boxes = [];
  let error = "";
  for (const n of chain) {
    const own = n === node;
    const found = boxesOf(n, canvas);
    if (found === null) {
      if (own && typeOf(n) === REGION) error = "the region is a MASK: its box is not drawn.";
      if (own && typeOf(n) === AUTO) error = "run the graph to see the boxes Auto Layout places.";
      continue;
    }
    found.forEach((b, i) => boxes.push({ ...b, own, index: i, node: n.id }));
  }
  if (typeOf(node) === TYPED) error = parseLayout(value(node, "layout", "")).error || error;
  boxes.forEach((b, i) => (b.color = PALETTE[i % PALETTE.length]));
  return { canvas, boxes, error, editable: typeOf(node) !== AUTO };
}

function fit(cssWidth, cssHeight, canvas) {
  const margin = 6;
  const scale = Math.max(1e-3, Math.min((cssWidth - 2 * margin) / canvas[0], (cssHeight - 2 * margin) / canvas[1]));
  return { scale, ox: (cssWidth - canvas[0] * scale) / 2, oy: (cssHeight - canvas[1] * scale) / 2 };
}

function draw(editor, state, drag, selected) {
  const [ctx, cw, ch] = editor.context();
  const { canvas } = state;
  ctx.clearRect(0, 0, cw, ch);
  editor.message.textContent = state.error;
  if (cw < 20 || ch < 20) return; // not laid out yet
  const f = (state.fit = fit(cw, ch, canvas));
  ctx.fillStyle = "#111";
  ctx.fillRect(0, 0, cw, ch);
  ctx.fillStyle = "#2a2a2a";
  ctx.fillRect(f.ox, f.oy, canvas[0] * f.scale, canvas[1] * f.scale);
  const step = GRID * Math.max(1, Math.ceil(5 / (GRID * f.scale))); // grid lines at least 5 css px apart
  ctx.strokeStyle = "rgba(255,255,255,0.06)";
  ctx.lineWidth = 1;
  for (let x = step; x < canvas[0]; x += step) {
    ctx.beginPath(); ctx.moveTo(f.ox + x * f.scale, f.oy); ctx.lineTo(f.ox + x * f.scale, f.oy + canvas[1] * f.scale); ctx.stroke();
  }
  for (let y = step; y < canvas[1]; y += step) {
    ctx.beginPath(); ctx.moveTo(f.ox, f.oy + y * f.scale); ctx.lineTo(f.ox + canvas[0] * f.scale, f.oy + y * f.scale); ctx.stroke();
  }
  const shown = state.boxes.map((b) => (drag && b === drag.box ? { ...b, ...drag.now } : b));
  if (drag && drag.box === null) shown.push({ ...drag.now, own: true, name: "new", color: "#fff" });
  // The other nodes' boxes first, dimmed; the node's own on top.
  for (const b of [...shown.filter((b) => !b.own), ...shown.filter((b) => b.own)]) {
    const x = f.ox + b.x * canvas[0] * f.scale, y = f.oy + b.y * canvas[1] * f.scale;
    const w = b.w * canvas[0] * f.scale, h = b.h * canvas[1] * f.scale;
    ctx.globalAlpha = b.own ? 0.35 : 0.12;
    ctx.fillStyle = b.color;
    ctx.fillRect(x, y, w, h);
    ctx.globalAlpha = b.own ? 1 : 0.45;
    ctx.strokeStyle = b.color;
    ctx.lineWidth = b.own ? 2 : 1;
    ctx.setLineDash(b.own ? [] : [4, 3]);
    ctx.strokeRect(x, y, w, h);
    ctx.setLineDash([]);
    ctx.fillStyle = b.own ? "#fff" : "#bbb";
    ctx.font = `${b.own ? "bold " : ""}11px sans-serif`;
    ctx.textBaseline = "top";
    ctx.fillText(b.name, x + 3, y + 3, Math.max(w - 6, 10));
    if (b.own && state.editable && (selected === b.index || state.boxes.filter((o) => o.own).length === 1)) {
      ctx.fillStyle = b.color;
      for (const [hx, hy] of [[x, y], [x + w, y], [x, y + h], [x + w, y + h]]) ctx.fillRect(hx - 3, hy - 3, 6, 6);
    }
    ctx.globalAlpha = 1;
  }
}

const snap = (v) => Math.round(v / GRID) * GRID;

/** A box in canvas pixels snapped to the grid and kept inside the canvas, at least one grid cell big. */
export function snapBox(px, canvas) {
  let x0 = Math.max(0, Math.min(snap(px.x0), canvas[0] - GRID)), y0 = Math.max(0, Math.min(snap(px.y0), canvas[1] - GRID));
  let x1 = Math.min(canvas[0], Math.max(snap(px.x1), x0 + GRID)), y1 = Math.min(canvas[1], Math.max(snap(px.y1), y0 + GRID));
  return { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
}

/** Write box `b` (canvas pixels) as the node's own widgets: a Region's x/y/width/height, a Typed Layout's line. */
function writeBox(node, state, index, b) {
  const [W, H] = state.canvas;
  const frac = { x: round6(b.x / W), y: round6(b.y / H), w: round6(b.w / W), h: round6(b.h / H) };
  if (typeOf(node) === REGION) {
    const pixels = value(node, "units", "fractions") === "pixels";
    setValue(node, "x", pixels ? b.x : frac.x, { exact: true });
    setValue(node, "y", pixels ? b.y : frac.y, { exact: true });
    setValue(node, "width", pixels ? b.w : frac.w, { exact: true });
    setValue(node, "height", pixels ? b.h : frac.h, { exact: true });
    return;
  }
  const text = String(value(node, "layout", ""));
  const lines = text.split(/\r\n|\r|\n/);
  const { boxes } = parseLayout(text);
  const line = (name) => `${name}: ${frac.x}, ${frac.y}, ${frac.w}, ${frac.h}`;
  if (index === null || index >= boxes.length) {
    const names = new Set(boxes.map((o) => o.name));
    let n = boxes.length + 1;
    while (names.has(`object ${n}`)) n++;
    const kept = lines.filter((l, i) => l.trim() || i < lines.length - 1);
    setValue(node, "layout", [...kept, line(`object ${n}`)].join("\n"));
  } else {
    lines[boxes[index].line] = line(boxes[index].name);
    setValue(node, "layout", lines.join("\n"));
  }
}

function deleteBox(node, state, index) {
  if (typeOf(node) !== TYPED) {
    state.error = "a Region node holds one box: delete the node to remove its object.";
    return false;
  }
  const text = String(value(node, "layout", ""));
  const { boxes } = parseLayout(text);
  if (index == null || index >= boxes.length) return false;
  setValue(node, "layout", text.split(/\r\n|\r|\n/).filter((_, i) => i !== boxes[index].line).join("\n"));
  return true;
}

function attachEditor(node) {
  const editor = addCanvasWidget(node, "aid_region_editor", 200);
  let state = layoutState(node), drag = null, selected = null;
  const redraw = () => { state = layoutState(node); node.aidEditor.state = state; draw(editor, state, drag, selected); };
  node.aidEditor = { editor, state, redraw };
  const toPixels = (event) => {
    const rect = editor.canvas.getBoundingClientRect();
    const f = state.fit ?? fit(rect.width, rect.height, state.canvas);
    // The node may be drawn zoomed: the element's css box is scaled, the drawing is in its own css pixels.
    const sx = editor.canvas.clientWidth / rect.width, sy = editor.canvas.clientHeight / rect.height;
    return { x: ((event.clientX - rect.left) * sx - f.ox) / f.scale, y: ((event.clientY - rect.top) * sy - f.oy) / f.scale,
      tolerance: HANDLE / f.scale };
  };
  const own = () => state.boxes.filter((b) => b.own);
  const inPixels = (b) => ({ x0: b.x * state.canvas[0], y0: b.y * state.canvas[1], x1: (b.x + b.w) * state.canvas[0],
    y1: (b.y + b.h) * state.canvas[1] });
  const toFractions = (px) => ({ x: px.x0 / state.canvas[0], y: px.y0 / state.canvas[1],
    w: (px.x1 - px.x0) / state.canvas[0], h: (px.y1 - px.y0) / state.canvas[1] });

  editor.canvas.addEventListener("pointerdown", (event) => {
    if (!state.editable || event.button !== 0) return;
    event.preventDefault();
    event.stopPropagation();
    editor.canvas.focus();
    editor.canvas.setPointerCapture?.(event.pointerId);
    const p = toPixels(event);
    let mode = "draw", box = null, corner = null;
    for (const b of own().reverse()) {
      const px = inPixels(b);
      const near = [["x0", "y0"], ["x1", "y0"], ["x0", "y1"], ["x1", "y1"]]
        .find(([cx, cy]) => Math.abs(p.x - px[cx]) <= p.tolerance && Math.abs(p.y - px[cy]) <= p.tolerance);
      if (near) { mode = "resize"; box = b; corner = near; break; }
      if (p.x >= px.x0 && p.x <= px.x1 && p.y >= px.y0 && p.y <= px.y1) { mode = "move"; box = b; break; }
    }
    if (mode === "draw" && typeOf(node) === REGION) box = own()[0] ?? null; // a Region's new box replaces its own
    selected = box ? box.index : null;
    drag = { mode, box, corner, start: p, from: box ? inPixels(box) : null, now: box ? { ...box } : { x: 0, y: 0, w: 0, h: 0 } };
    draw(editor, state, drag, selected);
  });
  editor.canvas.addEventListener("pointermove", (event) => {
    if (!drag) return;
    event.preventDefault();
    event.stopPropagation();
    const p = toPixels(event);
    let px;
    if (drag.mode === "move") {
      const dx = p.x - drag.start.x, dy = p.y - drag.start.y;
      px = { x0: drag.from.x0 + dx, y0: drag.from.y0 + dy, x1: drag.from.x1 + dx, y1: drag.from.y1 + dy };
    } else if (drag.mode === "resize") {
      px = { ...drag.from, [drag.corner[0]]: p.x, [drag.corner[1]]: p.y };
    } else {
      px = { x0: drag.start.x, y0: drag.start.y, x1: p.x, y1: p.y };
    }
    drag.px = { x0: Math.min(px.x0, px.x1), y0: Math.min(px.y0, px.y1), x1: Math.max(px.x0, px.x1), y1: Math.max(px.y0, px.y1) };
    drag.now = toFractions(drag.px);
    draw(editor, state, drag, selected);
  });
  const finish = (event) => {
    if (!drag) return;
    event.stopPropagation();
    const done = drag;
    drag = null;
    const moved = done.px && (Math.abs(done.px.x1 - done.px.x0) >= GRID / 2 || done.mode !== "draw");
    if (done.px && moved) {
      const b = snapBox(done.px, state.canvas);
      if (done.mode === "move") { // a move keeps the box's size
        const size = snapBox(done.from, state.canvas);
        b.w = size.w; b.h = size.h;
        b.x = Math.max(0, Math.min(b.x, state.canvas[0] - b.w)); b.y = Math.max(0, Math.min(b.y, state.canvas[1] - b.h));
      }
      writeBox(node, state, done.mode === "draw" && typeOf(node) === TYPED ? null : done.box?.index ?? 0, b);
      if (done.mode === "draw" && typeOf(node) === TYPED) selected = parseLayout(value(node, "layout", "")).boxes.length - 1;
    }
    redraw();
  };
  editor.canvas.addEventListener("pointerup", finish);
  editor.canvas.addEventListener("pointercancel", finish);
  editor.canvas.addEventListener("dblclick", (event) => {
    event.stopPropagation();
    const p = toPixels(event);
    const hit = own().reverse().find((b) => {
      const px = inPixels(b);
      return p.x >= px.x0 && p.x <= px.x1 && p.y >= px.y0 && p.y <= px.y1;
    });
    if (hit && deleteBox(node, state, hit.index)) selected = null;
    draw(editor, state, null, selected);
  });
  editor.canvas.addEventListener("keydown", (event) => {
    if ((event.key === "Delete" || event.key === "Backspace") && selected != null) {
      event.preventDefault();
      event.stopPropagation();
      if (deleteBox(node, state, selected)) selected = null;
      draw(editor, state, null, selected);
    }
  });
  // Redraw when this node's or any chained node's widgets, links or run result change.
  watch(node, () => JSON.stringify(chainOf(node).map((n) => [n.id, typeOf(n), ...(n.widgets ?? [])
    .filter((w) => w.serialize !== false).map((w) => w.value), n.aidAutoLayout ?? null,
  n.inputs?.map((i) => i.link) ?? []])), redraw, editor.canvas);
  return editor;
}

/** Auto Layout: keep the layout text of its last run, and a button that copies it into a Typed Layout. */
function attachAutoLayout(node) {
  const executed = node.onExecuted;
  node.onExecuted = function (output) {
    executed?.apply(this, arguments);
    if (output?.text?.length) this.aidAutoLayout = String(output.text[0]);
    this.aidEditor?.redraw();
  };
  const button = node.addWidget("button", "copy layout to a Typed Layout", null, () => copyToTyped(node),
    { serialize: false });
  button.serialize = false;
}

/** Put Auto Layout's last layout into the Typed Layout it feeds (or a new one beside it); returns that node. */
export function copyToTyped(node) {
  const text = autoText(node);
  if (!text) {
    if (node.aidEditor) node.aidEditor.editor.message.textContent = "run the graph first: Auto Layout has placed no box yet.";
    return null;
  }
  let target = null;
  for (let down = downstream(node); down; down = downstream(down)) if (typeOf(down) === TYPED) { target = down; break; }
  if (!target) {
    target = globalThis.LiteGraph.createNode(TYPED);
    target.pos = [node.pos[0] + node.size[0] + 40, node.pos[1]];
    node.graph.add(target);
  }
  setValue(target, "layout", text);
  for (const k of ["canvas_width", "canvas_height", "shape"]) if (widget(target, k) && widget(node, k)) setValue(target, k, value(node, k));
  return target;
}

app.registerExtension({
  name: "aid.regions",
  nodeCreated(node) {
    const type = typeOf(node);
    if (!REGION_TYPES.has(type)) return;
    if (type === AUTO) attachAutoLayout(node);
    attachEditor(node);
    const size = node.computeSize?.();
    if (size) node.setSize([Math.max(node.size[0], size[0], 340), Math.max(node.size[1], size[1])]);
  },
});
