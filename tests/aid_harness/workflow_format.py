"""Convert a ComfyUI UI-format workflow (what the editor saves) into an API-format prompt.

The UI format (schema version 0.4: ``nodes``, ``links``, ``widgets_values`` ...) is what
``example_workflows/*.json`` must hold; the API format (``{"<id>": {"class_type", "inputs",
"_meta"}}``) is what ``POST /prompt`` and ``execution.PromptExecutor`` take.  The frontend
does this conversion in ``graphToPrompt`` (Comfy-Org/ComfyUI_frontend
``src/utils/executionUtil.ts``) on a live graph; this module re-implements the same rules
on the JSON, against node definitions in the format of ``GET /object_info``.  The rules
follow the frontend that ComfyUI 0.3.75 pins (comfyui-frontend-package 1.32.9); they were
read from its source and from the bundle that package ships:

* Widgets of a node (``widgets_values`` order).  Inputs are taken in ``input_order``
  (required, then optional, then any input an extension added); an input is a widget when
  its type (V3 ``widgetType`` first) is a widget type (INT, FLOAT, BOOLEAN, STRING, COMBO -
  a list of options or ``"COMBO"`` - and a few frontend types) and it has no
  ``forceInput``; ``defaultInput`` on an optional input counts as ``forceInput`` (on a
  required input it is ignored); ``rawLink`` and ``socketless`` change nothing here.
  Widgets the frontend adds after an input's own widget:

  - INT: a ``control_after_generate`` combo ("fixed"/"increment"/"decrement"/"randomize")
    when the option is set, or - only when the option is absent - when the input is named
    ``seed`` or ``noise_seed``;
  - COMBO with ``control_after_generate``: that control plus a ``control_filter_list``
    text widget (two extra values);
  - COMBO with ``remote``: an "Auto-refresh after generation" toggle, and a "refresh"
    button when ``remote.refresh_button`` is set;
  - the first required combo with ``image_upload``/``video_upload``/
    ``animated_image_upload``: an ``upload`` button (value ``"image"``) after the node's
    other required inputs; the combo's value is shown with `` [output]`` etc. appended when
    ``image_folder`` is not ``input``;
  - ``audio_upload`` (input ``audio``) and the audio nodes: an ``audioUI`` player (not in
    ``widgets_values``, sent as ``""``) and an ``upload`` button;
  - SaveGLB / Preview3D: an ``image`` 3D-preview widget (value always ``""``); PreviewAny: a
    ``preview`` text widget (not in ``widgets_values``, sent as ``""``).

  Control widgets, filter lists, toggles and upload buttons are saved in ``widgets_values``
  but are not sent (``options.serialize === false``); the refresh button *is* sent
  (``"refresh": "refresh"``), as the frontend does.
* Values are assigned to widgets by index, skipping widgets that are never saved
  (``widget.serialize === false``, e.g. ``audioUI``); old workflows that saved values for
  ``forceInput`` inputs are migrated the way the frontend does it.
* When sent, STRING widgets with ``dynamicPrompts`` have comments (``/* */``, ``//``)
  stripped and ``{a|b|c}`` choices picked at random; ``filename_prefix`` of the save nodes
  has ``%date:yyyy-MM-dd%`` and ``%Node.widget%`` replaced.  A list value is sent as
  ``{"__value__": [...]}``.
* Inputs: the node's input slots are its sockets in input order, then one socket per
  widget; an input slot with a link becomes ``[str(origin_id), origin_slot]`` and replaces
  the widget value of the same name (old-style converted widgets and new-style widget
  sockets are both just inputs with a ``link``).  Links are followed through Reroute
  nodes; a link from a bypassed node (mode 4) is followed into that node's input slot of
  the same index when its type fits, else its first input of exactly the same type, else
  its first compatible input (an unconnected one drops the link, so the widget value
  stays); PrimitiveNode is not followed: its value is written into the target widget.
* Nodes: Reroute, Note, MarkdownNote and PrimitiveNode are virtual (not sent); muted
  (mode 2) and bypassed (mode 4) nodes are not sent; any input still linked to a node that
  is not sent is removed (including a widget's value: the link had replaced it).
* ``_meta.title`` is the node's title: the saved ``title``, else the class display name.

Not supported (a WorkflowFormatError says so): subgraphs, group nodes, and nodes whose
widgets need the browser (webcam capture, Load3D, audio recording).

Public API: :func:`ui_to_api`, :func:`ui_file_to_api`, :func:`load_ui_workflow`,
:func:`object_info_from_loaded_nodes`, :func:`widgets_values_layout`,
:func:`check_api_prompt`, :class:`WorkflowFormatError`.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import logging
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = [
    "WorkflowFormatError",
    "VIRTUAL_NODE_TYPES",
    "object_info_from_loaded_nodes",
    "load_ui_workflow",
    "ui_to_api",
    "ui_file_to_api",
    "widgets_values_layout",
    "check_api_prompt",
]

log = logging.getLogger(__name__)


class WorkflowFormatError(ValueError):
    """A UI workflow that cannot be converted; the message names the node id and type."""


#: Frontend-only node types: never sent to the backend.
VIRTUAL_NODE_TYPES = frozenset({"Reroute", "Note", "MarkdownNote", "PrimitiveNode"})

MODE_ALWAYS = 0
MODE_NEVER = 2  # "muted"
MODE_BYPASS = 4

# Widget types the 1.32 frontend registers (ComfyWidgets plus the core extensions' custom
# widgets).  An input whose type is one of these gets a widget, anything else a socket.
_SIMPLE_WIDGET_TYPES = {"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO", "MARKDOWN", "COLOR", "TEXTAREA"}
_EXTRA_WIDGET_TYPES = {"IMAGEUPLOAD", "AUDIOUPLOAD", "AUDIO_UI", "PREVIEW_3D"}
_UNSUPPORTED_WIDGET_TYPES = {
    "WEBCAM": "the webcam widget captures and uploads an image in the browser",
    "LOAD_3D": "the Load3D widget renders and uploads images in the browser",
    "AUDIO_RECORD": "the audio recorder uploads a recording from the browser",
    "IMAGECOMPARE": "image-compare widget",
    "CHART": "chart widget",
    "GALLERIA": "gallery widget",
}
_WIDGET_TYPES = _SIMPLE_WIDGET_TYPES | _EXTRA_WIDGET_TYPES | set(_UNSUPPORTED_WIDGET_TYPES)

_AUDIO_UI_NODES = {"LoadAudio", "SaveAudio", "PreviewAudio", "SaveAudioMP3", "SaveAudioOpus"}
# Comfy.SaveImageExtraOutput: %...% replacement in filename_prefix when queued.
_TEXT_REPLACE_NODES = {
    "SaveImage", "SaveVideo", "SaveAnimatedWEBP", "SaveWEBM", "SaveAudio", "SaveGLB",
    "SaveAnimatedPNG", "CLIPSave", "VAESave", "ModelSave", "LoraSave", "SaveLatent",
}
_CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
_PRIMITIVE_REPLACE_PROPERTY = "Run widget replace on values"

_UNDEFINED = object()  # a JS `undefined` value: the key is left out of the prompt


# --------------------------------------------------------------------------- node layout


@dataclass
class _Widget:
    name: str
    default: Any
    to_api: bool = True       # False: options.serialize === false (not in the prompt)
    in_values: bool = True    # False: widget.serialize === false (not in widgets_values)
    settable: bool = True     # False: the saved value is ignored (DOM widgets without a setter)
    dynamic_prompts: bool = False
    text_replace: bool = False
    upload_folder: str | None = None  # media combo with an upload button: its image_folder
    allow_batch: bool = False


@dataclass
class _Slot:
    name: str
    type: str
    widget: str | None = None  # widget sockets: the widget's name
    link: Any = None


@dataclass
class _Layout:
    class_type: str
    title: str
    widgets: list[_Widget]
    inputs: list[_Slot]
    outputs: list[str]
    legacy_inputs: list[tuple[str, dict]]  # (name, options) in V2 order, for the migration
    unsupported: str | None = None


def _is_combo(spec_type: Any) -> bool:
    return isinstance(spec_type, (list, tuple)) or spec_type == "COMBO"


def _spec_parts(spec: Any) -> tuple[Any, dict]:
    if isinstance(spec, (list, tuple)) and spec:
        opts = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
        return spec[0], dict(opts)
    if isinstance(spec, str):
        return spec, {}
    return None, {}


def _v2_type(spec_type: Any) -> str:
    if _is_combo(spec_type):
        return "COMBO"
    return spec_type if isinstance(spec_type, str) else "UNKNOWN"


def _combo_default(spec_type: Any, opts: Mapping) -> Any:
    # getDefaultValue: default when truthy, else the first option, else a placeholder.
    if opts.get("default"):
        return opts["default"]
    options = list(spec_type) if isinstance(spec_type, (list, tuple)) else list(opts.get("options") or [])
    if options:
        return options[0]
    if opts.get("remote"):
        return "Loading..."
    return _UNDEFINED


def _control_widget_name(opts: Mapping, explicit_name: Any = None) -> str:
    cag = opts.get("control_after_generate")
    if isinstance(explicit_name, str) and explicit_name:
        return explicit_name
    if isinstance(cag, str) and cag:
        return cag
    if opts.get("control_prefix"):
        return f"{opts['control_prefix']} control_after_generate"
    return "control_after_generate"


def _filter_widget_name(opts: Mapping) -> str:
    if isinstance(opts.get("control_filter_list"), str):
        return opts["control_filter_list"]
    if opts.get("control_prefix"):
        return f"{opts['control_prefix']} control_filter_list"
    return "control_filter_list"


def _augment_inputs(class_type: str, node_def: Mapping) -> tuple[dict, dict]:
    """The node's required/optional inputs after the core extensions' beforeRegisterNodeDef."""
    inp = node_def.get("input") or {}
    required = dict(inp.get("required") or {})
    optional = dict(inp.get("optional") or {})
    # Comfy.AudioWidget, then Comfy.UploadAudio (registration order in the bundle).
    if class_type in _AUDIO_UI_NODES:
        required["audioUI"] = ["AUDIO_UI", {}]
    audio = required.get("audio")
    if audio is not None and _spec_parts(audio)[1].get("audio_upload") is True:
        required["upload"] = ["AUDIOUPLOAD", {}]
    # Comfy.SaveGLB / Comfy.Preview3D
    if class_type in ("SaveGLB", "Preview3D"):
        required["image"] = ["PREVIEW_3D"]
    # Comfy.UploadImage: the first required media combo gets an upload button.
    for name, spec in list(required.items()):
        spec_type, opts = _spec_parts(spec)
        if _is_combo(spec_type) and any(
            opts.get(k) is True for k in ("image_upload", "video_upload", "animated_image_upload")
        ):
            required["upload"] = ["IMAGEUPLOAD", {**opts, "imageInputName": name}]
            break
    return required, optional


def _build_layout(class_type: str, node_def: Mapping) -> _Layout:
    required, optional = _augment_inputs(class_type, node_def)
    # transformNodeDefV1ToV2: one dict, required first; an optional input of the same name wins.
    specs: dict[str, dict] = {}
    for is_optional, section in ((False, required), (True, optional)):
        for name, spec in section.items():
            spec_type, opts = _spec_parts(spec)
            if is_optional and opts.get("defaultInput"):
                opts["forceInput"] = True  # ComfyNodeDefImpl: optional defaultInput -> forceInput
            specs[name] = {"name": name, "raw_type": spec_type, "type": _v2_type(spec_type),
                           "opts": opts, "optional": is_optional}
    # getOrderedInputSpecs
    order = node_def.get("input_order")
    if order:
        ordered, seen = [], set()
        for key, want_optional in (("required", False), ("optional", True)):
            for name in order.get(key) or []:
                s = specs.get(name)
                if s is not None and s["optional"] == want_optional and name not in seen:
                    ordered.append(s)
                    seen.add(name)
        ordered += [s for n, s in specs.items() if n not in seen]
    else:
        ordered = list(specs.values())

    def widget_type_of(s: dict) -> str:
        return s["opts"].get("widgetType") or s["type"]

    def is_widget(s: dict) -> bool:
        return widget_type_of(s) in _WIDGET_TYPES and not s["opts"].get("forceInput")

    slots: list[_Slot] = []
    for s in ordered:  # sockets first ...
        if not is_widget(s):
            slots.append(_Slot(s["name"], _slot_type(s)))
    widgets: list[_Widget] = []
    unsupported = None
    upload_spec = None
    for s in ordered:  # ... then the widgets, each with its own socket
        if not is_widget(s):
            continue
        name, opts, wtype = s["name"], s["opts"], widget_type_of(s)
        if wtype in _UNSUPPORTED_WIDGET_TYPES:
            unsupported = unsupported or f"input {name!r} uses a {wtype} widget ({_UNSUPPORTED_WIDGET_TYPES[wtype]})"
            widgets.append(_Widget(name, _UNDEFINED))
        elif wtype == "INT":
            widgets.append(_Widget(name, opts["default"] if opts.get("default") is not None else 0))
            cag = opts.get("control_after_generate")
            if (name in ("seed", "noise_seed")) if cag is None else bool(cag):
                widgets.append(_Widget(_control_widget_name(opts), "randomize", to_api=False))
        elif wtype == "FLOAT":
            widgets.append(_Widget(name, opts["default"] if opts.get("default") is not None else 0))
        elif wtype == "BOOLEAN":
            widgets.append(_Widget(name, opts["default"] if opts.get("default") is not None else False))
        elif wtype == "STRING":
            widgets.append(_Widget(name, opts["default"] if opts.get("default") is not None else "",
                                   dynamic_prompts=opts.get("dynamicPrompts") is True))
        elif wtype in ("MARKDOWN", "TEXTAREA", "COLOR"):
            widgets.append(_Widget(name, opts.get("default") or ""))
        elif wtype == "COMBO":
            if opts.get("multi_select"):
                widgets.append(_Widget(name, []))
            else:
                widgets.append(_Widget(name, _combo_default(s["raw_type"], opts)))
                remote = opts.get("remote")
                if remote:
                    widgets.append(_Widget("Auto-refresh after generation", False, to_api=False))
                    if isinstance(remote, Mapping) and remote.get("refresh_button"):
                        widgets.append(_Widget("refresh", "refresh"))  # no serialize:false
                if opts.get("control_after_generate"):
                    widgets.append(_Widget(_control_widget_name(opts), "randomize", to_api=False))
                    widgets.append(_Widget(_filter_widget_name(opts), "", to_api=False))
        elif wtype == "IMAGEUPLOAD":
            widgets.append(_Widget(name, "image", to_api=False))
            upload_spec = opts
        elif wtype == "AUDIOUPLOAD":
            widgets.append(_Widget(name, "", to_api=False))
        elif wtype == "AUDIO_UI":
            widgets.append(_Widget(name, "", in_values=False, settable=False))
        elif wtype == "PREVIEW_3D":
            widgets.append(_Widget(name, "", settable=False))
        slots.append(_Slot(name, _slot_type(s), widget=name))
    if upload_spec is not None:
        target = next((w for w in widgets if w.name == upload_spec.get("imageInputName")), None)
        if target is not None:
            target.upload_folder = upload_spec.get("image_folder") or "input"
            target.allow_batch = bool(upload_spec.get("allow_batch"))
    # nodeCreated hooks of core extensions
    if class_type == "PreviewAny":
        widgets.append(_Widget("preview", "", in_values=False, settable=False))
    if class_type in _TEXT_REPLACE_NODES:
        for w in widgets:
            if w.name == "filename_prefix":
                w.text_replace = True

    outputs = []
    for t in node_def.get("output") or []:
        t = "COMBO" if isinstance(t, (list, tuple)) else str(t)
        outputs.append("*" if t == "COMFY_MATCHTYPE_V3" else t)
    title = node_def.get("display_name") or node_def.get("name") or class_type
    legacy = [(s["name"], s["opts"]) for s in specs.values()]
    return _Layout(class_type, title, widgets, slots, outputs, legacy, unsupported)


def _slot_type(s: dict) -> str:
    if s["type"] == "COMFY_MATCHTYPE_V3":  # Comfy.MatchType narrows to the template's types
        template = s["opts"].get("template") or {}
        allowed = template.get("allowed_types") if isinstance(template, Mapping) else None
        return allowed or "*"
    return s["type"]


def widgets_values_layout(class_type: str, object_info: Mapping) -> list[str]:
    """Names of the entries of ``widgets_values`` the frontend saves for ``class_type``.

    Control widgets appear as ``control_after_generate`` (and ``control_filter_list``),
    upload buttons as ``upload``.  Handy for writing a workflow fixture by hand.
    """
    if class_type not in object_info:
        raise WorkflowFormatError(f"unknown node type {class_type!r} (not in object_info)")
    layout = _build_layout(class_type, object_info[class_type])
    return [w.name for w in layout.widgets if w.in_values]


# --------------------------------------------------------------------------- JS helpers


def _is_valid_connection(a: Any, b: Any) -> bool:
    """LiteGraph.isValidConnection: '*'/'' match anything, case-insensitive, ',' unions."""
    a = ",".join(map(str, a)) if isinstance(a, (list, tuple)) else a
    b = ",".join(map(str, b)) if isinstance(b, (list, tuple)) else b
    if a in ("", "*", None, 0) or b in ("", "*", None, 0) or a == b:
        return True
    a, b = str(a).lower(), str(b).lower()
    if "," not in a and "," not in b:
        return a == b
    return any(_is_valid_connection(x, y) for x in a.split(",") for y in b.split(","))


def _js_str(v: Any) -> str:
    if v is None or v is _UNDEFINED:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isfinite(v) and v == int(v):
            return str(int(v))
        return repr(v)
    if isinstance(v, (list, tuple)):
        return ",".join("" if x is None else _js_str(x) for x in v)
    if isinstance(v, Mapping):
        return "[object Object]"
    return str(v)


_COMMENT_RE = re.compile(r"/\*[\s\S]*?\*/|//[^\n\r\u2028\u2029]*")


def _process_dynamic_prompt(text: str, rng: random.Random) -> str:
    """processDynamicPrompt: strip comments, pick one option of each {a|b|c} block."""
    text = _COMMENT_RE.sub("", text)
    pos = 0

    def take() -> str:
        nonlocal pos
        ch = text[pos] if pos < len(text) else "undefined"  # JS reads past the end
        pos += 1
        return ch

    def choice_block() -> str:
        nonlocal pos
        options, cur, depth = [], "", 0
        while pos < len(text):
            ch = text[pos]
            pos += 1
            if ch == "\\":
                cur += "\\" + take()
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                if not depth:
                    break
                depth -= 1
            elif ch == "|" and not depth:
                options.append(cur)
                cur = ""
                continue
            cur += ch
        options.append(cur)
        return _process_dynamic_prompt(options[rng.randrange(len(options))], rng)

    out = ""
    while pos < len(text):
        ch = text[pos]
        pos += 1
        if ch == "\\":
            out += "\\" + take()
        elif ch == "{":
            out += choice_block()
        else:
            out += ch
    return re.sub(r"\\([{}|])", r"\1", out)


_DATE_RE = re.compile(r"dd?|MM?|hh?|mm?|ss?|yyy?y?")


def _format_date(fmt: str, now: _dt.datetime) -> str:
    parts = {"d": now.day, "M": now.month, "h": now.hour, "m": now.minute, "s": now.second}

    def repl(m: re.Match) -> str:
        tok = m.group(0)
        if tok == "yy":
            return str(now.year)[2:]
        if tok == "yyyy":
            return str(now.year)
        if tok[0] in parts:
            return str(parts[tok[0]]).rjust(len(tok), "0")
        return tok

    return _DATE_RE.sub(repl, fmt)


# --------------------------------------------------------------------------- conversion


@dataclass
class _Node:
    id: str
    type: str
    mode: int
    title: str
    raw: dict
    virtual: bool = False
    layout: _Layout | None = None
    inputs: list[_Slot] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)  # one per layout widget

    def describe(self) -> str:
        return f"node {self.id} ({self.type})"


def _node_id(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _parse_links(raw_links: Any) -> dict[Any, dict]:
    links: dict[Any, dict] = {}
    for item in raw_links or []:
        if isinstance(item, Mapping):
            link = {k: item.get(k) for k in ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")}
        elif isinstance(item, (list, tuple)) and len(item) >= 5:
            link = dict(zip(("id", "origin_id", "origin_slot", "target_id", "target_slot", "type"), item))
        else:
            raise WorkflowFormatError(f"malformed link entry {item!r}")
        links[link["id"]] = link
    return links


class _Converter:
    def __init__(self, workflow: Mapping, object_info: Mapping, *, strict: bool,
                 rng: random.Random | None, now: _dt.datetime | None):
        self.object_info = object_info
        self.strict = strict
        self.rng = rng if rng is not None else random.Random()
        self.now = now
        self._layouts: dict[str, _Layout] = {}
        if not isinstance(workflow, Mapping) or not isinstance(workflow.get("nodes"), list):
            raise WorkflowFormatError("not a UI workflow: expected a JSON object with a 'nodes' list")
        self.links = _parse_links(workflow.get("links"))
        subgraph_ids = {sg.get("id") for sg in ((workflow.get("definitions") or {}).get("subgraphs") or [])}
        self.nodes: dict[str, _Node] = {}
        for raw in workflow["nodes"]:
            node = self._load_node(raw, subgraph_ids)
            if node.id in self.nodes:
                raise WorkflowFormatError(f"duplicate node id {node.id}")
            self.nodes[node.id] = node

    # ---- loading

    def _layout(self, class_type: str) -> _Layout:
        if class_type not in self._layouts:
            self._layouts[class_type] = _build_layout(class_type, self.object_info[class_type])
        return self._layouts[class_type]

    def _load_node(self, raw: Mapping, subgraph_ids: set) -> _Node:
        if "id" not in raw or "type" not in raw:
            raise WorkflowFormatError(f"malformed node entry (needs 'id' and 'type'): {str(raw)[:200]}")
        node_id, node_type = _node_id(raw["id"]), str(raw["type"])
        mode = raw.get("mode") or MODE_ALWAYS
        node = _Node(node_id, node_type, mode, "", dict(raw))
        saved_inputs = [i for i in (raw.get("inputs") or []) if isinstance(i, Mapping)]
        saved_outputs = [o for o in (raw.get("outputs") or []) if isinstance(o, Mapping)]
        where = f"node {node_id} ({node_type})"
        if node_type in subgraph_ids:
            raise WorkflowFormatError(f"{where}: subgraph nodes are not supported; convert the subgraph back to nodes")
        if node_type.startswith(("workflow>", "workflow/")):
            raise WorkflowFormatError(f"{where}: group nodes are not supported; ungroup them first")
        if node_type in VIRTUAL_NODE_TYPES:
            node.virtual = True
            node.title = raw["title"] if raw.get("title") is not None else {"PrimitiveNode": "Primitive", "MarkdownNote": "Markdown Note"}.get(node_type, node_type)
            node.inputs = [_Slot(str(i.get("name", "")), i.get("type", "*"), None, i.get("link")) for i in saved_inputs]
            node.outputs = [o.get("type", "*") for o in saved_outputs]
            return node
        if node_type not in self.object_info:
            if mode == MODE_NEVER:  # never sent, never followed through
                node.title = raw.get("title") or node_type
                node.outputs = [o.get("type", "*") for o in saved_outputs]
                return node
            if mode == MODE_BYPASS:  # can still be routed through with its saved slots
                node.title = raw.get("title") or node_type
                node.inputs = [_Slot(str(i.get("name", "")), i.get("type", "*"), None, i.get("link")) for i in saved_inputs]
                node.outputs = [o.get("type", "*") for o in saved_outputs]
                return node
            raise WorkflowFormatError(f"{where}: unknown node type {node_type!r} (not in object_info; is the node pack loaded?)")
        layout = self._layout(node_type)
        node.layout = layout
        node.title = raw["title"] if raw.get("title") is not None else layout.title
        if layout.unsupported and mode not in (MODE_NEVER, MODE_BYPASS):
            raise WorkflowFormatError(f"{where}: not supported: {layout.unsupported}")
        # ComfyNode.configure: slots from the definition, links from the saved slot of that name.
        by_name = {}
        for i in saved_inputs:
            by_name.setdefault(str(i.get("name", "")), i)
        known = {s.name for s in layout.inputs}
        node.inputs = [_Slot(s.name, s.type, s.widget, (by_name.get(s.name) or {}).get("link")) for s in layout.inputs]
        node.inputs += [_Slot(str(i.get("name", "")), i.get("type", "*"), None, i.get("link"))
                        for i in saved_inputs if str(i.get("name", "")) not in known]
        node.outputs = list(layout.outputs)
        if len(saved_outputs) > len(node.outputs):
            node.outputs += [o.get("type", "*") for o in saved_outputs[len(node.outputs):]]
        node.values = self._assign_values(node, strict=self.strict and mode not in (MODE_NEVER, MODE_BYPASS))
        return node

    def _assign_values(self, node: _Node, *, strict: bool) -> list[Any]:
        layout = node.layout
        values = [w.default for w in layout.widgets]
        saved = node.raw.get("widgets_values")
        settable = [i for i, w in enumerate(layout.widgets) if w.in_values]
        names = [layout.widgets[i].name for i in settable]
        if isinstance(saved, Mapping):  # some custom nodes save a dict keyed by widget name
            for i in settable:
                if layout.widgets[i].name in saved and layout.widgets[i].settable:
                    values[i] = saved[layout.widgets[i].name]
            missing = [layout.widgets[i].name for i in settable if layout.widgets[i].name not in saved]
            if strict and missing:
                raise WorkflowFormatError(f"{node.describe()}: widgets_values has no value for {missing}")
            return values
        if saved is None:
            saved = []
        if not isinstance(saved, list):
            raise WorkflowFormatError(f"{node.describe()}: widgets_values must be a list, not {type(saved).__name__}")
        saved = self._migrate(layout, saved)
        # LGraphNode.serialize writes widgets_values[i] for the i-th widget, leaving holes for
        # widgets that are never saved; configure assigns saved values to the saved widgets in order.
        full_len = (settable[-1] + 1) if settable else 0
        if strict and len(saved) not in (len(settable), full_len):
            hint = ""
            if len(saved) > len(settable):
                hint = (" (a value saved after a run by a preview widget the frontend adds at run time"
                        " is ignored by the frontend; strict=False does the same)")
            raise WorkflowFormatError(
                f"{node.describe()}: widgets_values has {len(saved)} values, expected {len(settable)}: {names}{hint}"
            )
        for k, i in enumerate(settable):
            if k < len(saved) and layout.widgets[i].settable:
                values[i] = saved[k]
        return values

    @staticmethod
    def _migrate(layout: _Layout, saved: list) -> list:
        """migrateWidgetsValues: drop values an old frontend saved for forceInput inputs."""
        widget_names = {w.name for w in layout.widgets}
        relevant = [(n, o) for n, o in layout.legacy_inputs if n in widget_names or o.get("forceInput")]
        if not any(o.get("forceInput") for _, o in relevant):
            return saved
        count = sum(2 if (o.get("control_after_generate") or n in ("seed", "noise_seed")) else 1 for n, o in relevant)
        if count != len(saved):
            return saved
        # zip pads the shorter list; entries past the inputs are kept.
        out = []
        for k, value in enumerate(saved):
            if k < len(relevant) and relevant[k][1].get("forceInput"):
                continue
            out.append(value)
        return out

    # ---- widget values

    def _widget_value(self, node: _Node, index: int) -> Any:
        """The widget's value as the live widget reports it (getter transforms applied)."""
        w = node.layout.widgets[index]
        value = node.values[index]
        if w.upload_folder is not None:
            value = self._annotate_upload(value, w)
        return value

    @staticmethod
    def _annotate_upload(value: Any, w: _Widget) -> Any:
        def one(v: Any) -> Any:
            if isinstance(v, str):
                if w.upload_folder != "input" and not re.search(r"\[(input|output|temp)\]", v, re.I):
                    return f"{v} [{w.upload_folder}]"
                return v
            if isinstance(v, Mapping):
                path = v.get("filename") or ""
                if v.get("subfolder"):
                    path = f"{v['subfolder']}/{path}"
                if v.get("type") and w.upload_folder != "input" and not re.search(r"\[(input|output|temp)\]", str(v["type"]), re.I):
                    path += f" [{w.upload_folder}]"
                return path
            return v

        if isinstance(value, list):  # (an empty JS array is truthy)
            return [one(v) for v in value] if w.allow_batch else one(value[0] if value else _UNDEFINED)
        if value is None or value is _UNDEFINED or value is False or value == "" or value == 0:
            # a falsy value reads as the combo's value when the widget was created
            return "undefined" if w.default is _UNDEFINED else _js_str(w.default)
        return one(value)

    def _find_widget(self, node: _Node, name: str) -> int | None:
        if node.layout is None:
            return None
        for i, w in enumerate(node.layout.widgets):
            if w.name == name:
                return i
        return None

    def _text_replacements(self, text: str) -> str:
        """applyTextReplacements: %date:fmt% and %Node.widget% (node by 'Node name for S&R', then title)."""
        if not isinstance(text, str):
            return text
        nodes = list(self.nodes.values())

        def repl(m: re.Match) -> str:
            parts = m.group(1).split(".")
            if len(parts) != 2:
                if parts[0].startswith("date:"):
                    return _format_date(parts[0][5:], self.now or _dt.datetime.now())
                return m.group(0)
            matches = [n for n in nodes if (n.raw.get("properties") or {}).get("Node name for S&R") == parts[0]]
            if not matches:
                matches = [n for n in nodes if n.title == parts[0]]
            if not matches:
                log.warning("workflow text replacement: no node %r", parts[0])
                return m.group(0)
            target = matches[0]
            value: Any = _UNDEFINED
            idx = self._find_widget(target, parts[1])
            if idx is not None:
                value = self._widget_value(target, idx)
            elif target.virtual and parts[1] in ("value", "text"):
                wv = target.raw.get("widgets_values") or []
                value = wv[0] if wv else _UNDEFINED
            if value is _UNDEFINED:
                log.warning("workflow text replacement: no widget %r on node %r", parts[1], parts[0])
                return m.group(0)
            return re.sub(r'[/?<>\\:*|"\x00-\x1F\x7F]', "_", _js_str(value))

        return re.sub(r"%([^%]+)%", repl, text)

    def _serialize_widget(self, node: _Node, index: int) -> Any:
        w = node.layout.widgets[index]
        value = self._widget_value(node, index)
        if w.dynamic_prompts and isinstance(value, str):
            value = _process_dynamic_prompt(value, self.rng)
        elif w.text_replace and isinstance(value, str):
            value = self._text_replacements(value)
        return value

    # ---- PrimitiveNode

    def _apply_primitives(self) -> None:
        for node in self._execution_order():
            if node.type != "PrimitiveNode":
                continue
            outputs = node.raw.get("outputs") or []
            if outputs and isinstance(outputs[0], Mapping):
                link_ids = list(outputs[0].get("links") or [])
            else:  # no saved output slot: take the links table's word for it
                link_ids = [lid for lid, ln in self.links.items()
                            if _node_id(ln["origin_id"]) == node.id and ln["origin_slot"] == 0]
            if not link_ids:
                continue
            saved = node.raw.get("widgets_values")
            if not isinstance(saved, list) or not saved:
                continue  # the frontend copies the target's own value into the primitive
            value = saved[0]
            if value and (node.raw.get("properties") or {}).get(_PRIMITIVE_REPLACE_PROPERTY):
                value = self._text_replacements(value)
            for link_id in link_ids:
                link = self.links.get(link_id)
                if link is None:
                    continue
                target = self.nodes.get(_node_id(link["target_id"]))
                if target is None or target.layout is None:
                    continue
                slot = next((s for s in target.inputs if s.link == link_id), None)
                if slot is None and isinstance(link.get("target_slot"), int) and link["target_slot"] < len(target.inputs):
                    slot = target.inputs[link["target_slot"]]
                if slot is None or not slot.widget:
                    log.warning("PrimitiveNode %s: link %s does not end at a widget input", node.id, link_id)
                    continue
                idx = self._find_widget(target, slot.widget)
                if idx is not None:
                    target.values[idx] = value

    # ---- link resolution (ExecutableNodeDTO.resolveInput / resolveOutput)

    def _resolve_input(self, node: _Node, slot: int, visited: set, type_: Any = None):
        key = (node.id, "I", slot)
        if key in visited:
            raise WorkflowFormatError(f"{node.describe()}: circular link while resolving input {slot}")
        visited.add(key)
        if slot >= len(node.inputs):
            raise WorkflowFormatError(f"{node.describe()}: no input slot {slot}")
        inp = node.inputs[slot]
        if inp.link is None:
            return None
        link = self.links.get(inp.link)
        if link is None:
            raise WorkflowFormatError(f"{node.describe()}: input {inp.name!r} refers to missing link {inp.link}")
        origin = self.nodes.get(_node_id(link["origin_id"]))
        if origin is None:
            raise WorkflowFormatError(f"{node.describe()}: input {inp.name!r} is linked from missing node {link['origin_id']}")
        return self._resolve_output(origin, int(link["origin_slot"]), type_ if type_ is not None else inp.type, visited)

    def _resolve_output(self, node: _Node, slot: int, type_: Any, visited: set):
        key = (node.id, "O", slot)
        if key in visited:
            raise WorkflowFormatError(f"{node.describe()}: circular link while resolving output {slot}")
        visited.add(key)
        if node.mode == MODE_BYPASS:
            idx = self._bypass_slot(node, slot, type_)
            if idx == -1:
                log.warning("bypassed %s: no input matches type %s", node.describe(), type_)
                return None
            return self._resolve_input(node, idx, visited)
        if node.virtual:
            if slot < len(node.inputs) and node.inputs[slot].link is not None:
                return self._resolve_input(node, slot, visited, type_)
            return None
        return node.id, slot

    @staticmethod
    def _bypass_slot(node: _Node, slot: int, type_: Any) -> int:
        inputs = node.inputs
        if type_ in ("*", ""):
            return slot if len(inputs) > slot else 0
        if slot >= len(node.outputs):
            raise WorkflowFormatError(f"bypassed {node.describe()}: no output slot {slot}")
        out_type = node.outputs[slot]
        if slot < len(inputs):
            opp = inputs[slot]
            if _is_valid_connection(opp.type, out_type) and _is_valid_connection(opp.type, type_):
                return slot
        for i, inp in enumerate(inputs):
            if inp.type == type_:
                return i
        for i, inp in enumerate(inputs):
            if _is_valid_connection(inp.type, out_type) and _is_valid_connection(inp.type, type_):
                return i
        return -1

    # ---- output

    def _execution_order(self) -> list[_Node]:
        def key(n: _Node):
            order = n.raw.get("order")
            num = int(n.id) if n.id.lstrip("-").isdigit() else math.inf
            return (order if isinstance(order, (int, float)) else math.inf, num, n.id)

        return sorted(self.nodes.values(), key=key)

    def convert(self, queue_node_ids: Iterable[Any] | None = None) -> dict:
        self._apply_primitives()
        output: dict[str, dict] = {}
        for node in self._execution_order():
            if node.virtual or node.mode in (MODE_NEVER, MODE_BYPASS):
                continue
            inputs: dict[str, Any] = {}
            for i, w in enumerate(node.layout.widgets):
                if not w.name or not w.to_api:
                    continue
                value = self._serialize_widget(node, i)
                if value is _UNDEFINED:
                    continue
                inputs[w.name] = {"__value__": list(value)} if isinstance(value, (list, tuple)) else value
            for i, slot in enumerate(node.inputs):
                resolved = self._resolve_input(node, i, set())
                if resolved is None:
                    continue
                inputs[slot.name] = [resolved[0], resolved[1]]
            output[node.id] = {"inputs": inputs, "class_type": node.type, "_meta": {"title": node.title}}
        for entry in output.values():  # inputs linked to nodes that are not sent
            for name in [n for n, v in entry["inputs"].items()
                         if isinstance(v, list) and len(v) == 2 and v[0] not in output]:
                del entry["inputs"][name]
        if queue_node_ids:
            partial: dict[str, dict] = {}

            def add(nid: str) -> None:
                if nid in partial or nid not in output:
                    return
                partial[nid] = output[nid]
                for v in output[nid]["inputs"].values():
                    if isinstance(v, list) and len(v) == 2:
                        add(v[0])

            for nid in queue_node_ids:
                add(_node_id(nid))
            output = partial
        return output


