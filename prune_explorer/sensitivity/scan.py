"""The sensitivity scan: prune each group alone at several ratios, evaluate, restore, and tabulate.

    >>> import torch, torchvision, prune_explorer as pe
    >>> model = torchvision.models.resnet18().eval()
    >>> x = torch.randn(1, 3, 64, 64)
    >>> batch = torch.randn(4, 3, 64, 64)
    >>> with torch.no_grad():
    ...     ref = model(batch)
    >>> def eval_fn(m):                      # higher is better: minus the MSE to the original outputs
    ...     with torch.no_grad():
    ...         return -torch.nn.functional.mse_loss(m(batch), ref).item()
    >>> table = pe.sensitivity.scan(model, x, eval_fn, ratios=(0.25, 0.5), groups=["conv1", "layer4.0.conv1"],
    ...                             executor="serial", ignored_layers=[model.fc], progress=False)
    >>> len(table.rows), table.baseline
    (4, 0.0)

How a point is chosen: for a group with ``C`` root channels and a ratio ``r``, the target is ``C - int(C * (1 - r))``
root channels (as ``pe.pruner.BasePruner`` computes a local ratio), and the pruner's own
:meth:`~prune_explorer.pruner.BasePruner.propose` picks the lowest-importance whole units for it, rounded down to
keep ``round_to``, unit and head ties, ``max_pruning_ratio`` and the single-channel guard. Ratios that give the same
channels are evaluated once; a ratio that gives none is recorded with the baseline metric and nothing removed.
The channels are chosen here, in the caller's process, so every executor evaluates exactly the same points.
"""

from __future__ import annotations

import time
import warnings
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ..measure import count_ops_and_params
from ..plan import build_pruner, group_key, json_options, options_from_names, options_to_names
from .cache import ScanCache, callable_identity, model_fingerprint, point_id
from .errors import SensitivityError
from .evaluator import PointResult, PointTask, WorkerSpec
from .executors import ScanJob, resolve_executor
from .table import GroupInfo, ScanRow, SensitivityTable
from ..validation import is_ratio

__all__ = ["scan", "DEFAULT_RATIOS"]

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _check_ratios(ratios) -> Tuple[float, ...]:
    try:
        values = [float(r) for r in ratios if not isinstance(r, bool)]
        ok = len(values) == len(list(ratios))
    except (TypeError, ValueError):
        ok, values = False, []
    if not ok or not values:
        raise SensitivityError(f"ratios must be a non-empty list of numbers in (0, 1), got {ratios!r:.80}. "
                               "Fix: e.g. ratios=(0.1, 0.2, ..., 0.9)")
    bad = [r for r in values if not is_ratio(r, low_open=True)]
    if bad:
        raise SensitivityError(f"ratios {bad} are out of range: each ratio is the fraction of a group's channels "
                               "removed, in (0, 1) (0 changes nothing, 1 would remove every channel)")
    return tuple(sorted(set(values)))


def _select_groups(model: nn.Module, all_keys: List[str], groups) -> Optional[set]:
    if groups is None:
        return None
    if isinstance(groups, (str, nn.Module)):
        groups = [groups]
    names = {id(m): n for n, m in model.named_modules()}
    wanted = []
    for g in groups:
        if isinstance(g, nn.Module):
            if id(g) not in names:
                raise SensitivityError(f"groups: {type(g).__name__} is not a submodule of the model. Fix: pass "
                                       "group keys (table.keys()) or the model's own root layers")
            g = names[id(g)]
        if not isinstance(g, str):
            raise SensitivityError(f"groups must hold group keys (root layer names) or modules, got {g!r:.60}")
        wanted.append(g)
    unknown = [g for g in wanted if g not in all_keys]
    if unknown:
        import difflib

        hint = difflib.get_close_matches(unknown[0], all_keys, n=1)
        raise SensitivityError(f"groups: {unknown[:5]} name no prunable group of this model"
                               f"{f' (did you mean {hint[0]!r}?)' if hint else ''}. Groups: {all_keys[:8]}"
                               f"{'...' if len(all_keys) > 8 else ''}")
    return set(wanted)


