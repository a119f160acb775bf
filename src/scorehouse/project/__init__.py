"""A scorehouse project: the user's declarations (entity, sources, features, label, model)."""
