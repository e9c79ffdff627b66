"""Write UI-format workflow JSON (what ComfyUI's editor loads) from a short description.

The example workflows in workflows/ are written with this, so their widget order, slots and
links follow the node definitions exactly (the same layout rules workflow_format converts
back). Usage:

    flow = UIWorkflow(object_info)
    ckpt = flow.add("CheckpointLoaderSimple", {"ckpt_name": "model.safetensors"}, pos=(0, 0))
    text = flow.add("CLIPTextEncode", {"text": "a dog"}, pos=(400, 0))
    flow.link(ckpt, "CLIP", text, "clip")
    data = flow.to_json()
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .workflow_format import _build_layout


@dataclass
class _Node:
    id: int
    class_type: str
    widgets: dict
    pos: tuple
    size: tuple
    title: str | None
    inputs: dict = field(default_factory=dict)  # input name -> link id


class UIWorkflow:
    """A workflow under construction: nodes with widget values, and links between named slots."""

    def __init__(self, object_info: dict):
        self.object_info = object_info
        self.nodes: list[_Node] = []
        self.links: list[list] = []
        self.groups: list[dict] = []

    def add(self, class_type: str, widgets: dict | None = None, pos=(0, 0), size=(320, 120), title=None) -> _Node:
        """Add a node; widgets not given take the definition's defaults (controls are 'fixed')."""
        if class_type not in self.object_info:
            raise KeyError(f"unknown node type {class_type}")
        node = _Node(len(self.nodes) + 1, class_type, dict(widgets or {}), tuple(pos), tuple(size), title)
        self.nodes.append(node)
        return node

    def _layout(self, node: _Node):
        return _build_layout(node.class_type, self.object_info[node.class_type])

    def link(self, source: _Node, output, target: _Node, input_name: str) -> None:
        """Connect `source`'s output (name or index) to `target`'s input."""
        outputs = self._layout(source).outputs
        names = self.object_info[source.class_type].get("output_name") or outputs
        slot = output if isinstance(output, int) else list(names).index(output)
        link_id = len(self.links) + 1
        self.links.append([link_id, source.id, slot, target.id, None, outputs[slot]])
        target.inputs[input_name] = link_id

    def group(self, title: str, bounding, color="#3f789e") -> None:
        """A coloured box behind nodes, as the editor draws groups."""
        self.groups.append({"title": title, "bounding": list(bounding), "color": color, "font_size": 24,
                            "flags": {}})

    def to_json(self) -> dict:
        """The workflow in the editor's 0.4 schema."""
        nodes_json = []
        outgoing: dict[tuple, list] = {}
        for link in self.links:
            outgoing.setdefault((link[1], link[2]), []).append(link[0])
        for order, node in enumerate(self.nodes):
            layout = self._layout(node)
            unknown = set(node.widgets) - {w.name for w in layout.widgets} - {s.name for s in layout.inputs}
            if unknown:
                raise KeyError(f"{node.class_type} has no widget(s) {sorted(unknown)}")
            values = []
            for widget in layout.widgets:
                if not widget.in_values:
                    continue
                if widget.name in node.widgets:
                    values.append(node.widgets[widget.name])
                elif widget.name == "control_after_generate":
                    values.append("fixed")
                else:
                    values.append(widget.default)
            inputs = []
            for index, slot in enumerate(layout.inputs):
                link_id = node.inputs.get(slot.name)
                if link_id is None and slot.widget is None:
                    inputs.append({"name": slot.name, "type": slot.type, "link": None})
                    continue
                entry = {"name": slot.name, "type": slot.type, "link": link_id}
                if slot.widget is not None:
                    entry["widget"] = {"name": slot.widget}
                inputs.append(entry)
                if link_id is not None:
                    self.links[link_id - 1][4] = index
            names = self.object_info[node.class_type].get("output_name") or layout.outputs
            outputs = [{"name": names[i], "type": t, "links": outgoing.get((node.id, i), []), "slot_index": i}
                       for i, t in enumerate(layout.outputs)]
            entry = {"id": node.id, "type": node.class_type, "pos": list(node.pos), "size": list(node.size),
                     "flags": {}, "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
                     "properties": {"Node name for S&R": node.class_type}, "widgets_values": values}
            if node.title:
                entry["title"] = node.title
            nodes_json.append(entry)
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": nodes_json,
                "links": self.links, "groups": self.groups, "config": {}, "extra": {"ds": {"scale": 0.8,
                "offset": [0, 0]}}, "version": 0.4}
