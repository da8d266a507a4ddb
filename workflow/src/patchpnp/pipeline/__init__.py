"""Workflow support (``common.smk``): config checks, the plan, provenance, atomic writes, faults."""
