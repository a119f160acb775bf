"""Serving predictions from Redis: key contract, loader, online client, fallback, HTTP service."""
