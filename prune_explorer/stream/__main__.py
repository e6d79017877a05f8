"""``python -m prune_explorer.stream --checkpoint DIR --plan plan.json --out DIR2 [--importance l2] [--device cuda]``

Prunes a ``save_pretrained`` checkpoint (safetensors) as a saved plan says, one block at a time, into a folder that
``from_pretrained`` loads (see :func:`prune_explorer.stream.stream_checkpoint`). Interrupted, the same command
resumes: finished blocks are not redone. Exit status 2 with a one-line reason on a :class:`StreamError`.
"""

from __future__ import annotations

import argparse
import sys

IMPORTANCES = ("l2", "l1", "lamp", "fpgm", "random")


def make_importance(name: str, seed: int):
    import torch

    from .. import importance as imp

    if name == "l2":
        return imp.MagnitudeImportance(p=2)
    if name == "l1":
        return imp.MagnitudeImportance(p=1)
    if name == "lamp":
        return imp.LAMPImportance()
    if name == "fpgm":
        return imp.FPGMImportance()
    torch.manual_seed(seed)
    return imp.RandomImportance()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prune_explorer.stream", description=__doc__.split("\n\n")[1])
    ap.add_argument("--checkpoint", required=True, help="folder written by save_pretrained (safetensors)")
    ap.add_argument("--plan", required=True, help="a plan saved as JSON (PruningPlan.save, the explorer's Save plan)")
    ap.add_argument("--out", required=True, help="output folder (new, or an unfinished run to resume)")
    ap.add_argument("--importance", default="l2", choices=IMPORTANCES,
                    help="criterion ranking the channels (default l2: MagnitudeImportance(p=2))")
    ap.add_argument("--seed", type=int, default=0, help="torch seed for --importance random")
    ap.add_argument("--device", default="cpu", help="where groups are scored: cpu (default) or cuda")
    ap.add_argument("--calibration", default=None,
                    help="token ids (a .pt tensor) for calibrated criteria; not supported by streaming yet")
    ap.add_argument("--workers", type=int, default=1, help="local processes for the write pass (default 1)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    from .errors import StreamError
    from .run import stream_checkpoint

    try:
        if args.calibration is not None:
            raise StreamError("--calibration: calibrated criteria do not stream yet; use a weight criterion "
                              f"({', '.join(IMPORTANCES)})")
        report = stream_checkpoint(args.checkpoint, args.plan, args.out,
                                   importance=make_importance(args.importance, args.seed), device=args.device,
                                   progress=not args.no_progress, workers=args.workers)
    except StreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    r = report
    print(f"{r.out}: {r.params_before:,} -> {r.params_after:,} parameters"
          + (f" (plan predicted {r.predicted_params:,})" if r.predicted_params is not None else "")
          + f"; {r.units_written} shard(s) written, {r.units_resumed} resumed; {r.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
