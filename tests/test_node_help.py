"""The editor's help pages, web/docs/<NodeId>.md: one per node, and what tools/node_help.py makes now."""
import sys
from pathlib import Path

import pytest

from aid_harness.workflow_format import object_info_from_loaded_nodes

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
import node_help  # noqa: E402


@pytest.fixture(scope="module")
def fresh_pages(comfy):
    import aid_pack

    return node_help.help_pages(aid_pack.NODE_CLASS_MAPPINGS, object_info_from_loaded_nodes())


def test_one_help_page_per_node_and_no_other(comfy):
    import aid_pack

    committed = sorted(p.name for p in node_help.HELP_DIR.glob("*.md"))
    assert committed == sorted(f"{node}.md" for node in aid_pack.NODE_CLASS_MAPPINGS)


def test_committed_help_pages_are_fresh(fresh_pages):
    stale = [name for name, text in fresh_pages.items() if (node_help.HELP_DIR / name).read_text() != text]
    assert not stale, f"run `make node-help`: {stale} differ from the node classes"


def test_help_page_lists_every_input_and_output_with_its_tooltip(fresh_pages):
    page = fresh_pages["AIDSchedule.md"]
    assert "- **frames** (INT): Frames F of the sequence" in page
    assert "- **schedule** (AID_SCHEDULE): " in page
    assert "(../../docs/sequences.md#aid-schedule-aidschedule)" in page


@pytest.mark.server
def test_a_running_comfyui_serves_each_help_page_where_the_editor_asks_for_it(comfy, tmp_path):
    """The frontend (1.32.9) fetches /extensions/<pack>/docs/<NodeId>.md for a custom node's help."""
    import urllib.request

    from aid_harness import host
    from aid_harness.runner import ServerRunner

    host.make_base_directory(tmp_path)
    pages = sorted((REPO / "web" / "docs").glob("*.md"))
    with ServerRunner(comfy["root"], tmp_path) as server:
        for page in pages:
            url = f"{server.url}/extensions/{host.PACK_FOLDER_NAME}/docs/{page.name}"
            with urllib.request.urlopen(url, timeout=30) as response:
                assert response.read() == page.read_bytes(), page.name
        scripts = sorted(name for name in server.get("/extensions") if host.PACK_FOLDER_NAME in name)
        # The editor widgets are the pack's only scripts; the help pages are no extension to load.
        assert scripts == sorted(f"/extensions/{host.PACK_FOLDER_NAME}/js/{path.name}"
                                 for path in (REPO / "web" / "js").glob("*.js"))
