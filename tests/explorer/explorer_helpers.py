"""Snapshot helpers and a metric for the explorer tests (their models are in tests/small_models.py)."""

import torch


def snapshot(model):
    """Everything undo must restore: the state_dict (cloned) and the modules' printed attributes."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, repr(model)


def same_as(model, snap) -> bool:
    sd, rep = snap
    now = model.state_dict()
    return repr(model) == rep and set(now) == set(sd) and all(
        now[k].shape == sd[k].shape and torch.equal(now[k], sd[k]) for k in sd)


#: what :func:`neg_mse` compares with: a batch, the unpruned model's outputs on it (``reference_outputs``), the calls
#: so far, and after how many calls it raises KeyboardInterrupt (None: never). Kept outside the function so that its
#: cache identity (code and name) stays the same from scan to scan.
MSE_STATE = {"batch": None, "ref": None, "calls": 0, "stop_after": None}


def reference_outputs(model, batch) -> None:
    """Make ``model``'s outputs on ``batch`` what :func:`neg_mse` compares with (and reset its count)."""
    with torch.no_grad():
        MSE_STATE.update(batch=batch, ref=model(batch), calls=0, stop_after=None)


def neg_mse(model):
    """eval_fn: minus the MSE to the reference outputs (see :data:`MSE_STATE`); raises KeyboardInterrupt after
    ``stop_after`` calls, if set."""
    MSE_STATE["calls"] += 1
    if MSE_STATE["stop_after"] is not None and MSE_STATE["calls"] > MSE_STATE["stop_after"]:
        raise KeyboardInterrupt
    model.eval()
    with torch.no_grad():
        return -torch.nn.functional.mse_loss(model(MSE_STATE["batch"]), MSE_STATE["ref"]).item()
