"""The editor widgets (web/js/) in a real browser: headless Debian chromium driven by Python playwright, against
the ComfyUI frontend a real test server serves with the pack loaded. No mock of the frontend: nodes are made with
LiteGraph.createNode, boxes drawn with mouse events, the API prompt read through the frontend's app.graphToPrompt().

Needs `apt-get install -y chromium` (Debian's package) and `pip install playwright` (never `playwright install`:
the tests launch /usr/bin/chromium). Screenshots of each widget go to a pytest tmp dir (printed at the end)."""
import json
import re
import shutil
import time
from pathlib import Path

import pytest

from aid_harness import host

REPO = Path(__file__).resolve().parent.parent
PACK_URL = f"/extensions/{host.PACK_FOLDER_NAME}/"
INSTALL = ("the browser tests need Debian's chromium and Python playwright: `apt-get install -y chromium` and "
           "`pip install playwright` (no `playwright install`: they launch /usr/bin/chromium)")
GRID = 8

pytestmark = pytest.mark.server


def chromium_path():
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser_page(comfy, tmp_path_factory):
    """(page, server, log): one chromium page on the test server's editor, its console and failed requests."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(INSTALL + " (playwright is missing)")
    executable = chromium_path()
    if executable is None:
        pytest.skip(INSTALL + " (chromium is missing)")
    from aid_harness.runner import ServerRunner

    from aid_harness import models
    from aid_harness.distributed import distributed_snapshot, make_participant_base

    base = tmp_path_factory.mktemp("frontend-host")
    # ComfyUI-Distributed too where this machine has its snapshot: aid_distributed.json uses its nodes.
    make_participant_base(base) if distributed_snapshot() else host.make_base_directory(base)
    host.make_base_directory(base, {"checkpoints": [models.ensure_sd15_checkpoint("tiny")]})  # for a real run
    settings = base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))  # no template browser over the canvas
    log = {"console": [], "failed": []}
    with ServerRunner(comfy["root"], base) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda m: log["console"].append({"type": m.type, "text": m.text,
                                                              "url": (m.location or {}).get("url", "")}))
        page.on("pageerror", lambda e: log["console"].append({"type": "pageerror", "text": f"{e}\n{e.stack}",
                                                               "url": ""}))
        page.on("response", lambda r: r.status >= 400 and log["failed"].append(f"{r.status} {r.url}"))
        page.goto(server.url)
        page.wait_for_function("window.comfyAPI?.app?.app?.graph && window.LiteGraph && "
                               "window.comfyAPI.app.app.extensions.some(e => e.name === 'aid.regions') && "
                               "LiteGraph.registered_node_types['AIDKeyframeSampler'] && window.comfyAPI.app.app.canvas",
                               timeout=120_000)
        yield page, server, log
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frontend-screenshots")
    yield folder
    print(f"\nscreenshots of the editor widgets: {folder}")


# The node help asks for docs/<NodeId>/<locale>.md first and falls back to docs/<NodeId>.md (the pack's pages).
LOCALE_PROBE = re.compile(re.escape(PACK_URL) + r"docs/\w+/[\w-]+\.md$")


def pack_errors(log) -> list:
    """Console errors raised by the pack's scripts, and failed requests to its files or routes."""
    mine = [entry["text"] for entry in log["console"] if entry["type"] in ("error", "pageerror")
            and (PACK_URL in entry["url"] or PACK_URL in entry["text"] or "/aid/preview" in entry["text"])
            and not LOCALE_PROBE.search(entry["url"])]
    return mine + [url for url in log["failed"] if (PACK_URL in url or "/aid/preview" in url)
                   and not LOCALE_PROBE.search(url.split(" ", 1)[-1])]


@pytest.fixture()
def page(browser_page):
    page, server, log = browser_page
    page.evaluate("() => { const app = window.comfyAPI.app.app; app.graph.clear(); app.canvas.ds.offset = [0, 100];"
                  " app.canvas.ds.scale = 1; app.canvas.setDirty(true, true); }")
    start = len(log["console"]), len(log["failed"])
    yield page
    fresh = {"console": log["console"][start[0]:], "failed": log["failed"][start[1]:]}
    assert pack_errors(fresh) == []


