"""The Redis key contract and value encodings (pure functions; docs/redis-keys.md explains them).

Every key is plain text that any language can build and read with GET/HGET:

    {ns}:current                      STRING  the live generation id G
    {ns}:generations                  ZSET    G -> created_at (epoch s), every generation present
    {ns}:lock                         STRING  held by the one publisher loading now
    {ns}:{G}:meta                     HASH    ds, model_name, model_version, count, loaded_at, ...
    {ns}:{G}:s:{<bucket>}             HASH    field -> score (scaled integer)
    {ns}:{G}:f:{<bucket>}             HASH    field -> feature vector (comma-separated floats)

Bucket and field of an entity id:
  * integer id (decimal text matching 0|[1-9][0-9]*, at most 2**63-1): bucket = id // bucket_size,
    field = id % bucket_size (both decimal). A bucket never holds more than bucket_size fields.
  * any other id is a string id: bucket = "x" + (crc32(utf-8 bytes) mod string_buckets), field =
    the id itself; crc32 is zlib's (IEEE 802.3), string_buckets is in the generation's metadata.

The `{<bucket>}` part is a Redis Cluster hash tag: the score and feature buckets of one entity
share a slot (a miss reads features and writes the score back on one node), and a generation's
~N/1000 buckets hash to as many slots, so a load and a removal spread evenly over the masters.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Scores are stored as round(score * 1e9): a plain integer that listpacks store in 5 bytes
# and any language parses; absolute error <= 5e-10.
SCORE_SCALE = 1_000_000_000
INT_ID = re.compile(r"0|[1-9][0-9]{0,18}")
MAX_INT_ID = 2**63 - 1
MAX_ID_LENGTH = 256
# String-id buckets are sized for 80% fill so that few exceed bucket_size by chance.
STRING_BUCKET_FILL = 0.8
_GENERATION_PART = re.compile(r"[^A-Za-z0-9._-]+")


class InvalidEntityId(ValueError):
    """An entity id that the key contract cannot represent."""


@dataclass(frozen=True)
class Slot:
    """Where one entity lives inside a generation: bucket label and hash field."""

    bucket: str
    field: str


def pointer_key(ns: str) -> str:
    return f"{ns}:current"


def generations_key(ns: str) -> str:
    return f"{ns}:generations"


def lock_key(ns: str) -> str:
    return f"{ns}:lock"


def meta_key(ns: str, generation: str) -> str:
    return f"{ns}:{generation}:meta"


def score_key(ns: str, generation: str, bucket: str) -> str:
    return f"{ns}:{generation}:s:{{{bucket}}}"


def features_key(ns: str, generation: str, bucket: str) -> str:
    return f"{ns}:{generation}:f:{{{bucket}}}"


def generation_pattern(ns: str, generation: str) -> str:
    """SCAN MATCH pattern of every key of one generation (meta included)."""
    return f"{ns}:{generation}:*"


def score_pattern(ns: str, generation: str) -> str:
    return f"{ns}:{generation}:s:*"


def features_pattern(ns: str, generation: str) -> str:
    return f"{ns}:{generation}:f:*"


def canonical_id(entity_id: object) -> str:
    """The text form of an id, or InvalidEntityId (empty, too long, control chars, bool...)."""
    if isinstance(entity_id, bool) or entity_id is None:
        raise InvalidEntityId(f"entity id must be an integer or a string, got {entity_id!r}")
    if isinstance(entity_id, int | np.integer):
        return str(int(entity_id))
    if isinstance(entity_id, bytes):
        try:
            entity_id = entity_id.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEntityId("entity id is not valid UTF-8") from exc
    if not isinstance(entity_id, str):
        raise InvalidEntityId(
            f"entity id must be an integer or a string, got {type(entity_id).__name__}"
        )
    if not entity_id:
        raise InvalidEntityId("entity id is empty")
    if len(entity_id.encode("utf-8")) > MAX_ID_LENGTH:
        raise InvalidEntityId(f"entity id is longer than {MAX_ID_LENGTH} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in entity_id):
        raise InvalidEntityId("entity id contains control characters")
    if entity_id != entity_id.strip():
        raise InvalidEntityId("entity id has leading or trailing whitespace")
    return entity_id


def is_integer_id(text: str) -> bool:
    """True for ids bucketed by integer division (canonical non-negative decimal, int64)."""
    return INT_ID.fullmatch(text) is not None and int(text) <= MAX_INT_ID


def slot_of(entity_id: object, bucket_size: int, string_buckets: int) -> Slot:
    """Bucket and field of an entity id (the rule in the module docstring)."""
    text = canonical_id(entity_id)
    if is_integer_id(text):
        value = int(text)
        return Slot(str(value // bucket_size), str(value % bucket_size))
    if string_buckets < 1:
        raise InvalidEntityId(f"no string ids in this generation: {text!r} cannot be present")
    return Slot(f"x{zlib.crc32(text.encode('utf-8')) % string_buckets}", text)


def string_bucket_count(string_ids: int, bucket_size: int) -> int:
    """How many string-id buckets a generation with `string_ids` string ids gets (0 if none)."""
    if string_ids <= 0:
        return 0
    return max(1, math.ceil(string_ids / (bucket_size * STRING_BUCKET_FILL)))


def generation_id(ds: date, model_version: str, attempt: str) -> str:
    """`YYYYMMDD-<model version>-<attempt>`: plain text, no ':' or braces, sorts by date."""
    version = _GENERATION_PART.sub("_", str(model_version)) or "_"
    attempt_text = _GENERATION_PART.sub("_", attempt) or "_"
    return f"{ds:%Y%m%d}-{version}-{attempt_text}"


# --- scores ----------------------------------------------------------------------------


def encode_score(score: float) -> int:
    """Scaled integer of a score (half rounded up); NaN or infinite scores are refused."""
    if not math.isfinite(score):
        raise ValueError(f"score must be finite, got {score!r}")
    return math.floor(score * SCORE_SCALE + 0.5)


def encode_scores(scores: np.ndarray) -> np.ndarray:
    """Vectorised `encode_score` (same IEEE double arithmetic, so identical results)."""
    values = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("scores must be finite")
    return np.floor(values * SCORE_SCALE + 0.5).astype(np.int64)


def decode_score(raw: bytes | str | int) -> float:
    return int(raw) / SCORE_SCALE


# --- feature vectors -------------------------------------------------------------------


def encode_feature_matrix(matrix: np.ndarray) -> list[str]:
    """One text per row: float32 values in registry order, shortest round-trip decimal,
    comma-separated, empty for missing (NaN). Parsing a value as a double and rounding it to
    float32 gives back the exact float32, so online input equals batch input bit for bit."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError("feature matrix must be 2-d (rows x features)")
    if matrix.shape[0] == 0:
        return []
    columns = [
        pa.array(matrix[:, j], type=pa.float32(), from_pandas=True).cast(pa.string())
        for j in range(matrix.shape[1])
    ]
    if len(columns) == 1:
        return [value or "" for value in columns[0].to_pylist()]
    joined = pc.binary_join_element_wise(
        *columns, ",", null_handling="replace", null_replacement=""
    )
    return [str(value) for value in joined.to_pylist()]


