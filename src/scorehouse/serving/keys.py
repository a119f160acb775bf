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
share a slot (a miss's score and feature vector are read from one node), and a generation's
~N/bucket_size buckets hash to as many slots, so a load and a removal spread evenly over the
masters.
"""

from __future__ import annotations

import functools
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal, get_args

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

# The type of a project's entity key: "int64" accepts only integer ids (the rule above),
# "string" any id `canonical_id` accepts.
IdType = Literal["int64", "string"]
ID_TYPES: tuple[str, ...] = get_args(IdType)


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


def checked_id(entity_id: object, id_type: IdType) -> str:
    """`canonical_id`, and for an int64 entity key also an integer id (`is_integer_id`):
    `-5`, `017`, `+17`, `17.0` or 2**63 name no entity, so they are refused, not looked up."""
    text = canonical_id(entity_id)
    if id_type == "int64" and not is_integer_id(text):
        shown = text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"
        raise InvalidEntityId(
            f"{shown!r} is not an int64 entity id (a non-negative decimal integer up to "
            "2^63-1: digits only, no sign, leading zero or decimal point)"
        )
    return text


def is_integer_id(text: str) -> bool:
    """True for ids bucketed by integer division (canonical non-negative decimal, int64)."""
    return INT_ID.fullmatch(text) is not None and int(text) <= MAX_INT_ID


def slot_of(entity_id: object, bucket_size: int, string_buckets: int) -> Slot:
    """Bucket and field of an entity id (the rule in the module docstring)."""
    return slot_of_canonical(canonical_id(entity_id), bucket_size, string_buckets)


def slot_of_canonical(text: str, bucket_size: int, string_buckets: int) -> Slot:
    """`slot_of` for an id already through `canonical_id` (a lookup checks it once)."""
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


# --- champion vs challenger arms -------------------------------------------------------

# An entity's arm in experiment E: slot = crc32(utf-8 bytes of "E:<id>") mod ARM_SLOTS, and it
# is served the challenger when slot < the generation's `experiment_slots`. Integers only, so
# every language computes the same arm; the name in the text draws new arms per experiment.
ARM_SLOTS = 10_000
Arm = Literal["champion", "challenger"]
ARMS: tuple[str, ...] = get_args(Arm)


def challenger_slots(share: float) -> int:
    """How many of the ARM_SLOTS slots are the challenger's for a share of the entities."""
    if not 0 <= share <= 1:
        raise ValueError(f"challenger share must be within [0, 1], got {share!r}")
    return math.floor(share * ARM_SLOTS + 0.5)


def arm_slot(experiment: str, entity_id: object) -> int:
    """The entity's slot in `experiment`: crc32 of utf-8 "experiment:id" mod ARM_SLOTS."""
    text = f"{experiment}:{canonical_id(entity_id)}"
    return zlib.crc32(text.encode("utf-8")) % ARM_SLOTS


def experiment_arm(experiment: str, entity_id: object, slots: int) -> Arm:
    """The arm an entity is in: the challenger's when its slot is below `slots`."""
    return "challenger" if arm_slot(experiment, entity_id) < slots else "champion"


def arm_slots(experiment: str, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """`arm_slot` of every id of an Arrow array (integers or strings), vectorised.

    A table-driven CRC-32 over the ids' utf-8 bytes, one byte position at a time across all
    rows, continuing from the crc of "experiment:": no Python object per row, so the nightly
    writes the arm of millions of entities in well under a second.
    """
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    text = pc.cast(ids, pa.large_string())
    if text.null_count:
        raise InvalidEntityId("null entity id")
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[
        text.offset : text.offset + len(text) + 1
    ]
    data = text.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    state = np.full(len(text), zlib.crc32(f"{experiment}:".encode()) ^ 0xFFFFFFFF, np.uint32)
    for j in range(int(lengths.max(initial=0))):
        rows = lengths > j
        if rows.all():
            state = _crc_step(state, raw[starts + j])
        else:
            state[rows] = _crc_step(state[rows], raw[starts[rows] + j])
    return ((state ^ np.uint32(0xFFFFFFFF)) % ARM_SLOTS).astype(np.int64)


def _crc_step(state: np.ndarray, byte: np.ndarray) -> np.ndarray:
    return _CRC_TABLE[(state ^ byte) & 0xFF] ^ (state >> np.uint32(8))


def _crc_table() -> np.ndarray:
    # The reflected IEEE 802.3 polynomial, as zlib's crc32.
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0xEDB88320), table >> 1)
    return table.astype(np.uint32)


_CRC_TABLE = _crc_table()


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
    return [str(value) for value in encode_feature_array(matrix).to_pylist()]


