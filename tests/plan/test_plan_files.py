"""Plans on disk: saved and loaded back equal; a bad path or a file that is not a plan gets a PlanError naming the
problem, and nothing is written."""

import pytest

import prune_explorer as pe
from prune_explorer.plan import GroupDecision, PlanError, PruningPlan


@pytest.fixture
def plan():
    return PruningPlan([GroupDecision("layer1.0.conv1", channels=64, remove=32)], name="by hand",
                       base={"params": 100}, predicted={"params": 60})


def test_save_and_load_round_trip(plan, tmp_path):
    plan.save(tmp_path / "p.json")
    again = PruningPlan.load(str(tmp_path / "p.json"))
    assert again == plan and again.predicted == {"params": 60} and again.name == "by hand"


@pytest.mark.parametrize("where, message", [
    ("missing/p.json", "does not exist; create it"),
    ("", "give a file name"),
    (".", "give a file name"),
])
def test_save_to_a_bad_path_says_why_and_writes_nothing(plan, tmp_path, monkeypatch, where, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PlanError, match=message):
        plan.save(where)
    assert list(tmp_path.iterdir()) == []


def test_load_of_a_missing_or_foreign_file_says_why(tmp_path):
    with pytest.raises(PlanError, match="could not read a plan from"):
        PruningPlan.load(tmp_path / "nope.json")
    (tmp_path / "notes.txt").write_text("not json at all")
    with pytest.raises(PlanError, match="not JSON"):
        PruningPlan.load(tmp_path / "notes.txt")
    (tmp_path / "other.json").write_text('{"something": 1, "groups": "x"}')
    with pytest.raises(PlanError, match="not a pruning plan"):
        PruningPlan.load(tmp_path / "other.json")
    assert isinstance(PlanError("x"), pe.errors.PruneExplorerError)
