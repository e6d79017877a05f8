"""Multi-head attention: the heads the dependency graph finds, and the attention modules' own head bookkeeping.

Imported only where a model has attention (see :mod:`.heads`)."""
