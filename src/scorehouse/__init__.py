"""scorehouse: a batch prediction warehouse (features → XGBoost → Delta → Redis)."""

__version__ = "0.1.0"
