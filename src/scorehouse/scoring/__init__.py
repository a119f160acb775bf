"""Nightly batch scoring of the full entity space, the predictions table and drift monitoring."""
