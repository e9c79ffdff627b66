"""Build valid API prompts around any node the server lists, and bad values for each of its inputs.

Everything is derived from /object_info, so nodes added to the pack later are covered without
changes here: a node's socket inputs are fed by the first node that produces the type (core
loaders for the host's types, the pack's own nodes for its types), widgets take their declared
defaults (shrunk to test sizes), and the bad values of an input follow its declared type and
range (see `bad_values`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

PRIMITIVES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
# Producers of the host's own types (core nodes); the pack's types are found in object_info.
CORE_PRODUCERS = {
    "MODEL": ("CheckpointLoaderSimple", 0), "CLIP": ("CheckpointLoaderSimple", 1),
    "VAE": ("CheckpointLoaderSimple", 2), "CONDITIONING": ("CLIPTextEncode", 0), "IMAGE": ("EmptyImage", 0),
    "LATENT": ("EmptyLatentImage", 0), "CLIP_VISION": ("CLIPVisionLoader", 0),
}
# Pack types whose first producer in name order cannot make a valid value alone (one AID Keyframe is one key;
# a sequence needs two): the node that can.
PACK_PRODUCERS = {"AID_KEYFRAMES": ("AIDKeyframes", 0)}
# Test sizes: every run stays at seconds on a CPU with the tiny models.
SMALL = {"width": 64, "height": 64, "steps": 2, "frames": 3, "exploration_frames": 4, "max_trials": 2,
         "frames_per_round": 2, "batch_size": 3, "fps": 8.0, "iterations": 1, "candidates": 2}
# Sockets that need a producer other than the default one: (consumer, input) -> (producer, its widgets).
# One photo, one image to optimise: a batch is refused by these nodes.
SOCKET_PRODUCERS = {("AIDInvertImage", "image"): ("EmptyImage", {"batch_size": 1}),
                    ("AIDSpatialTemporalWeightOptimiser", "latent_image"): ("EmptyLatentImage", {"batch_size": 1})}
# The message every pack error has (errors.AIDInputError): "<node>: input '<name>': <problem> Fix: <fix>".
NAMED_ERROR = re.compile(r"^(?P<node>[^:\n]+): input '(?P<input>[^']+)': .+ Fix: \S.*", re.S)
PLANTED = "aid-fuzz-"  # prefix of the corrupt model files the test puts into the model folders


def input_kind(spec) -> str:
    """INT, FLOAT, STRING, BOOLEAN, COMBO, or the socket type name."""
    kind = spec[0]
    if isinstance(kind, list):
        return "COMBO"
    return kind


def input_options(spec) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def combo_choices(spec) -> list:
    return spec[0] if isinstance(spec[0], list) else input_options(spec).get("options", [])


def pack_nodes(object_info: dict) -> list[str]:
    """Node ids whose category starts with 'AID' (the pack's menu), sorted."""
    return sorted(name for name, info in object_info.items() if str(info.get("category", "")).startswith("AID"))


@dataclass
class PromptBuilder:
    """Makes API prompts: `node(class_type, overrides)` adds a node with its sockets fed; returns its id."""

    object_info: dict
    good_files: dict  # input name -> the file to choose in a model combo
    prompt: dict = field(default_factory=dict)
    producer_optional: dict = field(default_factory=dict)  # class_type -> optional inputs a producer needs set

    def _new_id(self) -> str:
        return str(len(self.prompt) + 1)

    def producer(self, socket_type: str):
        """(class_type, output index) of a node that makes `socket_type`."""
        if socket_type in CORE_PRODUCERS and CORE_PRODUCERS[socket_type][0] in self.object_info:
            return CORE_PRODUCERS[socket_type]
        if socket_type in PACK_PRODUCERS and PACK_PRODUCERS[socket_type][0] in self.object_info:
            return PACK_PRODUCERS[socket_type]
        for name in pack_nodes(self.object_info):
            outputs = self.object_info[name].get("output", [])
            if socket_type in outputs:
                return name, outputs.index(socket_type)
        raise LookupError(f"no node in /object_info produces {socket_type}")

    def widget_value(self, name: str, spec):
        kind, options = input_kind(spec), input_options(spec)
        if kind == "COMBO":
            choices = combo_choices(spec)
            if name in self.good_files and self.good_files[name] in choices:
                return self.good_files[name]
            default = options.get("default")
            if default in choices and not str(default).startswith(PLANTED):
                return default
            usable = [c for c in choices if not str(c).startswith(PLANTED)]
            return usable[0] if usable else (choices[0] if choices else "")
        if name in SMALL and kind in ("INT", "FLOAT"):
            return SMALL[name]
        if "default" in options:
            return options["default"]
        return {"INT": options.get("min", 0), "FLOAT": options.get("min", 0.0), "STRING": "a photo",
                "BOOLEAN": False}[kind]

    def node(self, class_type: str, overrides: dict | None = None, _stack: tuple = (), optional=()) -> str:
        """Add `class_type` with every required input (and the `optional` ones) set; sockets fed by producers."""
        info = self.object_info[class_type]
        inputs = {}
        declared = dict(info["input"].get("required", {}))
        declared.update({n: s for n, s in info["input"].get("optional", {}).items() if n in optional})
        for name, spec in declared.items():
            if overrides and name in overrides:
                continue
            kind = input_kind(spec)
            if kind in PRIMITIVES:
                inputs[name] = self.widget_value(name, spec)
            elif (class_type, name) in SOCKET_PRODUCERS:
                producer, widgets = SOCKET_PRODUCERS[(class_type, name)]
                inputs[name] = [self.node(producer, widgets, _stack + (class_type,)), 0]
            else:
                inputs[name] = self.socket(kind, _stack + (class_type,))
        for name, value in (overrides or {}).items():
            inputs[name] = value
        node_id = self._new_id()
        self.prompt[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id

    def socket(self, socket_type: str, stack: tuple = ()) -> list:
        """A link [node id, output] to an existing or new producer of `socket_type`."""
        producer, index = self.producer(socket_type)
        if producer in stack:
            raise LookupError(f"{socket_type} only comes from {producer}, which needs it itself")
        for node_id, node in self.prompt.items():  # one producer per kind, like a user's graph
            if node["class_type"] == producer:
                return [node_id, index]
        return [self.node(producer, None, stack, optional=self.producer_optional.get(producer, ())), index]

    def with_sink(self, node_id: str) -> dict:
        """The prompt, with PreviewAny on the node's first output unless it is an output node itself."""
        class_type = self.prompt[node_id]["class_type"]
        if not self.object_info[class_type].get("output_node") and self.object_info[class_type].get("output"):
            self.prompt[self._new_id()] = {"class_type": "PreviewAny", "inputs": {"source": [node_id, 0]}}
        return self.prompt


@dataclass(frozen=True)
class BadValue:
    """One bad value for one input; `must_fail` when no reading of the input's contract accepts it."""

    value: object
    label: str
    must_fail: bool = True
    host_refuses: bool = False  # ComfyUI's validation refuses it before any node runs (any node may carry the error)


def bad_values(name: str, spec, other_links: list, tag: str) -> list[BadValue]:
    """Values of the input's declared kind that a well-behaved node refuses (or survives).

    `other_links` are links to outputs of other types (wrong sockets); `tag` makes escaping
    paths unique so the test can check they were not created.
    """
    kind, options = input_kind(spec), input_options(spec)
    values = []
    if kind == "INT":
        if "min" in options:
            values.append(BadValue(options["min"] - 1, "below min"))
        if "max" in options:
            values.append(BadValue(options["max"] + 1, "above max"))
        values.append(BadValue("seven", "text for a number"))
        if "frames" in name:  # sequences of 1 and 5000 frames, where the range does not allow them
            values += [BadValue(count, f"{count} frames") for count in (1, 5000)
                       if not options.get("min", count) <= count <= options.get("max", count)]
    elif kind == "FLOAT":
        values += [BadValue(float("nan"), "NaN"), BadValue(float("inf"), "inf"), BadValue(float("-inf"), "-inf"),
                   BadValue("x", "text for a number")]
        if "min" in options:
            values.append(BadValue(options["min"] - 1.0, "below min"))
        if "max" in options:
            values.append(BadValue(options["max"] + 1.0, "above max"))
    elif kind == "STRING":
        path_like = any(word in name for word in ("prefix", "path", "file", "folder"))
        values += [BadValue("", "empty", must_fail=path_like),
                   BadValue("x" * 1_000_000, "1 MB string", must_fail=False),
                   BadValue(f"../../{tag}-escape", "leaves the output folder", must_fail=path_like),
                   BadValue(f"/tmp/{tag}-absolute/x", "absolute path", must_fail=path_like),
                   BadValue("nul\x00byte", "NUL byte", must_fail=False),
                   BadValue(", ".join(f"{i / 4999:.6f}" for i in range(5000)), "5000-frame list",
                            must_fail=name == "custom")]  # AID Schedule's coefficient list
    elif kind == "COMBO":
        values += [BadValue("no such option", "not an option"), BadValue(f"../../{tag}.safetensors", "path escape")]
        values += [BadValue(choice, f"planted file {choice}") for choice in combo_choices(spec)
                   if str(choice).startswith(PLANTED)]
    elif kind == "BOOLEAN":
        pass  # ComfyUI converts anything with bool(): no value is wrong
    else:  # a socket
        values += [BadValue(5, "a number for a socket"), BadValue("text", "a string for a socket"),
                   BadValue({"__value__": [[1, 2], [3]]}, "a JSON list for a socket"),
                   BadValue(["9999", 0], "a link to no node", host_refuses=True)]
        values += [BadValue(link, f"a link to a {label} output") for link, label in other_links]
    return values