def encode_feature_array(matrix: np.ndarray) -> pa.StringArray:
    """`encode_feature_matrix` as an Arrow string array (no Python object per row)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError("feature matrix must be 2-d (rows x features)")
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        return pa.array([""] * matrix.shape[0], type=pa.string())
    columns = [
        pa.array(matrix[:, j], type=pa.float32(), from_pandas=True).cast(pa.string())
        for j in range(matrix.shape[1])
    ]
    if len(columns) == 1:
        return pc.fill_null(columns[0], "")
    return pc.binary_join_element_wise(*columns, ",", null_handling="replace", null_replacement="")


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


def command_starts(bucket_changes: np.ndarray, max_fields: int) -> np.ndarray:
    """First row of each HSET over bucket-sorted rows: a new command where the bucket changes
    (`bucket_changes[i]`: row i+1 is in another bucket than row i) and every `max_fields` rows
    within one bucket (short commands keep other clients' latency low: an HSET into a listpack
    costs time linear in the listpack's length per field)."""
    if max_fields < 1:
        raise ValueError("max_fields must be >= 1")
    n = len(bucket_changes) + 1
    run_starts = np.concatenate(([0], np.flatnonzero(bucket_changes) + 1))
    run_lengths = np.diff(np.append(run_starts, n))
    position = np.arange(n) - np.repeat(run_starts, run_lengths)
    return np.flatnonzero(position % max_fields == 0)


def resp_hsets(
    hash_keys: Sequence[bytes], starts: np.ndarray, fields: pa.Array, values: pa.Array
) -> list[bytes]:
    """`HSET key f v f v ...` commands in RESP2, command i over rows starts[i]..starts[i+1]-1.

    Equal to `resp_command` per command, but the per-row part ("$<n>\r\n<field>\r\n$<n>\r\n
    <value>\r\n") is built by Arrow kernels in one pass and sliced out of the result's data
    buffer: no Python object per row (the loader's cost was in that per-row Python).
    """
    _check_commands(hash_keys, starts, fields, values)
    if len(hash_keys) == 0:
        return []
    fields = fields.cast(pa.string())
    values = values.cast(pa.string())
    if fields.null_count or values.null_count:
        raise ValueError("HSET fields and values must not be null")
    rows = pc.binary_join_element_wise(
        "$",
        pc.binary_length(fields).cast(pa.string()),
        "\r\n",
        fields,
        "\r\n$",
        pc.binary_length(values).cast(pa.string()),
        "\r\n",
        values,
        "\r\n",
        "",
    )
    return _slice_commands(hash_keys, starts, rows)


@functools.cache
def field_prefixes(bucket_size: int) -> pa.BinaryArray:
    """RESP of each integer-id field 0..bucket_size-1 up to its value: "$<n>\r\n<field>\r\n$"."""
    return pa.array([b"$%d\r\n%d\r\n$" % (len(str(i)), i) for i in range(bucket_size)], pa.binary())


def resp_hsets_numbered(
    hash_keys: Sequence[bytes],
    starts: np.ndarray,
    field_numbers: np.ndarray,
    values: pa.Array,
    bucket_size: int,
) -> list[bytes]:
    """`resp_hsets` for integer-id fields given as numbers in [0, bucket_size): each field's
    RESP is taken from `field_prefixes` instead of being formatted per row (half the cost)."""
    numbers = pa.array(np.asarray(field_numbers, dtype=np.int64))
    _check_commands(hash_keys, starts, numbers, values)
    if len(hash_keys) == 0:
        return []
    if len(numbers) and (pc.min(numbers).as_py() < 0 or pc.max(numbers).as_py() >= bucket_size):
        raise ValueError(f"field numbers must lie in [0, {bucket_size})")
    text = values.cast(pa.string())
    if text.null_count:
        raise ValueError("HSET values must not be null")
    rows = pc.binary_join_element_wise(
        field_prefixes(bucket_size).take(numbers),
        pc.binary_length(text).cast(pa.string()).cast(pa.binary()),
        b"\r\n",
        text.cast(pa.binary()),
        b"\r\n",
        b"",
    )
    return _slice_commands(hash_keys, starts, rows)


def _check_commands(
    hash_keys: Sequence[bytes], starts: np.ndarray, fields: pa.Array, values: pa.Array
) -> None:
    if len(hash_keys) != len(starts):
        raise ValueError(f"{len(hash_keys)} keys for {len(starts)} commands")
    if len(fields) != len(values):
        raise ValueError(f"{len(fields)} fields for {len(values)} values")


def _slice_commands(hash_keys: Sequence[bytes], starts: np.ndarray, rows: pa.Array) -> list[bytes]:
    """HSET headers + the slices of the per-row RESP `rows` between consecutive starts."""
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)[rows.offset :]
    data = memoryview(rows.buffers()[2])
    bounds = np.append(np.asarray(starts, dtype=np.int64), len(rows))
    if bounds[0] != 0 or (np.diff(bounds) <= 0).any():
        raise ValueError("command starts must begin at 0 and increase")
    cuts = offsets[bounds].tolist()
    counts = (2 + 2 * np.diff(bounds)).tolist()
    return [
        b"*%d\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n" % (count, len(key), key) + data[start:stop]
        for key, count, start, stop in zip(hash_keys, counts, cuts[:-1], cuts[1:], strict=True)
    ]


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
