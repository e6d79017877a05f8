"""timm: one model per family (smallest variant, small input, random weights) prunes half and still runs.

Recipe of issue 13: ``MagnitudePruner(model, x, MagnitudeImportance(p=2), pruning_ratio=0.5,
ignored_layers=[model.get_classifier()])``, one ``step()``; then the output shape is unchanged, forward and
backward run, there are strictly fewer parameters and no group was rolled back with an error.
"""

import pytest

import zoo_models as Z
from known_failures import params

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Z.has_library("timm"), reason="timm is not installed (extra [timm])")]

TIMM = [n for n, c in Z.CASES.items() if c.library == "timm" and not c.big]


def test_zoo_covers_the_families_of_issue_13():
    assert len(TIMM) >= 25
    families = {Z.CASES[n].note for n in TIMM}
    for f in ("ResNeSt", "SK-ResNet", "Res2Net", "NFNet", "ViT", "EVA-02", "Swin", "LeViT", "FastViT", "CoAtNet"):
        assert f in families


@pytest.mark.parametrize("pruned", params("runs", TIMM), indirect=True)
def test_timm_prunes_half_and_runs(pruned, record_kept):
    record_kept(pruned)
    assert Z.acceptance_problems(pruned) == []
