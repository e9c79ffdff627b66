// Live curves: AID Schedule's coefficients (frames as points on t in [0, 1]) and Spatial-Temporal Weights' per-step
// weight curves, redrawn as their widgets change, before any run. The numbers come from the nodes' own Python
// (POST /aid/preview/schedule and /aid/preview/weights), so the drawing is what the node will compute.
import { app } from "../../../scripts/app.js";
import { PALETTE, addCanvasWidget, latest, plotFrame, preview, value, watch } from "./aid_common.js";
import { chainNames } from "./aid_regions.js";

const SCHEDULE_WIDGETS = ["frames", "curve", "alpha", "beta", "custom"];
const WEIGHT_WIDGETS = ["mode", "weight", "start_weight", "end_weight", "knots"];

function drawSchedule(editor, state) {
  const [ctx, w, h] = editor.context();
  ctx.clearRect(0, 0, w, h);
  const pad = 8, strip = 18;
  const [px, py] = plotFrame(ctx, pad, pad, w - 2 * pad, h - 2 * pad - strip - 12,
    { xLabel: "frame f / (F - 1)", yLabel: "t" });
  const values = state.coefficients || [];
  if (values.length) {
    const last = values.length - 1;
    ctx.strokeStyle = "#6cf";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    values.forEach((t, f) => (f ? ctx.lineTo(px(f / last), py(t)) : ctx.moveTo(px(f / last), py(t))));
    ctx.stroke();
    ctx.fillStyle = "#fff";
    values.forEach((t, f) => { ctx.beginPath(); ctx.arc(px(f / last), py(t), 2.5, 0, 2 * Math.PI); ctx.fill(); });
    // The frames as points on the coefficient axis t in [0, 1]: where each frame sits between A and B.
    const sy = h - pad - strip / 2;
    ctx.strokeStyle = "#888";
    ctx.beginPath(); ctx.moveTo(px(0), sy); ctx.lineTo(px(1), sy); ctx.stroke();
    values.forEach((t, f) => {
      ctx.fillStyle = f === 0 || f === last ? "#fc6" : "#6cf";
      ctx.beginPath(); ctx.arc(px(t), sy, f === 0 || f === last ? 4 : 3, 0, 2 * Math.PI); ctx.fill();
    });
    ctx.fillStyle = "#ccc";
    ctx.font = "10px sans-serif";
    ctx.textBaseline = "middle";
    ctx.fillText("A", px(0) - 1, sy - 9);
    ctx.fillText("B", px(1) - 6, sy - 9);
    ctx.fillText(state.describe || "", px(0) + 14, pad + 8);
  }
  editor.message.textContent = state.error || "";
}

function drawWeights(editor, state) {
  const [ctx, w, h] = editor.context();
  ctx.clearRect(0, 0, w, h);
  const series = state.series || [];
  const top = Math.max(1, ...series.flatMap((s) => s.y));
  const pad = 8;
  const [px, py] = plotFrame(ctx, pad, pad, w - 2 * pad, h - 2 * pad - 12,
    { yMax: top, xLabel: "schedule percent (0 = start of denoising)", yLabel: "w" });
  series.forEach((s, i) => {
    ctx.strokeStyle = PALETTE[i % PALETTE.length];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.x.forEach((x, j) => (j ? ctx.lineTo(px(x), py(s.y[j])) : ctx.moveTo(px(x), py(s.y[j]))));
    ctx.stroke();
    ctx.fillStyle = ctx.strokeStyle;
    ctx.font = "10px sans-serif";
    ctx.fillText(s.name, px(0) + 40, pad + 14 + 12 * i);
  });
  editor.message.textContent = state.error || "";
}

/** Attach a live preview to `node`: the route, the body it is sent (redrawn whenever that changes), the drawing. */
function attachPreview(node, { name, height, route, body, draw }) {
  const editor = addCanvasWidget(node, name, height);
  const state = { coefficients: null, series: null, error: "", requests: 0, answers: 0 };
  node.aidEditor = { editor, state, redraw: () => draw(editor, state) };
  const ask = latest((payload) => preview(route, payload));
  const update = async () => {
    const payload = body(node);
    state.requests += 1;
    const answer = await ask(payload);
    if (answer === undefined) return;
    state.answers += 1;
    state.error = answer.ok ? "" : answer.error?.message || "no preview";
    if (answer.ok) Object.assign(state, answer);
    state.payload = payload;
    draw(editor, state);
  };
  watch(node, () => JSON.stringify(body(node)), update, editor.canvas);
  const size = node.computeSize?.();
  if (size) node.setSize([Math.max(node.size[0], size[0]), Math.max(node.size[1], size[1])]);
}

app.registerExtension({
  name: "aid.curves",
  nodeCreated(node) {
    const type = node.comfyClass ?? node.constructor?.comfyClass;
    if (type === "AIDSchedule") {
      attachPreview(node, {
        name: "aid_schedule_curve", height: 170, route: "schedule", draw: drawSchedule,
        body: (n) => Object.fromEntries(SCHEDULE_WIDGETS.map((k) => [k, value(n, k, k === "custom" ? "" : 0)])),
      });
    } else if (type === "AIDSpatialTemporalWeights") {
      attachPreview(node, {
        name: "aid_weight_curves", height: 160, route: "weights", draw: drawWeights,
        body: (n) => ({ ...Object.fromEntries(WEIGHT_WIDGETS.map((k) => [k, value(n, k, k === "knots" || k === "mode"
          ? "" : 0)])), names: chainNames(n, "regions") }),
      });
    }
  },
});
