"""Editing the model: all-or-nothing pruning and undo records, tied parameters, size-attribute rewrites, snapshots."""