def add_node(page, node_type, pos=(80, 80), widgets=None, editor=True) -> int:
    """Make a node of `node_type` at `pos` (canvas units), set widget values, wait for its editor; returns its id."""
    node_id = page.evaluate("""([type, pos, widgets]) => {
        const app = window.comfyAPI.app.app;
        const node = LiteGraph.createNode(type); node.pos = pos; app.graph.add(node);
        for (const [name, v] of Object.entries(widgets)) node.widgets.find(w => w.name === name).value = v;
        app.canvas.setDirty(true, true); return node.id; }""", [node_type, list(pos), widgets or {}])
    if editor:
        wait_answered(page, node_id)
    return node_id


def node_eval(page, node_id, body, arg=None):
    """Evaluate `body` (a JS function body with `node`, `app` and `arg` in scope) for node `node_id`."""
    return page.evaluate("([id, arg]) => { const app = window.comfyAPI.app.app; const node = app.graph.getNodeById(id);"
                         f" {body} }}", [node_id, arg])


def wait_answered(page, node_id, condition="true", timeout=15_000):
    """Wait until the node's editor has drawn from its current widgets (and `condition` holds for its state)."""
    page.wait_for_function(f"""(id) => {{ const app = window.comfyAPI.app.app; const node = app.graph.getNodeById(id);
        const e = node?.aidEditor; if (!e) return false; app.canvas.setDirty(true, true);
        const r = e.editor.canvas.getBoundingClientRect(); const state = e.state;
        return r.width > 10 && (state.answers === undefined || state.answers > 0) && ({condition}); }}""",
                           arg=node_id, timeout=timeout)


def set_widget(page, node_id, name, value):
    """Change a widget the way its UI does (value, then its callback)."""
    node_eval(page, node_id, "const w = node.widgets.find(w => w.name === arg[0]); w.value = arg[1];"
                             " w.callback?.(arg[1], app.canvas, node); app.canvas.setDirty(true, true);", [name, value])


def canvas_pixels(page, node_id) -> str:
    return node_eval(page, node_id, "return node.aidEditor.editor.canvas.toDataURL();")


def screenshot(page, node_id, path):
    page.evaluate("() => window.comfyAPI.app.app.canvas.draw(true, true)")
    rect = node_eval(page, node_id, "const [x, y] = app.canvas.ds.convertOffsetToCanvas([node.pos[0], node.pos[1] - "
                                    "LiteGraph.NODE_TITLE_HEIGHT]); const s = app.canvas.ds.scale; const r = "
                                    "app.canvas.canvas.getBoundingClientRect(); return [r.left + x, r.top + y, "
                                    "node.size[0] * s, (node.size[1] + LiteGraph.NODE_TITLE_HEIGHT) * s];")
    page.screenshot(path=str(path), clip={"x": max(rect[0] - 4, 0), "y": max(rect[1] - 4, 0),
                                          "width": rect[2] + 8, "height": rect[3] + 8})


def prompt_inputs(page, node_id) -> dict:
    """The node's inputs in the API prompt the frontend would queue (app.graphToPrompt)."""
    return page.evaluate("async (id) => (await window.comfyAPI.app.app.graphToPrompt()).output[id].inputs",
                         str(node_id))


# --- AID Schedule and the weight curves -------------------------------------------------------------------------

