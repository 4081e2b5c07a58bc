"""Vocab: raw ids <-> internal ids, kept exactly, saved as plain JSON."""

import json

import numpy as np
import pytest

from srgnn_rt.vocab import Vocab


def test_round_trip_int_ids(tmp_path):
    vocab = Vocab([501, 7, 9000])
    assert vocab.n_items == len(vocab) == 3
    assert vocab.encode([7, 501, 12345, 9000]) == [2, 1, 0, 3]
    decoded = vocab.decode(np.array([[3, 1], [2, 2]]))
    assert decoded.dtype == np.int64 and decoded.tolist() == [[9000, 501], [7, 7]]
    vocab.save(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text()) == [501, 7, 9000]
    assert Vocab.load(tmp_path) == vocab


def test_string_and_int_ids_stay_distinct(tmp_path):
    vocab = Vocab(["sku-1", 1, "1"])
    assert vocab.encode([1, "1", "sku-1"]) == [2, 3, 1]
    assert vocab.decode(np.array([1, 2, 3])).tolist() == ["sku-1", 1, "1"]
    vocab.save(tmp_path)
    assert Vocab.load(tmp_path).raw_ids == ["sku-1", 1, "1"]


def test_numpy_integers_are_plain_ints():
    vocab = Vocab(np.array([4, 5], dtype=np.int32))
    assert vocab.raw_ids == [4, 5] and vocab.internal_id(5) == 2


@pytest.mark.parametrize(
    "raw, error, message",
    [
        ([1, 2, 1], ValueError, "raw id 1 twice"),
        ([], ValueError, "empty"),
        ([1, 2.5], TypeError, "vocab entry 1"),
        ([True], TypeError, "vocab entry 0"),
        ([None], TypeError, "NoneType"),
    ],
)
def test_bad_vocab(raw, error, message):
    with pytest.raises(error, match=message):
        Vocab(raw)


def test_decode_out_of_range():
    with pytest.raises(ValueError, match="internal id 0 is outside 1..2"):
        Vocab([10, 11]).decode(np.array([1, 0]))


def test_load_rejects_non_list(tmp_path):
    (tmp_path / "vocab.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="JSON array"):
        Vocab.load(tmp_path)
    (tmp_path / "vocab.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="not valid JSON"):
        Vocab.load(tmp_path)


@pytest.mark.parametrize(
    "data, error, message",
    [
        (b"[1, 18446744073709551616]", ValueError, "vocab.json is invalid: vocab entry 1 .* outside the int64 range"),
        (b"[-9223372036854775809]", ValueError, "outside the int64 range"),
        (b"[" + b"9" * 5000 + b"]", ValueError, "vocab.json is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, ValueError, "vocab.json is not valid JSON"),
        (b"[1, NaN]", TypeError, "vocab.json is invalid: vocab entry 1 .* float"),
        (b"\xff[1]", ValueError, "vocab.json is not valid JSON"),
        (b'{"a": 1}', ValueError, "vocab.json must hold a JSON array"),
    ],
)
def test_from_json_names_the_file(data, error, message):
    with pytest.raises(error, match=message):
        Vocab.from_json(data, "vocab.json")


def test_int64_bounds_and_json_round_trip():
    extremes = Vocab([-(2**63), 2**63 - 1, "x"])
    assert Vocab.from_json(extremes.to_json()) == extremes
    assert Vocab.from_json("\ufeff[5, 6]".encode()).raw_ids == [5, 6]  # a UTF-8 BOM is accepted
    with pytest.raises(ValueError, match="vocab entry 0 .* 9223372036854775808, outside the int64 range"):
        Vocab([2**63])
