"""Colours used consistently across the explorer's graph, group card and curves (plain constants, no widgets)."""

ROOT_COLOR = "#e8590c"  # the current group's root
MEMBER_COLOR = "#ffc078"  # layers coupled to it
PRUNED_COLOR = "#d0ebff"  # layers already pruned
IGNORED_COLOR = "#dee2e6"  # ignored layers
KEEP_COLOR = "#4c6ef5"  # kept channels in the histogram
REMOVE_COLOR = "#e8590c"  # channels proposed for removal
PARAMS_COLOR = "#1c7ed6"
MACS_COLOR = "#2f9e44"
