"""Training: time splits, distributed XGBoost, baselines, evaluation, MLflow and the champion gate.

Entry points: `training.train.train_from_warehouse` / `train_model` (Spark), and
`training.registry.load_model` / `alias_version` / `promote` / `rollback` (no Spark).
This package module imports nothing, so `load_model` users do not pull in Spark code.
"""
