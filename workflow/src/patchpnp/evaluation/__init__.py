"""Evaluation and reporting (``report.smk``): metrics, tables, claim verdicts, figures, profiles."""
