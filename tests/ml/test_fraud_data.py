"""Fraud data contract: every refusal names file/column/row/value; gzip and directory lookup;
the encoding shared by training and serving; the synthetic sample generator."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from ml.data.contract import DataContractError
from ml.models.fraud import data

pytestmark = pytest.mark.ml

HEADER = ",".join(data.RAW_COLUMNS)
ROW = "1,84.47,22,Electronics,0,0,66,3,40,FALSE"
ROW2 = "2,237.01,2,Grocery,1,1,30,6,61,TRUE"


def write(tmp_path, *lines, name=data.FILE):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def with_cell(column, value, row=ROW):
    cells = row.split(",")
    cells[data.RAW_COLUMNS.index(column)] = value
    return ",".join(cells)


def refused(path):
    with pytest.raises(DataContractError) as info:
        data.load_transactions(path)
    return info.value


def test_valid_file_is_parsed_with_types_and_int_label(tmp_path):
    frame = data.load_transactions(write(tmp_path, HEADER, ROW, ROW2))
    assert list(frame.columns) == data.RAW_COLUMNS
    assert frame["is_fraud"].tolist() == [0, 1] and frame["is_fraud"].dtype == np.int64
    assert frame["amount"].dtype == np.float64 and frame["transaction_hour"].dtype == np.int64
    assert frame.attrs["contract"]["rows"] == 2 and frame.attrs["contract"]["positives"] == 1


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("transaction_hour", "24", "value outside the allowed range 0..23"),
        ("transaction_hour", "3.5", "expected an integer"),
        ("device_trust_score", "high", "expected an integer"),
        ("device_trust_score", "101", "value outside the allowed range 0..100"),
        ("foreign_transaction", "2", "value outside the allowed range 0..1"),
        ("location_mismatch", "-1", "value outside the allowed range 0..1"),
        ("velocity_last_24h", "-3", "value outside the allowed range 0..1000"),
        ("cardholder_age", "17", "value outside the allowed range 18..120"),
        ("transaction_id", "0", "value outside the allowed range"),
        ("amount", "lots", "expected a finite number"),
        ("amount", "inf", "expected a finite number"),
        ("amount", "-5.00", "amount must be >= 0"),
        ("merchant_category", "Casino", "value not in the allowed set"),
        ("merchant_category", "food", "value not in the allowed set"),
        ("is_fraud", "yes", "value not in the allowed set ['TRUE', 'FALSE']"),
        ("is_fraud", "1", "value not in the allowed set ['TRUE', 'FALSE']"),
        ("cardholder_age", "", "empty cell"),
    ],
)
def test_bad_cell_is_refused_naming_file_column_row_and_value(tmp_path, column, value, problem):
    path = write(tmp_path, HEADER, ROW2, with_cell(column, value))
    err = refused(path)
    assert (err.column, err.row, err.value) == (column, 2, value)
    assert problem in err.problem
    assert str(err).startswith(f"{path}, column '{column}', row 2: ")


def test_missing_column_is_refused(tmp_path):
    header = HEADER.replace(",velocity_last_24h", "")
    row = ",".join(c for i, c in enumerate(ROW.split(",")) if data.RAW_COLUMNS[i] != "velocity_last_24h")
    err = refused(write(tmp_path, header, row))
    assert err.column == "velocity_last_24h" and "missing column(s) ['velocity_last_24h']" in err.problem


def test_unexpected_column_is_refused(tmp_path):
    err = refused(write(tmp_path, HEADER + ",merchant_id", ROW + ",7"))
    assert err.column == "merchant_id" and "unexpected column(s) ['merchant_id']" in err.problem


def test_duplicate_transaction_id_is_refused(tmp_path):
    err = refused(write(tmp_path, HEADER, ROW, ROW2, with_cell("transaction_id", "2")))
    assert (err.column, err.row, err.value) == ("transaction_id", 3, 2) and err.problem == "duplicate transaction_id"


def test_short_row_is_an_empty_cell_and_long_row_is_malformed(tmp_path):
    err = refused(write(tmp_path, HEADER, ROW, "2,10.0,3,Food,0,0,50"))
    assert (err.column, err.row) == ("velocity_last_24h", 2) and "fewer fields than the header" in err.problem
    err = refused(write(tmp_path, HEADER, ROW, ROW2 + ",9"))
    assert "not a well-formed CSV file" in err.problem and "Expected 10 fields" in err.problem


@pytest.mark.parametrize(
    ("content", "problem"),
    [("", "file is empty (no header row)"), (HEADER + "\n", "file has a header but no data rows")],
    ids=["empty", "header-only"],
)
def test_empty_inputs_are_refused(tmp_path, content, problem):
    path = tmp_path / data.FILE
    path.write_text(content)
    assert refused(path).problem == problem


def test_missing_file_is_refused(tmp_path):
    assert refused(tmp_path / data.FILE).problem == "file not found"


def test_gzip_file_of_the_same_name_is_accepted(tmp_path):
    gz = tmp_path / f"{data.FILE}.gz"
    gz.write_bytes(gzip.compress(f"{HEADER}\n{ROW}\n{ROW2}\n".encode()))
    frame = data.load(tmp_path)
    assert len(frame) == 2 and frame.attrs["contract"]["compressed"] is True
    (tmp_path / "plain").mkdir()
    plain = data.load_transactions(write(tmp_path / "plain", HEADER, ROW, ROW2))
    pd.testing.assert_frame_equal(frame, plain)


def test_corrupt_gzip_is_refused(tmp_path):
    gz = tmp_path / f"{data.FILE}.gz"
    gz.write_bytes(b"not gzip at all")
    assert "cannot be read as gzip UTF-8 CSV" in refused(gz).problem


def test_load_needs_exactly_one_of_csv_and_gz(tmp_path):
    with pytest.raises(DataContractError, match=r"neither credit_card_fraud_10k.csv nor .*\.gz found"):
        data.load(tmp_path)
    write(tmp_path, HEADER, ROW)
    (tmp_path / f"{data.FILE}.gz").write_bytes(gzip.compress(f"{HEADER}\n{ROW}\n".encode()))
    with pytest.raises(DataContractError, match=r"both .* exist"):
        data.load(tmp_path)


def test_encode_orders_features_and_codes_categories_deterministically(tmp_path):
    frame = data.load_transactions(write(tmp_path, HEADER, ROW, ROW2))
    x = data.encode(frame)
    assert x.dtype == np.float32 and x.shape == (2, len(data.FEATURES))
    assert x[0].tolist() == pytest.approx([84.47, 22, data.MERCHANT_CATEGORIES.index("Electronics"), 0, 0, 66, 3, 40])
    assert x[1, data.FEATURES.index("merchant_category")] == data.MERCHANT_CATEGORIES.index("Grocery")
    # request-shaped input: only the feature columns, any order, float defaults for store features
    request = frame[data.FEATURES[::-1]].astype({"device_trust_score": float})
    request.loc[0, "device_trust_score"] = 61.5
    assert data.encode(request)[0, data.FEATURES.index("device_trust_score")] == 61.5
    assert np.array_equal(data.encode(request)[1], x[1])


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("merchant_category", "Casino", "unknown merchant_category; expected one of"),
        ("merchant_category", None, "unknown merchant_category"),
        ("amount", np.nan, "missing or non-finite value"),
    ],
)
def test_encode_refuses_bad_values(column, value, problem):
    frame = pd.DataFrame([dict(zip(data.RAW_COLUMNS, ROW.split(","), strict=True))] * 2)[data.FEATURES]
    frame = frame.astype({c: float for c in data.FEATURES if c != "merchant_category"})
    frame[column] = frame[column].astype(object)
    frame.loc[1, column] = value
    with pytest.raises(DataContractError) as info:
        data.encode(frame)
    assert (info.value.column, info.value.row) == (column, 2) and problem in info.value.problem


def test_encode_refuses_missing_and_non_numeric_columns():
    frame = pd.DataFrame({c: [1.0] for c in data.FEATURES if c != "cardholder_age"})
    frame["merchant_category"] = "Food"
    with pytest.raises(DataContractError, match=r"missing feature column\(s\) \['cardholder_age'\]"):
        data.encode(frame)
    frame["cardholder_age"] = ["forty"]
    with pytest.raises(DataContractError, match="column 'cardholder_age': non-numeric values"):
        data.encode(frame)


def test_generated_sample_has_the_shared_schema_and_both_classes(tmp_path):
    path = data.generate_sample(tmp_path / "a", rows=500, seed=1)
    assert path.name == data.FILE
    assert path.read_text().splitlines()[0] == HEADER
    frame = data.load(tmp_path / "a")  # passes the full contract
    assert len(frame) == 500 and 5 <= frame["is_fraud"].sum() <= 60
    assert set(frame["merchant_category"]) == set(data.MERCHANT_CATEGORIES)
    again = data.generate_sample(tmp_path / "b", rows=500, seed=1)
    other = data.generate_sample(tmp_path / "c", rows=500, seed=2)
    assert again.read_bytes() == path.read_bytes() and other.read_bytes() != path.read_bytes()


def test_generated_sample_has_a_learnable_signal(tmp_path):
    frame = data.load_transactions(data.generate_sample(tmp_path, rows=3000, seed=0))
    fraud = frame[frame["is_fraud"] == 1]
    legit = frame[frame["is_fraud"] == 0]
    assert fraud["foreign_transaction"].mean() > 3 * legit["foreign_transaction"].mean()
    assert fraud["device_trust_score"].mean() < legit["device_trust_score"].mean() - 5


def test_generate_sample_refuses_tiny_requests(tmp_path):
    with pytest.raises(ValueError, match="rows must be >= 100"):
        data.generate_sample(tmp_path, rows=10)
