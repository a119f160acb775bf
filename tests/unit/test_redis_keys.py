"""The Redis key contract and encodings (pure functions)."""

from __future__ import annotations

import math
import zlib
from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from scorehouse.serving import keys


@pytest.mark.parametrize(
    ("entity_id", "bucket", "field"),
    [
        (4999123, "4999", "123"),
        ("4999123", "4999", "123"),
        (0, "0", "0"),
        (999, "0", "999"),
        (1000, "1", "0"),
        (2**63 - 1, str((2**63 - 1) // 1000), str((2**63 - 1) % 1000)),
    ],
)
def test_integer_ids_bucket_by_integer_division(entity_id: object, bucket: str, field: str) -> None:
    assert keys.slot_of(entity_id, 1000, 0) == keys.Slot(bucket, field)


@pytest.mark.parametrize(
    "entity_id", ["cust-ab", "00123", "-5", "1e3", "9223372036854775808", "a b", "é"]
)
def test_other_ids_are_string_ids_bucketed_by_crc32(entity_id: str) -> None:
    slot = keys.slot_of(entity_id, 1000, 7)
    assert slot == keys.Slot(f"x{zlib.crc32(entity_id.encode('utf-8')) % 7}", entity_id)


def test_worked_example_from_the_docs() -> None:
    # docs/redis-keys.md: "cust-ab" in a generation with 6250 string buckets.
    assert zlib.crc32(b"cust-ab") == 3376232321
    assert keys.slot_of("cust-ab", 1000, 6250) == keys.Slot("x1071", "cust-ab")
    assert keys.score_key("sh", "20260115-3-04503946", "4999") == "sh:20260115-3-04503946:s:{4999}"
    assert keys.features_key("sh", "G", "x3") == "sh:G:f:{x3}"
    assert keys.pointer_key("sh") == "sh:current"
    assert keys.meta_key("sh", "G") == "sh:G:meta"


def test_string_id_without_string_buckets_is_refused() -> None:
    with pytest.raises(keys.InvalidEntityId, match="no string ids"):
        keys.slot_of("abc", 1000, 0)


@pytest.mark.parametrize("bad", ["", None, True, "a\nb", "x" * 257, 1.5, " ", " 12"])
def test_invalid_ids_are_rejected_with_a_reason(bad: object) -> None:
    with pytest.raises(keys.InvalidEntityId):
        keys.canonical_id(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "abc",
        "-5",
        "17.0",
        "+17",
        "017",
        "1e3",
        "9223372036854775808",
        "99999999999999999999",
        "../x",
        "1" * 200,
        -5,
        2**63,
        np.int64(-1),
        np.uint64(2**63),
        "",
        True,
    ],
)
def test_int64_entity_keys_accept_only_canonical_non_negative_int64(bad: object) -> None:
    with pytest.raises(keys.InvalidEntityId):
        keys.checked_id(bad, "int64")


@pytest.mark.parametrize(
    ("entity_id", "text"),
    [(0, "0"), ("17", "17"), (np.int32(17), "17"), (2**63 - 1, "9223372036854775807")],
)
def test_int64_entity_keys_give_the_integer_ids_text(entity_id: object, text: str) -> None:
    assert keys.checked_id(entity_id, "int64") == text


def test_string_entity_keys_keep_the_canonical_id_rules() -> None:
    assert [keys.checked_id(e, "string") for e in ("cust-ab", "017", "-5", 17)] == [
        "cust-ab",
        "017",
        "-5",
        "17",
    ]
    with pytest.raises(keys.InvalidEntityId):
        keys.checked_id(" 12", "string")


def test_an_invalid_int64_id_is_named_shortly_in_the_message() -> None:
    with pytest.raises(keys.InvalidEntityId, match=r"not an int64 entity id") as raised:
        keys.checked_id("9" * 250, "int64")
    assert len(str(raised.value)) < 200


def test_string_buckets_are_sized_for_eighty_percent_fill() -> None:
    assert keys.string_bucket_count(0, 1000) == 0
    assert keys.string_bucket_count(1, 1000) == 1
    assert keys.string_bucket_count(800, 1000) == 1
    assert keys.string_bucket_count(801, 1000) == 2
    assert keys.string_bucket_count(5_000_000, 1000) == 6250


def test_generation_id_is_plain_text_sorted_by_date() -> None:
    gen = keys.generation_id(date(2026, 1, 15), "3", "a1b2c3d4")
    assert gen == "20260115-3-a1b2c3d4"
    odd = keys.generation_id(date(2026, 1, 15), "v{1}:x y", "a")
    assert not set(odd) & set(":{} ")


def test_score_encoding_is_a_scaled_integer_within_half_a_unit() -> None:
    rng = np.random.default_rng(3)
    scores = np.concatenate([rng.random(10_000), [0.0, 1.0, 0.5, 1e-12, 0.999999999999]])
    encoded = keys.encode_scores(scores)
    assert encoded.tolist() == [keys.encode_score(float(s)) for s in scores]
    decoded = np.array([keys.decode_score(str(v).encode()) for v in encoded])
    assert np.abs(decoded - scores).max() <= 0.5 / keys.SCORE_SCALE + 1e-15
    assert keys.encode_score(0.8731289441) == 873128944
    assert keys.decode_score(b"873128944") == 0.873128944


def test_non_finite_scores_are_refused() -> None:
    with pytest.raises(ValueError):
        keys.encode_score(math.nan)
    with pytest.raises(ValueError):
        keys.encode_scores(np.array([0.1, np.inf]))


def test_feature_vectors_round_trip_bit_for_bit_as_float32() -> None:
    rng = np.random.default_rng(5)
    matrix = np.concatenate(
        [
            rng.random((500, 6)) * 10.0 ** rng.integers(-8, 9, (500, 6)),
            rng.integers(-5, 1000, (500, 3)).astype(float),
        ],
        axis=1,
    ).astype(np.float32)
    matrix[::3, 2] = np.nan
    matrix[1, 0] = -0.0
    texts = keys.encode_feature_matrix(matrix)
    back = np.vstack([keys.decode_features(t, matrix.shape[1]) for t in texts])
    assert back.dtype == np.float32
    assert np.array_equal(back.view(np.uint32), matrix.view(np.uint32))  # NaN payloads too


def test_feature_encoding_is_short_and_readable() -> None:
    row = np.array([[3, 0, 12.5, np.nan, 0.1, 1 / 3]], dtype=np.float32)
    assert keys.encode_feature_matrix(row) == ["3,0,12.5,,0.1,0.33333334"]


def test_decoding_a_vector_of_the_wrong_length_fails() -> None:
    with pytest.raises(ValueError, match="expects 3"):
        keys.decode_features("1,2", 3)


def test_resp_command_matches_the_protocol() -> None:
    assert (
        keys.resp_command([b"HSET", "k", "1", 42])
        == b"*4\r\n$4\r\nHSET\r\n$1\r\nk\r\n$1\r\n1\r\n$2\r\n42\r\n"
    )


def test_commands_start_at_every_bucket_change_and_every_max_fields_rows() -> None:
    # Buckets a a a a a | b | c c c (sorted); at most 2 fields per command.
    changes = np.array([False, False, False, False, True, True, False, False])
    assert keys.command_starts(changes, 2).tolist() == [0, 2, 4, 5, 6, 8]
    assert keys.command_starts(changes, 1000).tolist() == [0, 5, 6]
    assert keys.command_starts(np.array([], dtype=bool), 3).tolist() == [0]


def test_vectorised_hsets_equal_one_resp_command_each() -> None:
    fields = ["0", "17", "é-ü", "cust\r\nab", "999"]
    values = ["873128944", "", "1,2,,3.5", "0", "12"]
    commands = keys.resp_hsets(
        [b"sh:G:s:{0}", b"sh:G:s:{x3}", b"sh:G:s:{1}"],
        np.array([0, 2, 4]),
        pa.array(fields),
        pa.array(values),
    )
    assert commands == [
        keys.resp_command([b"HSET", b"sh:G:s:{0}", "0", "873128944", "17", ""]),
        keys.resp_command([b"HSET", b"sh:G:s:{x3}", "é-ü", "1,2,,3.5", "cust\r\nab", "0"]),
        keys.resp_command([b"HSET", b"sh:G:s:{1}", "999", "12"]),
    ]


def test_vectorised_hsets_accept_sliced_arrays_and_integer_values() -> None:
    ids = np.arange(2995, 3010)
    fields = pa.array(ids % 1000).cast(pa.string()).slice(3)
    values = pa.array(keys.encode_scores(np.linspace(0, 1, 15))).slice(3)
    buckets = ids[3:] // 1000
    starts = keys.command_starts(buckets[1:] != buckets[:-1], 1000)
    got = keys.resp_hsets([b"k2", b"k3"], starts, fields, values)
    expected = []
    for key, bucket in ((b"k2", 2), (b"k3", 3)):
        args: list[bytes | str | int] = [b"HSET", key]
        for i, entity in enumerate(ids[3:].tolist()):
            if entity // 1000 == bucket:
                args += [entity % 1000, int(values[i].as_py())]
        expected.append(keys.resp_command(args))
    assert got == expected


def test_vectorised_hsets_refuse_nulls_and_bad_starts() -> None:
    with pytest.raises(ValueError, match="must not be null"):
        keys.resp_hsets([b"k"], np.array([0]), pa.array(["1"]), pa.array([None], pa.string()))
    with pytest.raises(ValueError, match="begin at 0 and increase"):
        keys.resp_hsets([b"k", b"j"], np.array([0, 0]), pa.array(["1"]), pa.array(["2"]))


def test_feature_array_equals_the_list_encoding() -> None:
    matrix = np.array([[1, np.nan], [0.5, 2]], dtype=np.float32)
    assert keys.encode_feature_array(matrix).to_pylist() == ["1,", "0.5,2"]
    assert keys.encode_feature_array(matrix[:, :1]).to_pylist() == ["1", "0.5"]
    assert keys.encode_feature_array(np.array([[np.nan]])).to_pylist() == [""]


def test_numbered_fields_give_the_same_commands_as_formatted_fields() -> None:
    rng = np.random.default_rng(3)
    ids = np.sort(rng.choice(100_000, 5_000, replace=False)).astype(np.int64)
    buckets = ids // 250
    starts = keys.command_starts(buckets[1:] != buckets[:-1], 100)
    hash_keys = [keys.score_key("sh", "G", str(b)).encode() for b in buckets[starts].tolist()]
    values = pa.array(keys.encode_scores(rng.random(len(ids))))
    numbered = keys.resp_hsets_numbered(hash_keys, starts, ids % 250, values, 250)
    assert numbered == keys.resp_hsets(hash_keys, starts, pa.array(ids % 250), values)
    first = int(starts[1]) if len(starts) > 1 else len(ids)
    args = [b"HSET", hash_keys[0]]
    for i in range(first):
        args += [str(ids[i] % 250).encode(), str(values[i].as_py()).encode()]
    assert numbered[0] == keys.resp_command(args)
    with pytest.raises(ValueError, match="field numbers"):
        keys.resp_hsets_numbered(hash_keys[:1], np.array([0]), np.array([250]), values[:1], 250)