def test_the_schedule_curve_follows_alpha_before_any_run(page, browser_page, comfy, shots):
    from aid_pack.samplers.sequence.schedule import make_schedule

    node = add_node(page, "AIDSchedule", widgets={"frames": 7, "curve": "beta", "alpha": 4.0, "beta": 4.0})
    state = node_eval(page, node, "return node.aidEditor.state;")
    assert state["coefficients"] == list(make_schedule(7, "beta", 4.0, 4.0).coefficients)
    before = canvas_pixels(page, node)
    screenshot(page, node, shots / "schedule_alpha_4.png")
    set_widget(page, node, "alpha", 9.0)
    wait_answered(page, node, "state.payload.alpha === 9")
    state = node_eval(page, node, "return node.aidEditor.state;")
    assert state["coefficients"] == list(make_schedule(7, "beta", 9.0, 4.0).coefficients)
    assert state["coefficients"][3] > 0.6  # alpha > beta leans toward B
    assert canvas_pixels(page, node) != before
    screenshot(page, node, shots / "schedule_alpha_9.png")
    set_widget(page, node, "curve", "custom")
    set_widget(page, node, "custom", "0, 0.5, 0.4, 1")
    wait_answered(page, node, "state.payload.custom === '0, 0.5, 0.4, 1'")
    message = node_eval(page, node, "return node.aidEditor.editor.message.textContent;")
    assert "strictly increase" in message
    server = browser_page[1]
    assert server.get("/history") == {}  # nothing ran


def test_the_weight_curves_follow_the_knots(page, shots):
    node = add_node(page, "AIDSpatialTemporalWeights", widgets={"mode": "linear ramp", "start_weight": 1.0,
                                                                "end_weight": 0.0})
    series = node_eval(page, node, "return node.aidEditor.state.series;")
    assert series[0]["y"][0] == 1.0 and series[0]["y"][-1] == 0.0
    set_widget(page, node, "mode", "knots")
    set_widget(page, node, "knots", "0:0.2, 1:0.2\ndog = 0:1, 0.5:0, 1:1")
    wait_answered(page, node, "state.payload.mode === 'knots' && state.payload.knots.includes('dog')")
    series = node_eval(page, node, "return node.aidEditor.state.series;")
    assert [s["name"] for s in series] == ["default", "dog"] and series[1]["y"][10] == 0.0
    screenshot(page, node, shots / "weights_knots.png")


# --- AID Keyframes ----------------------------------------------------------------------------------------------

def test_the_keyframe_timeline_and_an_error_on_the_node(page, shots):
    node = add_node(page, "AIDKeyframes", pos=(80, 80))
    timeline = node_eval(page, node, "return node.aidEditor.state.timeline;")
    assert [k["frame"] for k in timeline["keys"]] == [0, 14, 26, 38] and timeline["frames"] == 39
    screenshot(page, node, shots / "keyframes_timeline.png")
    # Typed into the node's own text box, as a user would.
    textarea = page.evaluate_handle("(id) => window.comfyAPI.app.app.graph.getNodeById(id).widgets"
                                    ".find(w => w.name === 'text').element", node)
    textarea.as_element().fill("0: a fox\n12: an owl\n6: a wolf")
    wait_answered(page, node, "state.payload.text === '0: a fox\\n12: an owl\\n6: a wolf'")
    state = node_eval(page, node, "return node.aidEditor.state;")
    assert state["error"] and state["error"]["line"] == 3, json.dumps(state)[:3000]
    message = page.locator(".aid-editor-message").filter(has_text="line 3")
    message.wait_for(state="visible", timeout=10_000)  # the DOM widget shows once the graph canvas has drawn it
    assert message.count() == 1
    assert "not after the key before it" in message.text_content()
    screenshot(page, node, shots / "keyframes_error.png")
    textarea.as_element().fill("0: a fox\n12: an owl")
    wait_answered(page, node, "state.payload.text === '0: a fox\\n12: an owl'")
    assert node_eval(page, node, "return node.aidEditor.editor.message.textContent;") == ""


