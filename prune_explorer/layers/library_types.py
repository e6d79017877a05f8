"""Layer classes of other libraries, named instead of imported.

The core never imports timm or transformers, yet it must know their own layers (transformers' ``Conv1D``, timm's
``ScaledStdConv2d``). :func:`library_type` makes a stand-in class for classes given by qualified name
(``"module.ClassName"``): ``isinstance`` / ``issubclass`` against it are true for those classes and their
subclasses, and nothing is imported. The registries (:class:`~.family.FamilyRegistry`,
:class:`~.registry.PrunerRegistry`) match it along the MRO like any registered type, so the nearest class wins: a
``ScaledStdConv2d`` (an ``nn.Conv2d`` subclass) finds its own family before the conv family.

>>> import torch.nn as nn
>>> Named = library_type("torch.nn.modules.linear.Linear")
>>> isinstance(nn.Linear(2, 3), Named), isinstance(nn.ReLU(), Named), issubclass(nn.Bilinear, Named)
(True, False, False)
>>> qualified_name(nn.Conv2d)
'torch.nn.modules.conv.Conv2d'
"""

from __future__ import annotations

from typing import Optional, Tuple

__all__ = ["library_type", "qualified_name", "LibraryType", "matching_class"]


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class."""
    return f"{cls.__module__}.{cls.__qualname__}"


class _LibraryTypeMeta(type):
    """``isinstance`` / ``issubclass`` by the qualified names of the classes in the MRO."""

    def __instancecheck__(cls, obj) -> bool:
        return cls.__subclasscheck__(type(obj))

    def __subclasscheck__(cls, sub) -> bool:
        if not isinstance(sub, type):
            return False
        if type.__subclasscheck__(cls, sub):
            return True
        return matching_class(sub, cls.qualnames) is not None


class LibraryType(metaclass=_LibraryTypeMeta):
    """Base of the stand-ins :func:`library_type` makes (``qualnames``: the classes it stands for)."""

    qualnames: Tuple[str, ...] = ()


def library_type(*qualnames: str, name: Optional[str] = None) -> type:
    """A stand-in class for the classes named ``qualnames`` (``"package.module.Class"``) and their subclasses."""
    if not qualnames or not all(isinstance(q, str) and "." in q for q in qualnames):
        raise ValueError(f"library_type needs qualified class names such as 'timm.layers.X', got {qualnames!r}")
    label = name or qualnames[0].rsplit(".", 1)[-1]
    return _LibraryTypeMeta(label, (LibraryType,), {"qualnames": tuple(qualnames), "__module__": __name__})


def matching_class(cls: type, qualnames) -> Optional[type]:
    """The nearest class in ``cls``'s MRO whose qualified name is one of ``qualnames`` (or None)."""
    for k in cls.__mro__:
        if qualified_name(k) in qualnames:
            return k
    return None
