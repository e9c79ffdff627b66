"""Write web/docs/<NodeId>.md, the help the ComfyUI editor shows for each node of the pack.

The editor fetches a custom node's help from /extensions/<pack>/docs/<NodeId>.md, which ComfyUI
serves from the pack's WEB_DIRECTORY (web/). Each page is made from what the node class itself
says (description, inputs and outputs with their tooltips, as /object_info reports them) and links
the docs/ page of its feature. Run `make node-help` after changing a node; tests/test_node_help.py
checks that the committed pages are fresh.
"""

import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HELP_DIR = REPO / "web" / "docs"

# The docs/ page of each nodes/ module's feature.
FEATURE_PAGES = {
    "schedule": "sequences.md", "conditioning": "sequences.md", "latent": "sequences.md",
    "apply": "sequences.md", "sampler": "sequences.md", "best_frame": "sequences.md",
    "report": "sequences.md", "video": "sequences.md", "smooth": "smooth.md",
    "ipadapter": "image-prompts.md", "shares": "shares.md", "regions": "spatial-temporal.md",
    "layout": "spatial-temporal.md", "region_weights": "spatial-temporal.md",
    "region_sampler": "spatial-temporal.md", "editing": "editing.md",
    "text_encode": "diffusion-transformers.md", "keyframes": "keyframes.md",
}


def github_anchor(heading: str) -> str:
    """The #anchor GitHub gives a Markdown heading's text."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def feature_link(node_id: str, module: str) -> str:
    """Relative link from web/docs/ to the feature page, at the heading that names the node if any."""
    page = FEATURE_PAGES[module]
    for line in (REPO / "docs" / page).read_text().splitlines():
        if re.match(r"#{2,6} ", line) and f"`{node_id}`" in line:
            return f"../../docs/{page}#{github_anchor(line.lstrip('#'))}"
    return f"../../docs/{page}"


def _type_name(spec) -> str:
    return "COMBO" if isinstance(spec, list) else str(spec)


def render(node_id: str, info: dict, module: str) -> str:
    """The help page of one node from its /object_info entry."""
    lines = [f"# {info['display_name']}", "", f"`{node_id}`, category {info['category']}.", ""]
    lines += [info["description"].strip(), "", "## Inputs", ""]
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            optional = ", optional" if section == "optional" else ""
            lines.append(f"- **{name}** ({_type_name(spec[0])}{optional}): {options.get('tooltip', '').strip()}")
    lines += ["", "## Outputs", ""]
    tooltips = info.get("output_tooltips") or [""] * len(info["output"])
    for kind, name, tip in zip(info["output"], info["output_name"], tooltips):
        lines.append(f"- **{name}** ({_type_name(kind)}): {(tip or '').strip()}")
    lines += ["", f"More: [docs/{FEATURE_PAGES[module]}]({feature_link(node_id, module)}) in the pack's repository.", ""]
    return "\n".join(lines)


def help_pages(node_classes: dict, object_info: dict) -> dict[str, str]:
    """{file name: text} for every node class of the pack."""
    return {
        f"{node_id}.md": render(node_id, object_info[node_id], cls.__module__.rsplit(".", 1)[-1])
        for node_id, cls in sorted(node_classes.items())
    }


def boot_host() -> tuple[dict, dict]:
    """Boot the test harness's ComfyUI in this process; the pack's node classes and /object_info."""
    sys.path.insert(0, str(REPO / "tests"))
    from aid_harness import host
    from aid_harness.workflow_format import object_info_from_loaded_nodes

    root, _ = host.find_comfyui()
    booted = host.boot_in_process(root, host.make_base_directory(Path(tempfile.mkdtemp())))
    return booted["pack"].NODE_CLASS_MAPPINGS, object_info_from_loaded_nodes()


def main() -> None:
    pages = help_pages(*boot_host())
    HELP_DIR.mkdir(parents=True, exist_ok=True)
    for stale in set(p.name for p in HELP_DIR.glob("*.md")) - set(pages):
        (HELP_DIR / stale).unlink()
    for name, text in pages.items():
        (HELP_DIR / name).write_text(text)
    print(f"wrote {len(pages)} help pages to {HELP_DIR.relative_to(REPO)}")


if __name__ == "__main__":
    main()