def test_the_timeline_reads_total_frames_and_loop_from_the_sampler(page, shots):
    node = add_node(page, "AIDKeyframes", pos=(80, 80), widgets={"text": "0: a\n8: b"})
    sampler = add_node(page, "AIDKeyframeSampler", pos=(600, 80), editor=False)
    node_eval(page, node, "const s = app.graph.getNodeById(arg); node.connect(0, s, s.inputs.findIndex("
                          "i => i.name === 'keyframes'));", sampler)
    set_widget(page, sampler, "loop", True)
    set_widget(page, sampler, "total_frames", 16)
    wait_answered(page, node, "state.payload.loop === true && state.payload.total_frames === 16")
    timeline = node_eval(page, node, "return node.aidEditor.state.timeline;")
    assert timeline["loop"] is True and timeline["frames"] == 16
    assert timeline["segments"][1]["frames"] == list(range(9, 16))
    screenshot(page, node, shots / "keyframes_loop.png")


# --- the region editor ------------------------------------------------------------------------------------------

def editor_point(page, node_id, x, y):
    """Screen coordinates of image pixel (x, y) of the node's region canvas."""
    return node_eval(page, node_id, """const c = node.aidEditor.editor.canvas; const r = c.getBoundingClientRect();
        const f = node.aidEditor.state.fit; const sx = r.width / c.clientWidth, sy = r.height / c.clientHeight;
        return [r.left + (f.ox + arg[0] * f.scale) * sx, r.top + (f.oy + arg[1] * f.scale) * sy];""", [x, y])


def drag(page, node_id, start, end, steps=8):
    page.mouse.move(*editor_point(page, node_id, *start))
    page.mouse.down()
    page.mouse.move(*editor_point(page, node_id, *end), steps=steps)
    page.mouse.up()


def own_boxes(page, node_id):
    return node_eval(page, node_id, "node.aidEditor.redraw(); return node.aidEditor.state.boxes;")


def test_drawing_a_box_writes_the_region_widgets_and_the_api_prompt(page, shots):
    node = add_node(page, "AIDSpatialTemporalRegion", widgets={"description": "a red cup", "canvas_width": 512,
                                                               "canvas_height": 768, "x": 0.75, "y": 0.75,
                                                               "width": 0.125, "height": 0.125})
    assert node_eval(page, node, "return node.aidEditor.state.canvas;") == [512, 768]
    drag(page, node, (64 + 1, 128 - 1), (304 - 1, 400 + 2))  # off-grid by a pixel or two: snapped to 8
    widgets = node_eval(page, node, "return Object.fromEntries(node.widgets.map(w => [w.name, w.value]));")
    expected = {"x": 64 / 512, "y": 128 / 768, "width": 240 / 512, "height": 272 / 768}
    assert {k: widgets[k] for k in expected} == {k: round(v, 6) for k, v in expected.items()}
    inputs = prompt_inputs(page, node)
    assert {k: inputs[k] for k in expected} == {k: round(v, 6) for k, v in expected.items()}
    assert "aid_region_editor" not in inputs  # the canvas is no input of the prompt
    screenshot(page, node, shots / "region_drawn.png")
    # Drag the box by (+40, +80) image pixels: it keeps its size, snapped.
    drag(page, node, (150, 250), (190, 330))
    inputs = prompt_inputs(page, node)
    assert (inputs["x"], inputs["y"]) == (round(104 / 512, 6), round(208 / 768, 6))
    assert (inputs["width"], inputs["height"]) == (round(240 / 512, 6), round(272 / 768, 6))
    # Resize from the bottom-right corner (344, 480) to (400, 512).
    drag(page, node, (344, 480), (400, 512))
    inputs = prompt_inputs(page, node)
    assert (inputs["width"], inputs["height"]) == (round(296 / 512, 6), round(304 / 768, 6))


def test_pixel_units_get_pixels(page):
    node = add_node(page, "AIDSpatialTemporalRegion", widgets={"units": "pixels", "x": 0, "y": 0, "width": 100,
                                                               "height": 100})
    drag(page, node, (200, 48), (328, 256))
    inputs = prompt_inputs(page, node)
    assert [inputs[k] for k in ("x", "y", "width", "height")] == [200, 48, 128, 208]