def scan(model: nn.Module, example_inputs, eval_fn: Callable[[nn.Module], float], importance: Optional[Callable] = None,
         ratios: Sequence[float] = DEFAULT_RATIOS, groups: Optional[Iterable[Union[str, nn.Module]]] = None,
         executor="local", workers: Optional[int] = None, cache_dir=None, cache_key: Optional[str] = None,
         ignored_layers=None, round_to: Optional[int] = None, max_pruning_ratio: float = 1.0,
         pruner_options: Optional[dict] = None, seed: int = 0,
         progress: Union[bool, Callable[[int, int], None]] = True, calibration=None) -> SensitivityTable:
    """Prune every group (or the chosen ones) alone at each ratio, evaluate, restore; return a table.

    Args:
        model: the model (left bit-identical: with ``executor="serial"`` it is pruned and restored point by point,
            otherwise only copies in the workers are pruned).
        example_inputs: inputs for tracing and for counting MACs.
        eval_fn: ``eval_fn(model) -> float``, higher is better (accuracy on a held-out batch, minus a loss...).
            Put the model in eval mode inside it; run under ``torch.no_grad()``. Called with the CPU random
            generator seeded with ``seed``. Must be picklable for ``executor="local"`` / ``"ray"``.
        importance: ranks the channels (default ``pe.importance.MagnitudeImportance(p=2)``).
        ratios: fractions of each group's root channels to remove, each in (0, 1).
        groups: group keys (``"layer1.0.conv1"``, see :func:`prune_explorer.plan.group_key`) or root layers to scan
            (default: every group the pruner would prune).
        executor: ``"local"`` (worker processes, default), ``"ray"``, ``"serial"`` (this process), or an
            :class:`~.executors.Executor` (see :mod:`.executors`).
        workers: worker processes / Ray actors (default: one per CPU).
        cache_dir: a folder for the on-disk cache (see :mod:`.cache`); an interrupted scan run again with the same
            settings only evaluates the points it had not finished.
        cache_key: a string identifying ``eval_fn`` and its data in the cache instead of its code's hash.
        ignored_layers, round_to, max_pruning_ratio: as for :class:`~prune_explorer.pruner.BasePruner`.
        pruner_options: other :class:`~prune_explorer.pruner.BasePruner` options (``num_heads``,
            ``prune_num_heads``, ``in_channel_groups``, ``forward_fn``, ...).
        seed: the seed set before each call of ``eval_fn``.
        progress: show a progress bar (``tqdm.auto``: a widget in notebooks, text in terminals); or a function
            ``progress(done, total)`` called as points finish (points, the cached ones included), e.g. for an app.
        calibration: calibration data for a data-driven ``importance`` (Wanda-sp, FLAP, Taylor...): one pass here,
            before the channels of every point are chosen (the workers get the chosen channels).

    Returns:
        a :class:`~.table.SensitivityTable`; ``table.stats`` holds timings.

    Raises:
        SensitivityError: bad input, or ``eval_fn`` failed / returned something other than a finite float (the
            message says which point); the model is unchanged.
    """
    t_start = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise SensitivityError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(eval_fn):
        raise SensitivityError(f"eval_fn must be callable as eval_fn(model) -> float (higher is better), got "
                               f"{type(eval_fn).__name__} {eval_fn!r:.60}")
    ratios = _check_ratios(ratios)
    if not (isinstance(progress, bool) or callable(progress)):
        raise SensitivityError(f"progress must be True, False or a function progress(done, total), got {progress!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SensitivityError(f"seed must be an int, got {seed!r}")
    if cache_key is not None and not isinstance(cache_key, str):
        raise SensitivityError(f"cache_key must be a string, got {cache_key!r}")
    runner = resolve_executor(executor, workers)
    if importance is None:
        from ..importance import MagnitudeImportance

        importance = MagnitudeImportance(p=2)
    names = options_to_names(model, ignored_layers=ignored_layers, round_to=round_to,
                             max_pruning_ratio=max_pruning_ratio, **(pruner_options or {}))
    resolved = options_from_names(model, names)
    pruner = build_pruner(model, example_inputs, importance, resolved)
    if calibration is not None:
        pruner.use_calibration(calibration)
        pruner.calibrate()
    forward_fn = resolved.get("forward_fn")

    # ---- the points, chosen here --------------------------------------------------------------------------------
    all_groups = list(pruner.get_all_groups())
    chosen = _select_groups(model, [group_key(g) for g in all_groups], groups)
    infos: List[GroupInfo] = []
    skipped: Dict[str, str] = {}
    points: Dict[Tuple[str, float], PointTask] = {}
    for g in all_groups:
        key = group_key(g)
        if chosen is not None and key not in chosen:
            continue
        total = len(g.root_idxs)
        prop = pruner.proposal(g)  # carries the scores, reused for every ratio
        if prop.importance is None and prop.skip_kind == "importance":
            skipped[key] = prop.skip_reason or f"{type(importance).__name__} cannot score this group"
            continue
        max_rm = pruner.max_removable(prop)
        if max_rm == 0:
            skipped[key] = prop.skip_reason or "the guards / round_to allow no channel to be removed"
            continue
        layers = []
        for it in g.items:
            n = it.dep.space.name
            if n not in layers:
                layers.append(n)
        infos.append(GroupInfo(key=key, root=g.root_name, kind=getattr(g, "kind", None) or "channels",
                               channels=total, max_removable=max_rm, members=len(g.items), layers=tuple(layers)))
        for r in ratios:
            n_target = total - int(total * (1 - r))
            idxs = tuple(sorted(int(i) for i in pruner.propose(prop, n_target))) if n_target > 0 else ()
            points[(key, r)] = PointTask(point_id(key, idxs) if idxs else "none", key, idxs)
    if not infos:
        raise SensitivityError("no group to scan: " + ("; ".join(f"{k}: {v}" for k, v in skipped.items())
                                                        or "the model has no prunable group with these options"))
    macs0, params0 = count_ops_and_params(model, example_inputs, forward_fn=forward_fn)
    baseline_task = PointTask("baseline", None, ())
    tasks: Dict[str, PointTask] = {"baseline": baseline_task}
    for t in points.values():
        if t.idxs:
            tasks.setdefault(t.id, t)

    # ---- the cache ----------------------------------------------------------------------------------------------
    fingerprint = model_fingerprint(model)
    meta = {
        "importance": repr(importance), "options": json_options(names), "model": fingerprint,
        "eval": cache_key if cache_key is not None else callable_identity(eval_fn), "seed": seed,
        "skipped": skipped,
    }
    cache = ScanCache(cache_dir, {k: meta[k] for k in ("importance", "options", "model", "eval", "seed")}) \
        if cache_dir is not None else None
    done: Dict[str, dict] = cache.load() if cache is not None else {}
    done = {k: v for k, v in done.items() if k in tasks}
    todo = [t for tid, t in tasks.items() if tid not in done]

    # ---- run ------------------------------------------------------------------------------------------------
    spec = WorkerSpec(example_inputs=example_inputs, eval_fn=None, options=names, base_params=params0,
                      base_macs=macs0, seed=seed)
    job = ScanJob(model=model, pruner=pruner, eval_fn=eval_fn, spec=spec, forward_fn=forward_fn)
    from tqdm.auto import tqdm

    restored: Dict[str, None] = {}
    point_seconds = eval_seconds = 0.0
    t_run = time.perf_counter()
    first_result = None
    report = progress if callable(progress) else None
    bar = tqdm(total=len(tasks), initial=len(done), desc=f"sensitivity scan ({runner.name})", unit="pt",
               disable=report is not None or not progress, leave=True)
    if report is not None:
        report(len(done), len(tasks))
    results = runner.run(job, todo)
    try:
        for res in results:
            if first_result is None:
                first_result = time.perf_counter() - t_run
            entry = res.as_dict()
            done[res.id] = entry
            if cache is not None:
                cache.append(entry)
            point_seconds += res.seconds
            eval_seconds += res.eval_seconds
            for name in res.restored:
                restored.setdefault(name)
            bar.update(1)
            if report is not None:
                report(len(done), len(tasks))
    finally:
        results.close()
        bar.close()
        if cache is not None:
            cache.close()
    if restored:
        shown = ", ".join(list(restored)[:3])
        warnings.warn(f"eval_fn changed {len(restored)} tensor(s) of the model in place ({shown}...): e.g. BatchNorm "
                      "statistics updated because the model was in train mode. The scan restored them after every "
                      "point, but each metric was measured that way. Fix: call model.eval() (and use torch.no_grad()) "
                      "inside eval_fn", stacklevel=2)

    # ---- the table ------------------------------------------------------------------------------------------
    baseline = done["baseline"]["metric"]
    rows = []
    for info in infos:
        for r in ratios:
            t = points[(info.key, r)]
            if not t.idxs:
                rows.append(ScanRow(info.key, r, 0, baseline, 0, 0))
                continue
            e = done[t.id]
            rows.append(ScanRow(info.key, r, len(t.idxs), float(e["metric"]), int(e["params_removed"]),
                                int(e["macs_removed"])))
    n_new = len(todo)
    stats = {
        "executor": runner.name, "workers": getattr(runner, "workers", 1), "points": len(tasks),
        "evaluated": n_new, "from_cache": len(tasks) - n_new, "seconds": time.perf_counter() - t_start,
        "run_seconds": time.perf_counter() - t_run, "first_result_seconds": first_result,
        "point_seconds": point_seconds, "eval_seconds": eval_seconds,
        "cache": cache.path if cache is not None else None,
    }
    table = SensitivityTable(rows, baseline, infos, ratios, params0, macs0, meta=meta, stats=stats)
    table._context = {"model": model, "example_inputs": example_inputs, "importance": importance, "options": names}
    return table
