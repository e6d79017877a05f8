"""Nodes of the traced graph: layers, operations between them, loose parameters, inputs and the output.

A :class:`Node` is what the explorer draws and what :class:`~prune_explorer.graph.model.group.Dependency` points at
(``dep.target.module``, ``dep.target.name``, as in Torch-Pruning). Edges follow the data: ``a.outputs`` holds
the nodes that read a tensor ``a`` produced.

Example::

    >>> n = Node(name="layer1.0.conv1", kind="layer", module=None, op="Conv2d")
    >>> n
    <Node layer1.0.conv1: Conv2d>
"""

from __future__ import annotations

from typing import List, Optional

import torch.nn as nn


class Node:
    """A layer (``kind="layer"``), an operation (``"op"``), a loose parameter (``"param"``), ``"input"`` or ``"output"``."""

    __slots__ = ("name", "kind", "module", "op", "inputs", "outputs", "spaces", "_in_set", "_out_set")

    def __init__(self, name: str, kind: str, module: Optional[nn.Module], op: str):
        self.name = name
        self.kind = kind
        self.module = module
        self.op = op
        self.inputs: List["Node"] = []
        self.outputs: List["Node"] = []
        self.spaces = []  # the ChannelSpaces this node owns (layers and parameters)
        self._in_set = set()
        self._out_set = set()

    def add_input(self, node: "Node") -> None:
        if id(node) not in self._in_set:
            self._in_set.add(id(node))
            self.inputs.append(node)

    def add_output(self, node: "Node") -> None:
        if id(node) not in self._out_set:
            self._out_set.add(id(node))
            self.outputs.append(node)

    @property
    def type(self) -> str:
        return self.op

    @property
    def is_layer(self) -> bool:
        return self.kind == "layer"

    def channels(self) -> str:
        """Readable channel counts, e.g. ``"in 64 → out 128"`` (current/original when pruned)."""
        parts = []
        for s in self.spaces:
            cur, orig = s.current_size, s.size
            txt = f"{cur}" if cur == orig else f"{cur}/{orig}"
            parts.append(txt if s.passthrough else f"{s.side} {txt}")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"<Node {self.name}: {self.op}>"

    def format(self) -> str:
        ins = ", ".join(n.name for n in self.inputs) or "-"
        ch = self.channels()
        return f"{self.name:<32} {self.op:<22} {ch:<22} <- {ins}"
