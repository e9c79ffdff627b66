// Shared helpers of the AID editor widgets: a canvas drawn inside a node, widget watching, and the pack's
// preview routes (POST /aid/preview/<name>, nodes/editor_routes.py). Plain ES module, no build step.
import { api } from "../../../scripts/api.js";

export const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
  "#fabed4", "#469990", "#dcbeff", "#9a6324"];

/** The widget called `name` of `node`, or undefined. */
export function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

/** The current value of widget `name` (or `fallback` when the node has no such widget). */
export function value(node, name, fallback) {
  const found = widget(node, name);
  return found === undefined ? fallback : found.value;
}

/**
 * Set widget `name` to `v` the way the UI does: the value, its callback, and a redraw of the graph canvas.
 * `exact`: keep `v` even where the callback rounds it (a FLOAT widget rounds to its step, 0.01 for region boxes,
 * coarser than the 1/64 fractions of the 8 px grid of a 512 px canvas).
 */
export function setValue(node, name, v, { exact = false } = {}) {
  const found = widget(node, name);
  if (!found) return;
  found.value = v;
  found.callback?.(v, node.graph?.canvas ?? undefined, node);
  if (exact) found.value = v;
  node.setDirtyCanvas?.(true, true);
  node.graph?.change?.();
}

/** POST the body to the pack's preview route `name`; the JSON answer, or {ok: false, error} on a network error. */
export async function preview(name, body) {
  try {
    const response = await api.fetchApi(`/aid/preview/${name}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    return await response.json();
  } catch (error) {
    return { ok: false, error: { message: `preview unavailable: ${error}` } };
  }
}

/**
 * Add a canvas widget (a DOM widget that is never serialised: neither the workflow nor the API prompt carries it)
 * with a message line under it. Returns {widget, canvas, message, context()} where context() sizes the canvas to
 * its element (device pixels) and returns [ctx, cssWidth, cssHeight].
 */
export function addCanvasWidget(node, name, height) {
  const box = document.createElement("div");
  box.className = "aid-editor";
  box.style.cssText = "display:flex;flex-direction:column;gap:2px;box-sizing:border-box;";
  const canvas = document.createElement("canvas");
  canvas.style.cssText = "width:100%;flex:1 1 auto;min-height:0;border-radius:4px;touch-action:none;";
  canvas.tabIndex = 0;
  const message = document.createElement("div");
  message.className = "aid-editor-message";
  message.style.cssText = "font:11px sans-serif;color:#f66;white-space:pre-wrap;overflow:hidden;max-height:4.2em;";
  box.append(canvas, message);
  const w = node.addDOMWidget(name, "aid-editor", box, { serialize: false, hideOnZoom: false,
    getMinHeight: () => height, getValue: () => "", setValue: () => {} });
  w.serialize = false;
  return {
    widget: w, canvas, message,
    context() {
      const ratio = window.devicePixelRatio || 1;
      const cssWidth = Math.max(canvas.clientWidth, 1);
      const cssHeight = Math.max(canvas.clientHeight, 1);
      if (canvas.width !== Math.round(cssWidth * ratio) || canvas.height !== Math.round(cssHeight * ratio)) {
        canvas.width = Math.round(cssWidth * ratio);
        canvas.height = Math.round(cssHeight * ratio);
      }
      const ctx = canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      return [ctx, cssWidth, cssHeight];
    },
  };
}

/**
 * Call `changed()` whenever the signature `signature()` (the watched widget values as a string) changes: widget
 * callbacks, typing in a text box, a loaded workflow and undo all end there. Also redraws when the element resizes.
 * Polling keeps the widgets the one source of truth; nothing is cached apart from the last signature.
 */
export function watch(node, signature, changed, element) {
  let last = null;
  const check = () => {
    let now;
    try {
      now = signature();
    } catch (error) {
      now = `error ${error}`;
    }
    if (now !== last) {
      last = now;
      changed();
    }
  };
  const timer = setInterval(check, 150);
  const observer = element && typeof ResizeObserver !== "undefined" ? new ResizeObserver(() => changed()) : null;
  observer?.observe(element);
  const removed = node.onRemoved;
  node.onRemoved = function () {
    clearInterval(timer);
    observer?.disconnect();
    return removed?.apply(this, arguments);
  };
  queueMicrotask(check);
  return { refresh: () => { last = null; check(); } };
}

/** Only the latest of overlapping async calls lands: wraps fn(...) so a stale answer is dropped. */
export function latest(fn) {
  let ticket = 0;
  return async (...args) => {
    const mine = ++ticket;
    const result = await fn(...args);
    return mine === ticket ? result : undefined;
  };
}

/** Axes and a frame of a plot area inside (x, y, w, h); returns the mapping [px(u), py(v)] for u, v in 0..1. */
export function plotFrame(ctx, x, y, w, h, { yMax = 1, xLabel = "", yLabel = "" } = {}) {
  ctx.fillStyle = "#1b1b1b";
  ctx.fillRect(x, y, w, h);
  ctx.strokeStyle = "#444";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const gx = x + (w * i) / 4, gy = y + (h * i) / 4;
    ctx.beginPath(); ctx.moveTo(gx, y); ctx.lineTo(gx, y + h); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(x, gy); ctx.lineTo(x + w, gy); ctx.stroke();
  }
  ctx.fillStyle = "#aaa";
  ctx.font = "10px sans-serif";
  ctx.textBaseline = "top";
  ctx.fillText(xLabel, x + 2, y + h + 2);
  ctx.fillText(`${yLabel} ${+yMax.toFixed(3)}`, x + 2, y + 2);
  return [(u) => x + u * w, (v) => y + h - (v / yMax) * h];
}
