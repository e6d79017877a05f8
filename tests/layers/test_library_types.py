"""Layer classes of other libraries matched by qualified name (no import), nearest class in the MRO first."""

import pytest
from torch import nn

from prune_explorer.errors import PruningError
from prune_explorer.layers import FAMILIES, LinearPruner, PrunerRegistry
from prune_explorer.layers.library_types import library_type


class Base(nn.Linear):
    pass


class Derived(Base):
    pass


def test_library_types_match_named_classes_and_their_subclasses_only():
    Named = library_type(f"{__name__}.Base")
    assert isinstance(Derived(2, 3), Named) and issubclass(Base, Named)
    assert not isinstance(nn.Linear(2, 3), Named) and not issubclass(int, Named) and not isinstance(3, Named)
    with pytest.raises(ValueError):
        library_type("NoModule")


def test_the_registry_prefers_the_nearest_class_in_the_mro():
    special, plain = LinearPruner(), LinearPruner()
    reg = PrunerRegistry({nn.Linear: plain})
    reg.register(library_type(f"{__name__}.Base"), special)
    assert reg.get(Derived(2, 3)) is special and reg.get(nn.Linear(2, 3)) is plain
    assert reg.copy().get(Base(2, 3)) is special
    reg.unregister(library_type(f"{__name__}.Base"))
    assert reg.get(Base(2, 3)) is plain


def test_registering_a_non_pruner_is_refused():
    with pytest.raises(PruningError):
        PrunerRegistry().register(library_type(f"{__name__}.Base"), object())


def test_families_are_found_for_library_classes_before_their_torch_bases():
    timm = pytest.importorskip("timm.layers.std_conv")
    assert FAMILIES.family_of(timm.ScaledStdConv2d).name == "timm_std_conv"
    assert FAMILIES.family_of(nn.Conv2d).name == "conv"
