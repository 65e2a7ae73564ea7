"""Tensor metadata against data, without a server: every contradiction between `shape` / `datatype`
and the values is a 400 that names the input and the problem; consistent tensors pass untouched.
(The same checks run over HTTP against the local platform in tests/local/test_fuzz_inference.py.)"""

from __future__ import annotations

import pytest
from mlserver.types import RequestInput

from ml.serving.runtime_base import BadRequest, _flat, check_shape, check_values


def _check(datatype: str, shape: list[int], data: object) -> None:
    inp = RequestInput(name="x", datatype=datatype, shape=shape, data=data)
    values = _flat(inp)
    check_shape(inp, values)
    if datatype != "BYTES":
        check_values(inp, values)


@pytest.mark.parametrize(("datatype", "shape", "data"), [
    ("INT64", [3], [1, 2, 3]),
    ("INT64", [2, 2], [[1, 2], [3, 4]]),  # nested, row-major
    ("INT64", [1], [2.0]),  # a whole number written as a float
    ("INT8", [2], [-128, 127]),
    ("UINT64", [1], [2**64 - 1]),
    ("FP32", [2], [0.5, 3]),
    ("FP16", [1], [65504.0]),
    ("BOOL", [2], [True, False]),
    ("BYTES", [2], ["a", "b"]),
    ("INT64", [0], []),
    ("INT64", [1], 7),  # a scalar is one value
])
def test_consistent_tensors_pass(datatype, shape, data):
    _check(datatype, shape, data)


@pytest.mark.parametrize(("datatype", "shape", "data", "needle"), [
    ("INT64", [2], [1], "shape [2] (2 element(s)) but its data holds 1 value(s)"),
    ("INT64", [1], [1, 2], "shape [1] (1 element(s)) but its data holds 2 value(s)"),
    ("INT64", [2, 2], [1, 2, 3], "shape [2, 2] (4 element(s))"),
    ("INT64", [2], [[1], [2, 3]], "its data holds 3 value(s)"),  # ragged rows
    ("INT64", [-1], [], "negative dimension"),
    ("BYTES", [3], ["a"], "its data holds 1 value(s)"),
    ("INT64", [1], [1.5], "1.5, which is not a whole number"),
    ("INT64", [1], [True], "a boolean: send datatype BOOL, or 0/1"),
    ("INT64", [1], ["7"], "non-numeric value '7'"),
    ("INT64", [1], [None], "non-numeric value None"),
    ("INT64", [1], [{"a": 1}], "non-numeric value {'a': 1}"),
    ("INT64", [1], [2**63], "outside the INT64 range"),
    ("INT8", [1], [300], "outside the INT8 range -128..127"),
    ("UINT8", [1], [-1], "outside the UINT8 range 0..255"),
    ("FP16", [1], [1e6], "outside the FP16 range"),
    ("FP32", [1], [1e39], "outside the FP32 range"),
    ("FP64", [1], [10**400], "outside the FP64 range"),
    ("BOOL", [1], [1], "which is not a boolean (true/false)"),
    ("FP32", [2], [0.5, "x"], "non-numeric value 'x' at position 1"),
])
def test_contradicting_metadata_is_a_400_naming_input_and_problem(datatype, shape, data, needle):
    with pytest.raises(BadRequest) as err:
        _check(datatype, shape, data)
    assert err.value.status_code == 400
    assert "input 'x'" in str(err.value) and needle in str(err.value), str(err.value)
