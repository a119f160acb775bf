"""Nightly batch scoring of the full entity space and the predictions table.

Each run also calls the drift monitor (`scorehouse.monitoring.daily`).
"""
