"""Data contract of the sentiment model: schema detection, documented defects, every violation."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import pytest

from ml.data.contract import DataContractError
from ml.models.sentiment import data


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sentiment")
    data.generate_sample(out, rows=300, seed=1)
    return out


def test_generate_sample_writes_the_three_files_with_the_real_schemas(sample_dir):
    assert sorted(p.name for p in sample_dir.iterdir()) == sorted([*data.FILES, data.HUMAN_FILE])
    assert (sample_dir / "Twitter_Data.csv").read_text().splitlines()[0] == "clean_text,category"
    assert (sample_dir / "Reddit_Data.csv").read_text().splitlines()[0] == "clean_comment,category"
    assert (sample_dir / data.HUMAN_FILE).read_text().splitlines()[0] == "textID,text,sentiment"
    assert data.files(sample_dir) == [sample_dir / n for n in (*data.FILES, data.HUMAN_FILE)]


def test_generated_raw_tweets_look_like_raw_tweets(sample_dir):
    human = data.load_human(sample_dir)
    texts = human["text"]
    assert len(human) == 150 - 1 and human.attrs["dropped_by_reason"]["empty_text"] == 1
    assert set(human["label"]) == {-1, 0, 1} and set(human["source"]) == {"human"}
    for needle in ("@user", "http://t.co/", "&amp;", "!", ":"):
        assert texts.str.contains(needle, regex=False).any(), needle
    assert texts.str.contains(r"[A-Z]").any() and any(re.search(r"(\w)\1\1", t) for t in texts)


def test_generate_sample_can_leave_out_the_human_file(tmp_path):
    data.generate_sample(tmp_path, rows=30, human_rows=0)
    assert data.load_human(tmp_path) is None and data.human_path(tmp_path) is None
    assert data.files(tmp_path) == [tmp_path / n for n in data.FILES]
    with pytest.raises(ValueError, match="human_rows must be 0 or >= 10"):
        data.generate_sample(tmp_path, rows=30, human_rows=3)


def test_generate_sample_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    data.generate_sample(a, rows=50, seed=3)
    data.generate_sample(b, rows=50, seed=3)
    for name in (*data.FILES, data.HUMAN_FILE):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_generate_sample_rejects_tiny_row_count(tmp_path):
    with pytest.raises(ValueError, match="rows must be >= 10"):
        data.generate_sample(tmp_path, rows=3)


def test_load_both_lexicon_labelled_files_counts_documented_defects(sample_dir):
    df = data.load(sample_dir)
    assert list(df.columns) == ["text", "label", "source"]
    # Twitter sample: empty text, slipped label pair (2 rows); Reddit: whitespace-only comment.
    assert df.attrs["dropped"] == 4
    assert df.attrs["per_source"]["twitter"]["dropped_by_reason"] == {
        "empty_text": 2,
        "empty_label": 1,
        "empty_both": 0,
    }
    assert df.attrs["per_source"]["reddit"]["dropped"] == 1
    assert len(df) == 600 - 4
    assert set(df["label"].unique()) == {-1, 0, 1}
    assert df["label"].dtype.kind == "i"
    assert set(df["source"]) == {"twitter", "reddit"}
    assert (df["text"].str.strip() != "").all()


def test_load_file_accepts_gzip_of_the_same_name(sample_dir, tmp_path):
    gz = tmp_path / "Reddit_Data.csv.gz"
    with (sample_dir / "Reddit_Data.csv").open("rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    plain = data.load_file(sample_dir / "Reddit_Data.csv")
    packed = data.load_file(gz)
    assert packed.attrs["schema"] == "reddit"
    assert packed.equals(plain)


def test_load_finds_gz_files(sample_dir, tmp_path):
    for name in data.FILES:
        with (sample_dir / name).open("rb") as src, gzip.open(tmp_path / f"{name}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    assert len(data.load(tmp_path)) == len(data.load(sample_dir))


def test_label_outside_allowed_set_is_an_error(tmp_path):
    f = _write(tmp_path / "Twitter_Data.csv", "clean_text,category\ngood day,1\nbad day,2\n")
    with pytest.raises(DataContractError) as err:
        data.load_file(f)
    assert err.value.column == "category" and err.value.row == 2 and err.value.value == "2"
    assert "Twitter_Data.csv, column 'category', row 2: label must be one of -1, 0, 1 (value '2')" in str(err.value)


def test_label_of_wrong_type_is_an_error(tmp_path):
    f = _write(tmp_path / "Reddit_Data.csv", "clean_comment,category\nnice,positive\n")
    with pytest.raises(DataContractError, match=r"row 1: label must be one of -1, 0, 1 \(value 'positive'\)"):
        data.load_file(f)


def test_float_label_is_an_error(tmp_path):
    f = _write(tmp_path / "Reddit_Data.csv", "clean_comment,category\nnice,1.0\n")
    with pytest.raises(DataContractError, match=r"value '1.0'"):
        data.load_file(f)


def test_missing_text_column_is_an_error(tmp_path):
    f = _write(tmp_path / "Twitter_Data.csv", "tweet,category\nhello,1\n")
    with pytest.raises(DataContractError, match=r"missing text column: expected 'clean_text'") as err:
        data.load_file(f)
    assert "['tweet', 'category']" in str(err.value) and "'text' with 'sentiment'" in str(err.value)


def test_human_schema_maps_words_to_classes_and_counts_defects(tmp_path):
    f = _write(tmp_path / "h.csv", "textID,text,sentiment\na,I LOVE it!,positive\nb,meh,neutral\n"
                                   "c,so bad :(,negative\nd,,neutral\ne,no label,\n")
    df = data.load_file(f)
    assert df.attrs["schema"] == "human" and df["label"].tolist() == [1, 0, -1]
    assert df["text"].tolist() == ["I LOVE it!", "meh", "so bad :("]  # raw: normalised by the model
    assert df.attrs["dropped_by_reason"] == {"empty_text": 1, "empty_label": 1, "empty_both": 0}


@pytest.mark.parametrize("value", ["Positive", "1", "pos"])
def test_human_label_outside_the_three_words_is_an_error(tmp_path, value):
    f = _write(tmp_path / "h.csv", f"text,sentiment\ngood,positive\nhm,{value}\n")
    with pytest.raises(DataContractError) as err:
        data.load_file(f)
    assert err.value.column == "sentiment" and err.value.row == 2 and err.value.value == value
    assert "sentiment must be one of negative, neutral, positive" in str(err.value)


def test_raw_text_without_sentiment_column_is_an_error(tmp_path):
    f = _write(tmp_path / "h.csv", "text,category\nhello,1\n")
    with pytest.raises(DataContractError, match=r"column 'sentiment': missing label column for raw text"):
        data.load_file(f)


def test_clean_and_raw_text_columns_together_are_ambiguous(tmp_path):
    f = _write(tmp_path / "x.csv", "clean_text,category,text,sentiment\na,1,b,positive\n")
    with pytest.raises(DataContractError, match="ambiguous schema: both 'clean_text' and 'text'/'sentiment'"):
        data.load_file(f)


def test_load_human_finds_gz_and_refuses_a_wrong_schema(sample_dir, tmp_path):
    with (sample_dir / data.HUMAN_FILE).open("rb") as src, gzip.open(tmp_path / f"{data.HUMAN_FILE}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert data.load_human(tmp_path).equals(data.load_human(sample_dir))
    shutil.copy(sample_dir / data.HUMAN_FILE, tmp_path)
    with pytest.raises(DataContractError, match="keep only one"):
        data.load_human(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(sample_dir / "Twitter_Data.csv", other / data.HUMAN_FILE)
    with pytest.raises(DataContractError, match="has the twitter schema, expected text/sentiment"):
        data.load_human(other)


def test_missing_label_column_is_an_error(tmp_path):
    f = _write(tmp_path / "Twitter_Data.csv", "clean_text,label\nhello,1\n")
    with pytest.raises(DataContractError, match=r"column 'category': missing label column"):
        data.load_file(f)


def test_both_text_columns_is_ambiguous(tmp_path):
    f = _write(tmp_path / "x.csv", "clean_text,clean_comment,category\na,b,1\n")
    with pytest.raises(DataContractError, match="ambiguous schema"):
        data.load_file(f)


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(DataContractError, match="file not found"):
        data.load_file(tmp_path / "nope.csv")
    with pytest.raises(DataContractError, match="file is empty"):
        data.load_file(_write(tmp_path / "empty.csv", ""))


def test_file_with_only_defective_rows_is_refused(tmp_path):
    f = _write(tmp_path / "Twitter_Data.csv", "clean_text,category\n,1\nsome text,\n")
    with pytest.raises(DataContractError, match="no usable rows"):
        data.load_file(f)


def test_load_requires_both_files(sample_dir, tmp_path):
    shutil.copy(sample_dir / "Twitter_Data.csv", tmp_path)
    with pytest.raises(DataContractError, match=r"Reddit_Data.csv: file not found \(expected Reddit_Data.csv or"):
        data.load(tmp_path)


def test_load_refuses_csv_and_gz_side_by_side(sample_dir, tmp_path):
    for name in data.FILES:
        shutil.copy(sample_dir / name, tmp_path)
    shutil.copy(sample_dir / "Twitter_Data.csv", tmp_path / "Twitter_Data.csv.gz")
    with pytest.raises(DataContractError, match=r"both Twitter_Data\.csv and Twitter_Data\.csv\.gz exist"):
        data.load(tmp_path)


def test_load_refuses_schema_swapped_between_files(sample_dir, tmp_path):
    shutil.copy(sample_dir / "Reddit_Data.csv", tmp_path / "Twitter_Data.csv")
    shutil.copy(sample_dir / "Reddit_Data.csv", tmp_path)
    with pytest.raises(DataContractError, match="has the reddit schema, expected twitter"):
        data.load(tmp_path)


def test_load_refuses_missing_directory(tmp_path):
    with pytest.raises(DataContractError, match="data directory not found"):
        data.load(tmp_path / "missing")