def test_editing_a_widget_redraws_the_canvas(page, shots):
    node = add_node(page, "AIDSpatialTemporalRegion", widgets={"x": 0.0, "y": 0.0, "width": 0.25, "height": 0.25})

    def probe(x, y):  # the canvas pixel at image pixel (x, y) of the 512 x 512 canvas
        return node_eval(page, node, """const e = node.aidEditor; const f = e.state.fit; const c = e.editor.canvas;
            const ratio = c.width / c.clientWidth; const d = c.getContext('2d').getImageData(
            Math.round((f.ox + arg[0] * f.scale) * ratio), Math.round((f.oy + arg[1] * f.scale) * ratio), 1, 1).data;
            return Array.from(d);""", [x, y])

    empty = probe(390, 390)
    inside = probe(70, 70)
    assert inside != empty
    set_widget(page, node, "x", 0.6)
    set_widget(page, node, "y", 0.6)
    wait_answered(page, node, "state.boxes[0].x === 0.6 && state.boxes[0].y === 0.6")
    assert probe(390, 390) == inside and probe(70, 70) == empty
    screenshot(page, node, shots / "region_after_widget_edit.png")


def test_chained_regions_show_their_own_box_bright_and_the_others_dimmed(page, shots):
    first = add_node(page, "AIDSpatialTemporalRegion", pos=(40, 60), widgets={"description": "cat", "width": 0.4})
    second = add_node(page, "AIDSpatialTemporalRegion", pos=(520, 60),
                      widgets={"description": "dog", "x": 0.5, "width": 0.5})
    node_eval(page, first, "const s = app.graph.getNodeById(arg); node.connect(0, s, s.inputs.findIndex("
                           "i => i.name === 'regions'));", second)
    wait_answered(page, second, "state.boxes.length === 2")
    for node, mine in ((first, "cat"), (second, "dog")):
        boxes = own_boxes(page, node)
        assert [(b["name"], b["own"]) for b in boxes] == [("cat", mine == "cat"), ("dog", mine == "dog")]
    screenshot(page, second, shots / "regions_chained.png")
    # Drawing on the second node's canvas changes only the second node.
    drag(page, second, (16, 16), (96, 96))
    assert prompt_inputs(page, second)["width"] == round(80 / 512, 6)
    assert prompt_inputs(page, first)["width"] == 0.4


def test_typed_layout_draw_adds_a_line_and_double_click_deletes_it(page, shots):
    node = add_node(page, "AIDSpatialTemporalTypedLayout", widgets={"layout": "# two pets\ncat: 0.03, 0.2, 0.44, 0.6"})
    drag(page, node, (320, 64), (448, 192))
    layout = prompt_inputs(page, node)["layout"]
    assert layout == "# two pets\ncat: 0.03, 0.2, 0.44, 0.6\nobject 2: 0.625, 0.125, 0.25, 0.25"
    drag(page, node, (40, 200), (80, 200))  # move the cat right by 40 px: snapped to 8 px (0.03 -> 0.03125 + 0.078125)
    assert prompt_inputs(page, node)["layout"].splitlines()[1] == "cat: 0.109375, 0.203125, 0.4375, 0.59375"
    screenshot(page, node, shots / "typed_layout.png")
    page.mouse.dblclick(*editor_point(page, node, 384, 128))
    assert prompt_inputs(page, node)["layout"] == "# two pets\ncat: 0.109375, 0.203125, 0.4375, 0.59375"
    page.mouse.click(*editor_point(page, node, 120, 250))  # select the cat, then Delete: the line goes, the node stays
    page.keyboard.press("Delete")
    assert prompt_inputs(page, node)["layout"] == "# two pets"


