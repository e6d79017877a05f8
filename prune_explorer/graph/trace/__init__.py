"""Tracing: one forward pass that follows channel labels through every op and layer call (the tracer, the op rules,
channel labels, traced integers and the attributes they come from, meta-tensor shapes)."""