def ui_to_api(workflow: Mapping, object_info: Mapping, *, strict: bool = True,
              rng: random.Random | None = None, now: _dt.datetime | None = None,
              queue_node_ids: Iterable[Any] | None = None) -> dict:
    """Convert a UI workflow dict into an API prompt dict, as the frontend's "Queue" does.

    ``object_info``: node definitions in the format of ``GET /object_info``.
    ``strict`` (default): a node that will be sent must have exactly as many
    ``widgets_values`` as the frontend would save (else WorkflowFormatError); with
    ``strict=False`` missing values take the widget defaults and extra ones are ignored,
    like the frontend.  ``rng`` picks ``{a|b}`` choices in dynamic prompts; ``now`` is
    the time for ``%date:...%``.  ``queue_node_ids``: only these output nodes and what
    they depend on (the frontend's partial execution).  The workflow is not modified.
    """
    conv = _Converter(copy.deepcopy(workflow), object_info, strict=strict, rng=rng, now=now)
    return conv.convert(queue_node_ids)


def load_ui_workflow(path: str | Path) -> dict:
    """Read a UI-format workflow JSON file (raises WorkflowFormatError for an API prompt)."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        hint = ""
        if isinstance(data, dict) and data and all(isinstance(v, Mapping) and "class_type" in v for v in data.values()):
            hint = " (it looks like an API-format prompt)"
        raise WorkflowFormatError(f"{path}: not a UI workflow{hint}")
    return data


def ui_file_to_api(path: str | Path, object_info: Mapping, **kwargs: Any) -> dict:
    """:func:`load_ui_workflow` then :func:`ui_to_api` (keyword arguments are passed on)."""
    return ui_to_api(load_ui_workflow(path), object_info, **kwargs)


# --------------------------------------------------------------------------- object_info


def object_info_from_loaded_nodes() -> dict:
    """``GET /object_info`` computed in-process from ``nodes.NODE_CLASS_MAPPINGS``.

    Same logic as ``server.py``'s ``node_info`` (ComfyUI 0.3.75): V3 nodes report
    ``GET_NODE_INFO_V1()``, V1 nodes their INPUT_TYPES, RETURN_TYPES and class attributes;
    the result is passed through JSON like the HTTP answer.  ComfyUI must already be
    imported and its nodes loaded (``nodes.init_extra_nodes``).  A node whose info fails is
    logged and left out, as the server does.
    """
    import folder_paths
    import nodes
    from comfy_api.internal import _ComfyNodeInternal

    def node_info(node_class: str) -> dict:
        obj_class = nodes.NODE_CLASS_MAPPINGS[node_class]
        if issubclass(obj_class, _ComfyNodeInternal):
            return obj_class.GET_NODE_INFO_V1()
        info: dict[str, Any] = {}
        info["input"] = obj_class.INPUT_TYPES()
        info["input_order"] = {key: list(value.keys()) for (key, value) in obj_class.INPUT_TYPES().items()}
        info["output"] = obj_class.RETURN_TYPES
        info["output_is_list"] = obj_class.OUTPUT_IS_LIST if hasattr(obj_class, "OUTPUT_IS_LIST") else [False] * len(obj_class.RETURN_TYPES)
        info["output_name"] = obj_class.RETURN_NAMES if hasattr(obj_class, "RETURN_NAMES") else info["output"]
        info["name"] = node_class
        info["display_name"] = nodes.NODE_DISPLAY_NAME_MAPPINGS.get(node_class, node_class)
        info["description"] = obj_class.DESCRIPTION if hasattr(obj_class, "DESCRIPTION") else ""
        info["python_module"] = getattr(obj_class, "RELATIVE_PYTHON_MODULE", "nodes")
        info["category"] = "sd"
        info["output_node"] = bool(hasattr(obj_class, "OUTPUT_NODE") and obj_class.OUTPUT_NODE == True)  # noqa: E712
        if hasattr(obj_class, "CATEGORY"):
            info["category"] = obj_class.CATEGORY
        if hasattr(obj_class, "OUTPUT_TOOLTIPS"):
            info["output_tooltips"] = obj_class.OUTPUT_TOOLTIPS
        if getattr(obj_class, "DEPRECATED", False):
            info["deprecated"] = True
        if getattr(obj_class, "EXPERIMENTAL", False):
            info["experimental"] = True
        if hasattr(obj_class, "API_NODE"):
            info["api_node"] = obj_class.API_NODE
        return info

    out: dict[str, Any] = {}
    with folder_paths.cache_helper:
        for name in list(nodes.NODE_CLASS_MAPPINGS):
            try:
                out[name] = json.loads(json.dumps(node_info(name)))
            except Exception:
                log.exception("object_info: could not describe node %r", name)
    return out


# --------------------------------------------------------------------------- checks


def check_api_prompt(prompt: Mapping, object_info: Mapping) -> list[str]:
    """Problems a backend would reject, found without running anything.

    Reports unknown ``class_type``s, input names that are neither declared inputs nor
    widgets the frontend sends, missing required inputs, and links to absent nodes or
    output slots.  Returns a list of messages (empty when all is well).
    """
    problems: list[str] = []
    for nid, entry in prompt.items():
        ctype = entry.get("class_type")
        if ctype not in object_info:
            problems.append(f"node {nid}: unknown class_type {ctype!r}")
            continue
        info = object_info[ctype]
        declared = {}
        for section in ("required", "optional"):
            declared.update({k: section for k in ((info.get("input") or {}).get(section) or {})})
        frontend = {w.name for w in _build_layout(ctype, info).widgets if w.to_api}
        inputs = entry.get("inputs") or {}
        for name, value in inputs.items():
            if name not in declared and name not in frontend:
                problems.append(f"node {nid} ({ctype}): unknown input {name!r}")
            if isinstance(value, list) and len(value) == 2:
                src = prompt.get(value[0])
                if src is None:
                    problems.append(f"node {nid} ({ctype}): input {name!r} linked to missing node {value[0]!r}")
                elif src.get("class_type") in object_info:
                    n_out = len(object_info[src["class_type"]].get("output") or [])
                    if not isinstance(value[1], int) or not 0 <= value[1] < n_out:
                        problems.append(f"node {nid} ({ctype}): input {name!r} linked to output {value[1]!r} of node {value[0]} which has {n_out}")
        for name, section in declared.items():
            if section == "required" and name not in inputs:
                problems.append(f"node {nid} ({ctype}): required input {name!r} missing")
    return problems