def test_auto_layout_shows_its_run_and_copies_it_into_a_typed_layout(page, shots, sd15_tiny):
    from aid_pack.nodes.layout import SpatialTemporalAutoLayout

    prompt = "a photo of a cat to the left of a dog"
    ui = SpatialTemporalAutoLayout().build(sd15_tiny[1], prompt)["ui"]  # the node's own UI output
    node = add_node(page, "AIDSpatialTemporalAutoLayout", widgets={"prompt": prompt})
    assert node_eval(page, node, "return node.aidEditor.state.boxes.length;") == 0
    node_eval(page, node, "node.onExecuted(arg);", {"text": ui["text"]})  # what the frontend calls on 'executed'
    boxes = own_boxes(page, node)
    assert [b["name"] for b in boxes] == ["cat", "dog"] and all(b["own"] for b in boxes)
    screenshot(page, node, shots / "auto_layout.png")
    typed = node_eval(page, node, "const b = node.widgets.find(w => w.type === 'button'); b.callback(); "
                                  "return app.graph.nodes.find(n => n.type === 'AIDSpatialTemporalTypedLayout').id;")
    assert prompt_inputs(page, typed)["layout"] == ui["text"][0].split("\nnote:")[0]
    assert "copy layout" not in json.dumps(prompt_inputs(page, node))


@pytest.mark.slow
def test_auto_layout_boxes_appear_after_a_real_run_queued_from_the_editor(page, shots):
    """Queued with the frontend's own app.queuePrompt: the server runs Auto Layout on the tiny SD1.5's CLIP and the
    frontend hands the node its UI output ('executed'), which the editor draws."""
    from aid_harness import models
    from aid_pack.samplers.regions.prompt_layout import format_layout, parse_prompt

    prompt = "a photo of a red cup on the left and a blue vase on the right"
    checkpoint = add_node(page, "CheckpointLoaderSimple", pos=(20, 60), editor=False,
                          widgets={"ckpt_name": models.ensure_sd15_checkpoint("tiny").name})
    node = add_node(page, "AIDSpatialTemporalAutoLayout", pos=(380, 60), widgets={"prompt": prompt})
    shown = add_node(page, "PreviewAny", pos=(800, 60), editor=False)
    node_eval(page, node, "const c = app.graph.getNodeById(arg[0]), s = app.graph.getNodeById(arg[1]);"
                          "c.connect(1, node, node.inputs.findIndex(i => i.name === 'clip'));"
                          "node.connect(2, s, 0);", [checkpoint, shown])
    page.evaluate("() => window.comfyAPI.app.app.queuePrompt(0, 1)")
    page.wait_for_function("(id) => window.comfyAPI.app.app.graph.getNodeById(id).aidAutoLayout != null",
                           arg=node, timeout=300_000)
    expected = format_layout(parse_prompt(prompt).placed())
    assert expected.count("\n") == 1  # two objects placed
    boxes = own_boxes(page, node)
    assert "\n".join(f"{b['name']}: {b['x']:.3g}, {b['y']:.3g}, {b['w']:.3g}, {b['h']:.3g}" for b in boxes) == expected
    screenshot(page, node, shots / "auto_layout_after_run.png")


# --- example workflows ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_every_example_workflow_loads_without_missing_nodes_or_pack_errors(browser_page, shots):
    import aid_pack
    from aid_harness.distributed import distributed_snapshot
    from aid_harness.example_workflows import PEER_PACKS

    pack_nodes = set(aid_pack.NODE_CLASS_MAPPINGS)
    page, _, log = browser_page
    start = len(log["console"]), len(log["failed"])
    loaded = {}
    for path in sorted((REPO / "example_workflows").glob("*.json")):
        result = page.evaluate("""async (graph) => { const app = window.comfyAPI.app.app;
            await app.loadGraphData(graph, true, true, null, {showMissingNodesDialog: false,
                                                               showMissingModelsDialog: false});
            await new Promise(r => setTimeout(r, 400)); app.canvas.setDirty(true, true);
            const missing = app.graph.nodes.filter(n => !LiteGraph.registered_node_types[n.type]).map(n => n.type);
            const editors = app.graph.nodes.filter(n => n.aidEditor).map(n => n.type);
            return {nodes: app.graph.nodes.length, missing, editors}; }""", json.loads(path.read_text()))
        loaded[path.stem] = result
        peers_absent = path.name in PEER_PACKS and distributed_snapshot() is None
        missing = [name for name in result["missing"] if not (peers_absent and name not in pack_nodes)]
        assert missing == [], path.name
        assert result["nodes"] > 0
        page.screenshot(path=str(shots / f"workflow_{path.stem}.png"))
    time.sleep(1)
    fresh = {"console": log["console"][start[0]:], "failed": log["failed"][start[1]:]}
    assert pack_errors(fresh) == []
    assert any(result["editors"] for result in loaded.values())


