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
