"""Compensation without training: after channels are removed, the layers that read them are corrected from
calibration statistics (bias compensation, least-squares reconstruction); exact to undo. See :mod:`.compensate`."""

from .compensate import Compensation
from .solve import deltas

__all__ = ["Compensation", "deltas"]
