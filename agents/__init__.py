"""Agents: one module each, topic in, pure function, sink out."""
