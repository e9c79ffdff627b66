// Keyframe timeline in AID Keyframes: keys (with their holds), segment lengths, easing and a loop's seam, recomputed
// as the text changes. The timeline comes from the Python parser and resolve_timeline themselves
// (POST /aid/preview/keyframes, nodes/editor_routes.py); a parse error is shown on the node with its line.
// total_frames and loop are read from the AID Keyframe Sampler the node feeds, when it feeds one directly.
import { app } from "../../../scripts/app.js";
import { PALETTE, addCanvasWidget, latest, preview, value, watch } from "./aid_common.js";

const SAMPLER = "AIDKeyframeSampler";

function linkOf(graph, id) {
  return graph?.getLink?.(id) ?? graph?.links?.get?.(id) ?? graph?.links?.[id] ?? null;
}

/** The AID Keyframe Sampler that takes this node's keyframes directly, or null. */
function samplerOf(node) {
  for (const id of node.outputs?.[0]?.links ?? []) {
    const link = linkOf(node.graph, id);
    const target = link ? node.graph.getNodeById(link.target_id) : null;
    if ((target?.comfyClass ?? target?.constructor?.comfyClass) === SAMPLER) return target;
  }
  return null;
}

function body(node) {
  const sampler = samplerOf(node);
  return {
    text: String(value(node, "text", "")), pre_text: String(value(node, "pre_text", "")),
    app_text: String(value(node, "app_text", "")),
    total_frames: sampler ? Number(value(sampler, "total_frames", 0)) || 0 : 0,
    loop: sampler ? Boolean(value(sampler, "loop", false)) : false,
  };
}

function draw(editor, state) {
  const [ctx, w, h] = editor.context();
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#161616";
  ctx.fillRect(0, 0, w, h);
  ctx.font = "10px sans-serif";
  ctx.textBaseline = "top";
  const t = state.timeline;
  if (state.error) {
    ctx.strokeStyle = "#f44";
    ctx.lineWidth = 2;
    ctx.strokeRect(1, 1, w - 2, h - 2);
    ctx.fillStyle = "#f66";
    ctx.fillText(state.error.line ? `error on line ${state.error.line}` : "error", 8, 8);
  }
  editor.message.textContent = state.error ? state.error.message + (state.error.fix ? ` Fix: ${state.error.fix}` : "") : "";
  if (!t) return;
  const pad = 10, top = 22, barH = 26, rowY = top + 18;
  const frameW = (w - 2 * pad) / Math.max(t.frames, 1);
  const fx = (f) => pad + f * frameW;
  ctx.fillStyle = "#ccc";
  ctx.fillText(`${t.frames} frames${t.loop ? ", closed loop" : ""}${state.sampler ? "" : " (no AID Keyframe Sampler connected: total_frames 0, open)"}`,
    pad, state.error ? 20 : 6);
  // Segments: interior frames as bars whose height is the frame's coefficient t between its keys.
  t.segments.forEach((s) => {
    s.frames.forEach((f, j) => {
      const c = s.coefficients[j];
      ctx.fillStyle = "#3a6";
      ctx.fillRect(fx(f) + 0.5, rowY + barH - c * barH, Math.max(frameW - 1, 1), c * barH);
    });
    if (!s.frames.length) return;
    // Label the longest contiguous run of the segment (a loop's closing segment wraps round frame 0).
    const runs = [];
    s.frames.forEach((f, j) => (j && f === s.frames[j - 1] + 1 ? runs[runs.length - 1].push(f) : runs.push([f])));
    const run = runs.reduce((a, b) => (b.length > a.length ? b : a));
    ctx.fillStyle = "#9c9";
    ctx.fillText(`${s.frames.length} f, ${s.easing}`, fx(run[0]) + 2, rowY + barH + 4, Math.max(fx(run.at(-1) + 1) - fx(run[0]) - 2, 20));
  });
  // Keys: their position and held frames, coloured, with the line they were written on.
  t.keys.forEach((k, i) => {
    const color = PALETTE[i % PALETTE.length];
    ctx.fillStyle = color;
    for (const f of k.frames) ctx.fillRect(fx(f), rowY, Math.max(frameW, 2), barH);
    ctx.fillStyle = "#fff";
    ctx.beginPath();
    ctx.moveTo(fx(k.frame), rowY - 2); ctx.lineTo(fx(k.frame) + 5, rowY - 8); ctx.lineTo(fx(k.frame) - 5, rowY - 8);
    ctx.fill();
    ctx.fillStyle = color;
    const label = `${i + 1}@${k.frame}${k.hold > 1 ? ` hold ${k.hold}` : ""}: ${k.prompt}`;
    ctx.fillText(label, pad + 2, rowY + barH + 18 + 12 * i, w - 2 * pad);
  });
  if (t.loop) { // the seam: the clip ends one frame short of key 1, which frame 0 shows again
    ctx.strokeStyle = "#fc6";
    ctx.setLineDash([3, 2]);
    ctx.beginPath(); ctx.moveTo(fx(t.frames), rowY - 10); ctx.lineTo(fx(t.frames), rowY + barH + 2); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = "#fc6";
    ctx.fillText("seam -> key 1", Math.max(fx(t.frames) - 70, pad), rowY - 18);
  }
  ctx.strokeStyle = "#555";
  ctx.strokeRect(pad, rowY, w - 2 * pad, barH);
}

app.registerExtension({
  name: "aid.keyframes",
  nodeCreated(node) {
    if ((node.comfyClass ?? node.constructor?.comfyClass) !== "AIDKeyframes") return;
    const editor = addCanvasWidget(node, "aid_keyframe_timeline", 150);
    const state = { timeline: null, error: null, answers: 0 };
    node.aidEditor = { editor, state, redraw: () => draw(editor, state) };
    const ask = latest((payload) => preview("keyframes", payload));
    watch(node, () => JSON.stringify(body(node)), async () => {
      const payload = body(node);
      const answer = await ask(payload);
      if (answer === undefined) return;
      state.answers += 1;
      state.sampler = Boolean(samplerOf(node));
      state.payload = payload;
      if (answer.ok) { state.timeline = answer; state.error = null; } else { state.timeline = null; state.error = answer.error; }
      draw(editor, state);
    }, editor.canvas);
    const size = node.computeSize?.();
    if (size) node.setSize([Math.max(node.size[0], size[0]), Math.max(node.size[1], size[1])]);
  },
});
