"""Point-in-time features: registry, SQL definitions, incremental daily builds."""