def decode_features(raw: bytes | str, n_features: int) -> np.ndarray:
    """Model input (1 x n float32) from an encoded vector; the length must match."""
    text = raw.decode("ascii") if isinstance(raw, bytes) else raw
    parts = text.split(",")
    if len(parts) != n_features:
        raise ValueError(f"feature vector has {len(parts)} values, the model expects {n_features}")
    row = [float(part) if part else math.nan for part in parts]
    return np.array(row, dtype=np.float32).reshape(1, -1)


# --- RESP (the wire format the loader writes itself) ----------------------------------


def resp_command(args: Sequence[bytes | str | int]) -> bytes:
    """One command in RESP2 (what redis-cli --pipe sends)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


# --- access control ----------------------------------------------------------------------

READER_COMMANDS = (
    "get", "mget", "hget", "hmget", "hgetall", "hlen", "hexists", "exists", "zrange", "ping", "info",
    "hello", "auth", "readonly", "cluster|slots", "cluster|shards", "cluster|nodes",
)  # fmt: skip


def reader_acl_rules(ns: str, password: str) -> list[str]:
    """ACL SETUSER rules for a downstream reader: read commands on `{ns}:*` keys only.

    `ACL SETUSER <name> <rules...>`; docs/redis-keys.md shows the same rules for redis-cli.
    """
    return [
        "reset",
        "on",
        f">{password}",
        f"~{ns}:*",
        "resetchannels",
        "-@all",
        *(f"+{command}" for command in READER_COMMANDS),
    ]
