"""Data in: the seeded demo generator, validation of user files, and ingest into the raw tables."""
