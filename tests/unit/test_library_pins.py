"""Where scorehouse relies on a library beyond its documented API, a pin that fails
loudly on an upgrade, naming what to re-check."""

from __future__ import annotations

import inspect

import redis
import xgboost
from redis.connection import Connection, ConnectionPool
from xgboost.spark import SparkXGBClassifier


def test_the_label_count_override_still_meets_the_method_it_replaces() -> None:
    # training.train.BinaryXGBClassifier hands _get_distributed_train_params an empty
    # frame: the method must still only count labels to choose binary vs multi-class.
    source = inspect.getsource(SparkXGBClassifier._get_distributed_train_params)
    assert xgboost.__version__ == "3.2.0", "re-check BinaryXGBClassifier, then move this pin"
    assert "countDistinct(alias.label)" in source
    assert "num_classes <= 2" in source
    assert list(inspect.signature(SparkXGBClassifier._get_distributed_train_params).parameters) == [
        "self",
        "dataset",
    ]


def test_the_direct_lookup_path_finds_the_connection_methods_it_uses() -> None:
    # serving.client._Direct writes packed HGETs on pooled connections and reads replies
    # with the connection's own parser.
    assert redis.__version__.split(".")[0] == "8", "re-check serving.client._Direct"
    assert "check_health" in inspect.signature(Connection.send_packed_command).parameters
    for method in (Connection.read_response, Connection.disconnect, ConnectionPool.get_connection):
        assert callable(method)
