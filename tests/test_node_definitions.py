"""What the editor shows for every node of the pack, read from the host's own node info (as /object_info)."""
import pytest

from aid_harness.workflow_format import object_info_from_loaded_nodes


def pack_nodes() -> list[str]:
    import aid_pack

    return sorted(aid_pack.NODE_CLASS_MAPPINGS)


@pytest.fixture(scope="module")
def object_info(comfy):
    return object_info_from_loaded_nodes()


@pytest.mark.parametrize("node", pack_nodes())
def test_every_input_has_a_tooltip(node, object_info):
    """Hovering any input, socket or widget, says what it does (KSampler-style inputs included)."""
    missing = []
    for section in ("required", "optional"):
        for name, spec in object_info[node]["input"].get(section, {}).items():
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if not str(options.get("tooltip", "")).strip():
                missing.append(f"{section}/{name}")
    assert missing == []


@pytest.mark.parametrize("node", pack_nodes())
def test_every_output_has_a_tooltip(node, object_info):
    tooltips = object_info[node].get("output_tooltips") or []
    assert len(tooltips) == len(object_info[node]["output"]) and all(t.strip() for t in tooltips)
