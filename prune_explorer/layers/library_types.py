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

from typing import Any, Dict, Iterator, Optional, Tuple

__all__ = ["library_type", "qualified_name", "LibraryType", "matching_class", "TypeTable"]


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


_MISSING = object()


class TypeTable:
    """Values registered by class, looked up for a class: the one lookup both registries use
    (:class:`~.family.FamilyRegistry` for layer families, :class:`~.registry.PrunerRegistry` for pruners).

    The nearest class of the MRO that is registered wins, by itself or, for a :class:`LibraryType` stand-in, by
    qualified name. A class none of whose bases is registered falls back to ``issubclass`` against the registered
    classes in registration order (virtual subclasses, ``abc.register``). A registered value of None hides what a base
    class has. Lookups are cached per class until the table changes.

    >>> import torch.nn as nn
    >>> table = TypeTable()
    >>> table[nn.Module], table[library_type("torch.nn.modules.linear.Linear")] = "module", "linear"
    >>> table.lookup(nn.Linear), table.lookup(nn.ReLU), table.lookup(int)
    ('linear', 'module', None)
    """

    def __init__(self) -> None:
        self._by_type: Dict[type, Any] = {}
        self._by_name: Dict[str, Any] = {}  # qualified class name -> value (library types)
        self._cache: Dict[type, Any] = {}

    def __setitem__(self, cls: type, value: Any) -> None:
        self._by_type[cls] = value
        if issubclass(cls, LibraryType):
            for q in cls.qualnames:
                self._by_name[q] = value
        self._cache.clear()

    def pop(self, cls: type) -> None:
        """Forget ``cls`` (no error when it is not registered)."""
        self._by_type.pop(cls, None)
        if issubclass(cls, LibraryType):
            for q in cls.qualnames:
                self._by_name.pop(q, None)
        self._cache.clear()

    def nearest(self, cls: type, default: Any = None) -> Any:
        """The value of the nearest registered class of ``cls``'s MRO (``default`` when none is registered)."""
        for k in cls.__mro__:
            if k in self._by_type:
                return self._by_type[k]
            if self._by_name:
                q = qualified_name(k)
                if q in self._by_name:
                    return self._by_name[q]
        return default

    def lookup(self, cls: type) -> Any:
        """:meth:`nearest`, else the first registered class ``cls`` is a virtual subclass of, else None."""
        try:
            return self._cache[cls]
        except KeyError:
            pass
        found = self.nearest(cls, _MISSING)
        if found is _MISSING:
            found = next((v for k, v in self._by_type.items() if issubclass(cls, k)), None)
        self._cache[cls] = found
        return found

    def copy(self) -> "TypeTable":
        other = TypeTable()
        other._by_type, other._by_name = dict(self._by_type), dict(self._by_name)
        return other

    def items(self):
        return self._by_type.items()

    def values(self):
        return self._by_type.values()

    def __contains__(self, cls: type) -> bool:
        return cls in self._by_type

    def __iter__(self) -> Iterator[type]:
        return iter(self._by_type)

    def __len__(self) -> int:
        return len(self._by_type)
