"""canonical() must equal JavaScript's sorted-key JSON.stringify (PROTOCOL §6)."""

import hashlib
import itertools
import json
from pathlib import Path

import pytest

from coordination.canonical import (
    GENESIS,
    CanonicalError,
    canonical,
    chain_hash,
    chain_hash_text,
    parse_json,
)

pytestmark = pytest.mark.mode_independent

VECTORS = Path(__file__).parent / "fixtures" / "ltp" / "vectors" / "canonical-vectors.jsonl"
# Split on "\n" only: the vectors hold a raw U+2028, which splitlines() breaks on.
VECTOR_LINES = [line for line in VECTORS.read_text(encoding="utf-8").split("\n") if line]


@pytest.mark.parametrize("line", VECTOR_LINES, ids=lambda line: json.loads(line)["frame"]["id"])
def test_vector_reproduces_canonical_text_and_hash_byte_for_byte(line):
    vector = parse_json(line)

    text = canonical(vector["frame"])

    assert text.encode("utf-8") == vector["canonical"].encode("utf-8")
    assert chain_hash(vector["prev_hash"], vector["frame"]) == vector["hash"]
    assert chain_hash_text(vector["prev_hash"], text) == vector["hash"]


def test_vectors_form_a_chain_from_genesis():
    vectors = [parse_json(line) for line in VECTOR_LINES]

    assert vectors[0]["prev_hash"] == GENESIS == "0" * 64
    for before, after in itertools.pairwise(vectors):
        assert after["prev_hash"] == before["hash"]


def test_array_index_keys_come_first_in_numeric_order():
    assert canonical({"p99": 4, "P50": 3, "10": 2, "2": 1}) == '{"2":1,"10":2,"P50":3,"p99":4}'


def test_keys_that_are_not_canonical_array_indexes_sort_as_strings():
    value = {"4294967295": 1, "01": 2, "4294967294": 3, "0": 4, "a": 5}

    assert canonical(value) == '{"0":4,"4294967294":3,"01":2,"4294967295":1,"a":5}'


def test_emoji_key_sorts_before_fullwidth_exclamation_by_utf16_units():
    # By code point U+FF01 < U+1F600, but the emoji's first UTF-16 unit is 0xD83D.
    assert canonical({"\uff01": 1, "\U0001f600": 2}) == '{"\U0001f600":2,"\uff01":1}'


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (18.0, "18"),
        (1.0, "1"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (0.00001, "0.00001"),
        (1.5e300, "1.5e+300"),
        (2.5e-8, "2.5e-8"),
        (-0.0, "0"),
        (-0.5, "-0.5"),
        (0.1 + 0.2, "0.30000000000000004"),
        (123456.789, "123456.789"),
        (1.2345678901234567e20, "123456789012345670000"),
        (9007199254740994.0, "9007199254740994"),
        (5e-324, "5e-324"),
        (9007199254740991, "9007199254740991"),
        (-9007199254740991, "-9007199254740991"),
    ],
)
def test_numbers_print_as_javascript_does(number, text):
    assert canonical(number) == text


@pytest.mark.parametrize("number", [2**53, -(2**53), 10**30])
def test_integers_beyond_safe_range_are_refused(number):
    with pytest.raises(CanonicalError, match="2\\*\\*53"):
        canonical({"big": number})


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_refused(number):
    with pytest.raises(CanonicalError):
        canonical([number])


def test_canonical_error_is_a_value_error():
    assert issubclass(CanonicalError, ValueError)


@pytest.mark.parametrize("text", ['{"x": NaN}', "[Infinity]", "-Infinity"])
def test_parse_json_refuses_nan_and_infinity(text):
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_json(text)


def test_parse_json_accepts_bytes():
    assert parse_json('{"a": "é"}'.encode()) == {"a": "é"}


def test_lone_surrogate_is_escaped_in_lower_case():
    frame = parse_json('{"s": "a\\uD800b\\uDFFF"}')

    assert canonical(frame) == '{"s":"a\\ud800b\\udfff"}'
    # The text must still encode, or it could not be hashed.
    chain_hash(GENESIS, frame)


def test_surrogate_pair_in_separate_code_points_is_written_as_one_character():
    assert canonical("\ud83d\ude00") == '"😀"'


def test_non_ascii_is_written_raw_and_controls_escaped_like_python_json():
    value = {"s": 'é東京 "q" \\ \t\n\x01\x7f\u2028'}

    assert canonical(value) == '{"s":"é東京 \\"q\\" \\\\ \\t\\n\\u0001\x7f\u2028"}'


def test_literals_and_containers_have_no_whitespace():
    value = {"b": [True, False, None, [], {}], "a": {"z": 1, "y": [1, "x"]}}

    assert canonical(value) == '{"a":{"y":[1,"x"],"z":1},"b":[true,false,null,[],{}]}'


def test_non_string_keys_are_refused():
    with pytest.raises(CanonicalError):
        canonical({1: "a"})


def test_values_without_a_json_form_are_refused():
    with pytest.raises(CanonicalError):
        canonical({"when": object()})


def test_chain_hash_is_sha256_of_prev_hash_then_canonical_text():
    frame = {"v": "0.1", "n": 1.0}
    expected = hashlib.sha256((GENESIS + '{"n":1,"v":"0.1"}').encode()).hexdigest()

    assert chain_hash(GENESIS, frame) == expected
