"""The controller's one status line: every action replaces it, refusals show the error, notices are appended
once and never leak into the next action; hand-picked channels accept ranges."""

import pytest
import torch

from prune_explorer.explorer import ExplorerController, ExplorerError
from prune_explorer.explorer.walk import _read_idx_text


def test_every_action_replaces_the_status(small):
    model, x = small
    events = []
    c = ExplorerController(model, x)
    c.subscribe(events.append)
    assert c.status.text.startswith("Ready: 3 groups to decide, starting with conv1")
    c.accept()
    assert c.status.text.startswith("accepted conv1 (−8 of 16 channels") and "now at block.conv_a" in c.status.text
    c.fail(ExplorerError("could not read '33-40x'"))
    assert c.status.is_error and events[-1] == "status"
    c.adjust(n=4)
    assert not c.status.is_error and c.status.text.startswith("block.conv_a: 4 of 32 channels selected")
    c.skip()
    assert c.status.text.startswith("skipped block.conv_a")
    c.undo()
    assert c.status.text.startswith("undid conv1") and "now at conv1" in c.status.text
    c.accept_all_remaining()
    assert "all groups decided: 3 accepted, 0 skipped" in c.status.text
    c.sweep()
    assert "uniform pruning at p = 0.5 would remove" in c.status.text and "original model" in c.status.text
    c.notify("hello")
    assert c.status.text == "hello" and events[-1] == "status"


def test_notices_are_shown_once(grouped):
    model, x = grouped
    c = ExplorerController(model, x)
    c.skip()  # to the grouped conv, whose channels come in units of 4
    assert c.current.root_name == "gconv"
    c.adjust(idxs=[1])
    assert "complete whole units" in c.message and "complete whole units" in c.status.text
    c.adjust(n=4)
    assert c.message == "" and "units" not in c.status.text


def test_rebuild_notice_is_the_message(small):
    model, x = small
    c = ExplorerController(model, x)
    c.accept()
    c.ignore("conv2")
    assert c.message == "pruner rebuilt; 1 earlier decisions kept"
    assert c.status.text.startswith("ignoring fc, conv2") and c.message in c.status.text


def test_channel_ranges():
    assert _read_idx_text("33-36, 1 2", "x") == [33, 34, 35, 36, 1, 2]
    with pytest.raises(ExplorerError, match="backwards"):
        _read_idx_text("9-3", "x")
    with pytest.raises(ExplorerError, match="'a-b'"):
        _read_idx_text("a-b", "x")


def test_picking_a_range_in_the_walk(small):
    model, x = small
    c = ExplorerController(model, x)
    assert c.adjust(idxs="2-5, 9") == [2, 3, 4, 5, 9]
    with pytest.raises(ExplorerError, match="out of range"):
        c.adjust(idxs="10-20")
    with pytest.raises(ExplorerError, match="out of range"):
        c.adjust(idxs="-3")
    assert c.current_idxs == [2, 3, 4, 5, 9]
