"""The result of a sensitivity scan: one row per (group, ratio), plus the baseline metric and the groups scanned.

Units: ``channels`` counts *root channels* removed from the group (the channels of its root layer; every coupled
layer loses the matching channels), ``params_removed`` counts scalar parameters and ``macs_removed``
multiply-accumulates of one forward pass on the scan's example inputs, both for the whole model with only that
group pruned. ``metric`` is what ``eval_fn`` returned (higher is better) and ``drop`` is ``baseline - metric``.

Example::

    >>> t = SensitivityTable(
    ...     rows=[ScanRow("conv1", 0.5, 4, 0.5, 100, 2000), ScanRow("conv2", 0.5, 8, 0.9, 300, 5000)],
    ...     baseline=1.0, ratios=(0.5,), base_params=1000, base_macs=10000,
    ...     groups=[GroupInfo("conv1", "conv1", "channels", 8, 7), GroupInfo("conv2", "conv2", "channels", 16, 15)])
    >>> t.pivot("drop").values
    [[0.5], [0.09999999999999998]]
    >>> t.curve("conv2")["channels"]
    [0, 8]
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import SensitivityError

__all__ = ["SensitivityTable", "ScanRow", "GroupInfo", "Pivot", "FORMAT"]

FORMAT = "prune_explorer.sensitivity/1"
VALUES = ("metric", "drop", "channels", "fraction", "params_removed", "macs_removed")


@dataclass(frozen=True)
class ScanRow:
    """One point of a scan: ``group`` (its key) pruned alone by ``ratio``, which removed ``channels`` root
    channels, ``params_removed`` parameters and ``macs_removed`` MACs, and made ``eval_fn`` return ``metric``."""

    group: str
    ratio: float
    channels: int
    metric: float
    params_removed: int
    macs_removed: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GroupInfo:
    """A scanned group: ``key`` (see :func:`prune_explorer.plan.group_key`), ``root`` (root layer name), ``kind``
    (``"channels"`` or an attention kind), ``channels`` (root channels before pruning), ``max_removable`` (the most
    the guards and ``round_to`` let it lose), ``members`` (coupled layer sides) and ``layers`` (their names)."""

    key: str
    root: str
    kind: str
    channels: int
    max_removable: int
    members: int = 0
    layers: Tuple[str, ...] = ()

    def as_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = list(self.layers)
        return d


@dataclass
class Pivot:
    """A (groups x ratios) matrix of one value of a table: ``values[i][j]`` is for ``groups[i]`` at ``ratios[j]``
    (None where the table has no row)."""

    value: str
    groups: List[str]
    ratios: List[float]
    values: List[List[Optional[float]]]

    def as_dict(self) -> dict:
        return asdict(self)

    def to_pandas(self):
        pd = _pandas()
        return pd.DataFrame(self.values, index=pd.Index(self.groups, name="group"),
                            columns=pd.Index(self.ratios, name="ratio"))


def _pandas():
    try:
        import pandas as pd
    except ImportError:
        raise SensitivityError("to_pandas() needs pandas, which is not installed. Fix: pip install pandas, or use "
                               ".as_dict() / .pivot() (plain Python)") from None
    return pd


class SensitivityTable:
    """Rows of a scan (see the module docstring) with the ``baseline`` metric, ``groups`` (in the pruner's order),
    ``ratios``, the unpruned model's ``base_params`` / ``base_macs``, ``meta`` (importance, pruner options,
    fingerprints) and ``stats`` (timings: not part of equality).

    A table returned by :func:`~prune_explorer.sensitivity.scan` also keeps a reference to the scanned model, its
    example inputs and the importance (not saved with it), so that :func:`~prune_explorer.sensitivity.solve_budget`
    needs nothing else in the same session."""

    def __init__(self, rows: Sequence[ScanRow], baseline: float, groups: Sequence[GroupInfo], ratios: Sequence[float],
                 base_params: int, base_macs: int, meta: Optional[Mapping] = None, stats: Optional[Mapping] = None):
        self.rows: List[ScanRow] = list(rows)
        self.baseline = float(baseline)
        self.groups: List[GroupInfo] = list(groups)
        self.ratios: Tuple[float, ...] = tuple(float(r) for r in ratios)
        self.base_params = int(base_params)
        self.base_macs = int(base_macs)
        self.meta: Dict[str, Any] = dict(meta or {})
        self.stats: Dict[str, Any] = dict(stats or {})
        self._group_by_key = {g.key: g for g in self.groups}
        self._context = None  # (model, example_inputs, importance, pruner options by name) of an in-process scan

    # ---- access ----------------------------------------------------------------------------------------------
    def keys(self) -> List[str]:
        """The group keys, in the pruner's order."""
        return [g.key for g in self.groups]

    def group(self, key: str) -> GroupInfo:
        try:
            return self._group_by_key[key]
        except KeyError:
            raise SensitivityError(f"the scan has no group {key!r}; groups: {self.keys()[:8]}") from None

    def rows_of(self, key: str) -> List[ScanRow]:
        """The rows of one group, by ratio."""
        self.group(key)
        return sorted((r for r in self.rows if r.group == key), key=lambda r: r.ratio)

    def curve(self, key: str) -> dict:
        """One group's curve, starting at the unpruned point: ``{"ratio", "channels", "fraction", "metric", "drop",
        "params_removed", "macs_removed"}``, lists of equal length (ratio 0 first)."""
        info = self.group(key)
        rows = self.rows_of(key)
        out = {"ratio": [0.0], "channels": [0], "fraction": [0.0], "metric": [self.baseline], "drop": [0.0],
               "params_removed": [0], "macs_removed": [0]}
        for r in rows:
            out["ratio"].append(r.ratio)
            out["channels"].append(r.channels)
            out["fraction"].append(r.channels / info.channels if info.channels else 0.0)
            out["metric"].append(r.metric)
            out["drop"].append(self.baseline - r.metric)
            out["params_removed"].append(r.params_removed)
            out["macs_removed"].append(r.macs_removed)
        return out

    def _value(self, row: ScanRow, value: str) -> float:
        if value == "drop":
            return self.baseline - row.metric
        if value == "fraction":
            ch = self._group_by_key[row.group].channels
            return row.channels / ch if ch else 0.0
        return getattr(row, value)

    def pivot(self, value: str = "metric") -> Pivot:
        """A (groups x ratios) :class:`Pivot` of ``value``: one of ``"metric"``, ``"drop"`` (baseline - metric),
        ``"channels"``, ``"fraction"`` (of the group's root channels), ``"params_removed"``, ``"macs_removed"``."""
        if value not in VALUES:
            raise SensitivityError(f"pivot value must be one of {VALUES}, got {value!r}")
        col = {r: j for j, r in enumerate(self.ratios)}
        row = {k: i for i, k in enumerate(self.keys())}
        vals: List[List[Optional[float]]] = [[None] * len(self.ratios) for _ in self.groups]
        for r in self.rows:
            if r.group in row and r.ratio in col:
                vals[row[r.group]][col[r.ratio]] = self._value(r, value)
        return Pivot(value=value, groups=self.keys(), ratios=list(self.ratios), values=vals)

    def most_sensitive(self, ratio: Optional[float] = None, k: Optional[int] = None) -> List[Tuple[str, float]]:
        """``[(key, drop)]`` sorted by the metric drop at ``ratio`` (default: the largest scanned), largest first."""
        ratio = max(self.ratios) if ratio is None else float(ratio)
        if ratio not in self.ratios:
            raise SensitivityError(f"ratio {ratio} was not scanned; ratios: {list(self.ratios)}")
        out = sorted(((r.group, self.baseline - r.metric) for r in self.rows if r.ratio == ratio),
                     key=lambda t: -t[1])
        return out[:k] if k else out

    # ---- conversion ------------------------------------------------------------------------------------------
    def as_dict(self) -> dict:
        return {
            "format": FORMAT, "baseline": self.baseline, "ratios": list(self.ratios),
            "base_params": self.base_params, "base_macs": self.base_macs,
            "groups": [g.as_dict() for g in self.groups], "rows": [r.as_dict() for r in self.rows],
            "meta": copy.deepcopy(self.meta), "stats": copy.deepcopy(self.stats),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "SensitivityTable":
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise SensitivityError(f"not a sensitivity table (expected a dict with format {FORMAT!r})")
        groups = [GroupInfo(**{**g, "layers": tuple(g.get("layers", ()))}) for g in d["groups"]]
        return cls([ScanRow(**r) for r in d["rows"]], d["baseline"], groups, d["ratios"], d["base_params"],
                   d["base_macs"], meta=d.get("meta"), stats=d.get("stats"))

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.as_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "SensitivityTable":
        return cls.from_dict(json.loads(text))

    def save(self, path: Union[str, os.PathLike]) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json(indent=1))

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "SensitivityTable":
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())

    def records(self) -> List[dict]:
        """The rows as dicts, with the derived ``drop`` and ``fraction`` added."""
        return [dict(r.as_dict(), drop=self._value(r, "drop"), fraction=self._value(r, "fraction")) for r in self.rows]

    def to_pandas(self):
        """The rows (with ``drop`` and ``fraction``) as a ``pandas.DataFrame`` (needs pandas)."""
        return _pandas().DataFrame.from_records(self.records())

    def __eq__(self, other) -> bool:
        if not isinstance(other, SensitivityTable):
            return NotImplemented
        a, b = self.as_dict(), other.as_dict()
        a.pop("stats"), b.pop("stats")
        return a == b

    def __len__(self) -> int:
        return len(self.rows)

    # ---- printing --------------------------------------------------------------------------------------------
    def summary(self, value: str = "drop") -> str:
        """The pivot of ``value`` as text, one line per group."""
        p = self.pivot(value)
        head = (f"SensitivityTable: {len(self.groups)} groups x {len(self.ratios)} ratios, baseline metric "
                f"{self.baseline:.6g}; {value} by ratio of root channels removed")
        w = max([len("group")] + [len(k) for k in p.groups])
        lines = [head, "  " + "group".ljust(w) + "".join(f"{r:>10.2f}" for r in p.ratios)]
        for k, vals in zip(p.groups, p.values):
            cells = "".join(f"{'-':>10}" if v is None else f"{v:>10.4g}" for v in vals)
            lines.append("  " + k.ljust(w) + cells)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(self.summary()) + "</pre>"