# --- node help --------------------------------------------------------------------------------------------------

def test_the_node_help_opens_from_the_node(page, browser_page, shots):
    """The selection toolbox's info button shows web/docs/<NodeId>.md (tools/node_help.py) in the node library."""
    log = browser_page[2]
    node = add_node(page, "AIDSchedule", pos=(300, 200))
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    node_eval(page, node, "app.canvas.deselectAll?.(); app.canvas.selectNode(node); app.canvas.setDirty(true, true);")
    page.locator('[data-testid="info-button"]').first.click(timeout=10_000)
    help_text = page.get_by_text("Interpolation coefficients of an F-frame sequence, both endpoints included.").first
    help_text.wait_for(state="visible", timeout=10_000)
    assert any(url.endswith(f"{PACK_URL}docs/AIDSchedule.md") for url in requested)
    assert not [url for url in log["failed"] if "AIDSchedule.md" in url]
    page.screenshot(path=str(shots / "node_help.png"))


LAYOUT_CASES = ["cat: 0.03, 0.2, 0.44, 0.6\ndog: 0.53 0.2 0.44 0.6", "# pets\n\n  big   cat :0,0,1,1  ",
                "a: b: 0.1, 0.1, 0.5, 0.5", "cat 0.1, 0.1, 0.5, 0.5", "cat: 0.1, 0.1, 0.5", "cat: 0.1, 0.1, 0, 0.5",
                "cat: 1, 0, 0.5, 0.5", "cat: -0.5, 0, 0.6, 0.5", "cat: 0.1, x, 0.5, 0.5", "ok: 0,0,.5,.5\nbad"]


def test_the_editor_reads_a_typed_layout_as_the_node_does(page):
    """web/js/aid_regions.js parseLayout against samplers/regions/prompt_layout.py parse_layout_text, same cases."""
    from aid_pack.samplers.regions.prompt_layout import LayoutTextError, parse_layout_text

    answers = page.evaluate(f"""async (cases) => {{ const m = await import('{PACK_URL}js/aid_regions.js');
        return cases.map(text => m.parseLayout(text)); }}""", LAYOUT_CASES)
    for text, answer in zip(LAYOUT_CASES, answers):
        try:
            expected, error = parse_layout_text(text), None
        except LayoutTextError as raised:
            expected, error = None, raised
        if error is None:
            assert answer["error"] == "", text
            assert [(b["name"], (b["x"], b["y"], b["w"], b["h"])) for b in answer["boxes"]] == expected, text
        else:
            assert answer["error"].startswith(f"line {error.line}:"), (text, answer, str(error))


def test_weight_curves_know_the_region_names_of_the_connected_layout(page):
    layout = add_node(page, "AIDSpatialTemporalTypedLayout", pos=(40, 60))
    node = add_node(page, "AIDSpatialTemporalWeights", pos=(520, 60), widgets={"mode": "official start (5/N)"})
    node_eval(page, layout, "const s = app.graph.getNodeById(arg); node.connect(0, s, s.inputs.findIndex("
                            "i => i.name === 'regions'));", node)
    wait_answered(page, node, "state.payload.names?.length === 2")
    series = node_eval(page, node, "return node.aidEditor.state.series;")
    assert series[0]["name"] == "each of 2" and set(series[0]["y"]) == {2.5}
    set_widget(page, node, "mode", "knots")
    set_widget(page, node, "knots", "0:0.5\nbird = 0:1")
    wait_answered(page, node, "state.payload.knots.includes('bird')")
    assert "no region is described as bird" in node_eval(page, node,
                                                         "return node.aidEditor.editor.message.textContent;")
