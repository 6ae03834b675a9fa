from __future__ import annotations

import csv
import gzip
import json
import re
import shutil
from pathlib import Path

import pytest

from sparse_distill.errors import ConfigError, DataError
from sparse_distill.stages.config import config_from_dict
from sparse_distill.training.data import (
    PoolStats,
    iter_pool,
    label_sort_key,
    load_labeled,
    text_key,
)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def labeled_from(config_dict):
    return load_labeled(config_from_dict(config_dict))


def test_jsonl_splits_and_sorted_labels(config_dict, data_dir):
    data = labeled_from(config_dict)
    rows = read_jsonl(data_dir / "train.jsonl")
    assert data.train.texts == [r["text"] for r in rows]
    assert data.train.labels == [r["label"] for r in rows]
    assert data.labels == ["neg", "pos"]
    assert len(data.dev.texts) == 6 and len(data.test.texts) == 6
    assert data.train.stats.kept == 28 and data.train.stats.bad == 0


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "hf", "jsonl.gz"])
def test_every_format_reads_the_same_rows(fmt, config_dict, data_dir, tmp_path):
    rows = read_jsonl(data_dir / "train.jsonl")
    # Other column names, to exercise the text/label mapping.
    table = {"review": [r["text"] for r in rows], "sentiment": [r["label"] for r in rows]}
    if fmt in ("csv", "tsv"):
        path = tmp_path / f"train.{fmt}"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter="\t" if fmt == "tsv" else ",")
            writer.writerow(["id", "review", "sentiment"])
            writer.writerows([i, t, lab] for i, (t, lab) in
                             enumerate(zip(table["review"], table["sentiment"], strict=True)))
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / "train.parquet"
        pq.write_table(pa.table(table), path)
    elif fmt == "hf":
        import datasets

        features = datasets.Features({"review": datasets.Value("string"),
                                      "sentiment": datasets.ClassLabel(names=["neg", "pos"])})
        ds = datasets.Dataset.from_dict(table, features=features)
        path = tmp_path / "train_ds"
        datasets.DatasetDict({"train": ds}).save_to_disk(str(path))
    else:
        path = tmp_path / "train.jsonl.gz"
        with gzip.open(path, "wt", encoding="utf-8") as f:
            for t, lab in zip(table["review"], table["sentiment"], strict=True):
                f.write(json.dumps({"review": t, "sentiment": lab}) + "\n")
    config_dict["data"]["train"] = {"path": str(path), "text": "review", "label": "sentiment"}
    # dev/test are jsonl with text/label columns: name them, or they would inherit train's.
    for split in ("dev", "test"):
        config_dict["data"][split].update(text="text", label="label")
    data = labeled_from(config_dict)
    assert data.train.texts == table["review"]
    assert data.train.labels == table["sentiment"]
    assert data.train.stats.format == {"jsonl.gz": "jsonl"}.get(fmt, fmt)


def test_columns_default_to_trains(config_dict, data_dir, tmp_path):
    renamed = tmp_path / "dev.jsonl"
    renamed.write_text("".join(json.dumps({"review": r["text"], "sentiment": r["label"]}) + "\n"
                               for r in read_jsonl(data_dir / "dev.jsonl")))
    config_dict["data"]["train"] = {"path": str(renamed), "text": "review", "label": "sentiment"}
    config_dict["data"]["dev"] = {"path": str(renamed)}
    del config_dict["data"]["test"]
    assert len(labeled_from(config_dict).dev.texts) == 6


def test_bad_lines_are_reported_with_file_and_line_then_skipped(config_dict, data_dir):
    config_dict["data"]["train"]["path"] = str(data_dir / "bad.jsonl")
    config_dict["data"]["max_bad_fraction"] = 1.0  # 5 of 7: allowed here
    data = labeled_from(config_dict)
    path = data_dir / "bad.jsonl"
    assert data.train.stats.read == 7 and data.train.stats.kept == 2 and data.train.stats.bad == 5
    assert data.train.stats.bad_examples == [
        f"{path}:2: empty line",
        f"{path}:3: not valid UTF-8 (byte 13)",
        f"{path}:4: not valid JSON (Invalid control character at, column 23)",
        f"{path}:5: no 'label' value",
        f"{path}:6: empty text",
    ]


def test_bad_lines_can_be_fatal(config_dict, data_dir):
    config_dict["data"]["train"]["path"] = str(data_dir / "bad.jsonl")
    config_dict["data"]["on_bad_line"] = "error"
    with pytest.raises(DataError, match=re.escape(
            f"{data_dir / 'bad.jsonl'}:2: empty line; fix the line, or set data.on_bad_line: "
            "skip to skip bad lines")):
        labeled_from(config_dict)


def test_undecodable_csv_row_keeps_its_line_number(config_dict, tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b'text,label\n"good, and ""quoted""",pos\n"bad \xff byte",neg\n'
                     b'"multi\nline",neg\n,\n')
    config_dict["data"]["train"] = {"path": str(path)}
    config_dict["data"]["max_bad_fraction"] = 0.5
    del config_dict["data"]["dev"], config_dict["data"]["test"]
    data = labeled_from(config_dict)
    assert data.train.texts == ['good, and "quoted"', "multi\nline"]
    assert data.train.stats.bad_examples == [f"{path}:3: not valid UTF-8", f"{path}:6: empty line"]


def test_unseen_dev_label_is_named(config_dict, data_dir, tmp_path):
    dev = tmp_path / "dev.jsonl"
    dev.write_text((data_dir / "dev.jsonl").read_text()
                   + json.dumps({"text": "meh", "label": "neutral"}) + "\n")
    config_dict["data"]["dev"]["path"] = str(dev)
    with pytest.raises(DataError, match=re.escape(
            f"data.dev: label(s) 'neutral' in {dev} do not occur in the training data "
            "(labels: neg, pos)")):
        labeled_from(config_dict)


def test_numeric_labels_sort_as_numbers():
    assert sorted(["10", "2", "1", "b", "a"], key=label_sort_key) == ["1", "2", "10", "a", "b"]


def test_integer_labels_become_strings(config_dict, tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"text": f"text number {i}", "label": i % 3}) + "\n"
                            for i in range(12)))
    config_dict["data"] = {"train": {"path": str(path)}}
    data = labeled_from(config_dict)
    assert data.labels == ["0", "1", "2"] and data.train.labels[:3] == ["0", "1", "2"]


def test_leakage_guard_and_deduplication(config_dict, data_dir):
    cfg = config_from_dict(config_dict)
    data = load_labeled(cfg)
    stats = PoolStats()
    pool = list(iter_pool(cfg, data, stats))
    lines = (data_dir / "pool.txt").read_text().splitlines()
    assert stats.sources[0].read == 20
    assert stats.leaked == 1 and stats.duplicates == 2 and stats.kept == 17 == len(pool)
    held_out = {text_key(t) for t in data.dev.texts + data.test.texts}
    assert not held_out & {text_key(t) for t in pool}
    assert "Critics were split on the sequel." in pool and pool.count(lines[2]) == 1
    assert lines[12] not in pool  # a training text is not repeated in the pool


def test_leakage_ignores_case_and_spacing():
    assert text_key("A  Gripping,   film ") == text_key("a gripping, FILM")
    assert text_key("a gripping film") != text_key("a gripping films")


def test_hub_name_offline_is_one_clear_line(config_dict):
    config_dict["data"]["unlabeled"] = [{"path": "stanfordnlp/imdb", "split": "unsupervised"}]
    with pytest.raises(ConfigError) as info:
        config_from_dict(config_dict)
    (problem,) = info.value.problems
    assert "\n" not in problem
    assert problem.startswith("data.unlabeled[0].path: 'stanfordnlp/imdb' is not a local file, "
                              "and loading it from the Hugging Face Hub failed (")
    assert problem.endswith("check the name, or download the data and give its local path")


def test_hf_dataset_dict_needs_a_known_split(config_dict, data_dir, tmp_path):
    import datasets

    rows = read_jsonl(data_dir / "train.jsonl")
    ds = datasets.Dataset.from_list(rows)
    path = tmp_path / "ds"
    datasets.DatasetDict({"fold1": ds}).save_to_disk(str(path))
    config_dict["data"]["train"] = {"path": str(path)}
    with pytest.raises(ConfigError, match=re.escape(
            f"data.train.split: {path}: no split 'train' (splits: fold1); set the source's "
            "split: to one of them")):
        config_from_dict(config_dict)
    config_dict["data"]["train"]["split"] = "fold1"
    assert len(labeled_from(config_dict).train.texts) == 28


def test_empty_training_file_is_an_error(config_dict, tmp_path):
    path = tmp_path / "train.jsonl"
    shutil.copy(config_dict["data"]["train"]["path"], path)
    path.write_text('{"text": "", "label": "pos"}\n')
    config_dict["data"]["train"]["path"] = str(path)
    config_dict["data"]["max_bad_fraction"] = 1.0
    with pytest.raises(DataError, match="has no usable rows"):
        labeled_from(config_dict)


def test_more_bad_lines_than_allowed_stop_before_anything_is_written(config_dict, tmp_path):
    from sparse_distill.stages.vocab import build_vocab

    # The case: a jsonl of 502 lines of which 500 are broken.
    path = tmp_path / "train.jsonl"
    good = [json.dumps({"text": "a fine film", "label": "pos"}),
            json.dumps({"text": "a dull film", "label": "neg"})]
    path.write_text("\n".join(good + ['{"text": "cut in half'] * 500) + "\n")
    config_dict["data"]["train"]["path"] = str(path)
    with pytest.raises(DataError, match=re.escape(
            f"{path}: 500 of 502 lines are bad (99.6%, above data.max_bad_fraction 1.0%), "
            "first: 3: not valid JSON")) as err:
        build_vocab(config_from_dict(config_dict))
    assert "raise data.max_bad_fraction to accept it" in str(err.value)
    assert "\n" not in str(err.value)
    assert not (Path(config_dict["run"]["dir"]) / "vocab").exists()
    # Within the limit, the bad line is skipped and reported as before.
    path.write_text("\n".join(good * 100 + ['{"text": "cut in half']) + "\n")
    data = labeled_from(config_dict)
    assert data.train.stats.bad == 1 and data.train.stats.kept == 200


@pytest.mark.parametrize(("content", "name", "says"), [
    (bytes(range(256)) * 12, "train.jsonl", "looks binary (NUL bytes in its first 3,072 bytes), "
     "not jsonl text"),
    (b"text,label\na fine film,pos\n", "train.jsonl", "is not JSON lines (no line of its first "
     "2 starts with '{'; it looks like csv); name it .csv or set format: csv"),
    (gzip.compress(b'{"text": "a", "label": "pos"}\n'), "train.jsonl",
     "is gzip data, not jsonl text; name it train.jsonl.gz"),
    (b"plain text, not gzip", "train.csv.gz", "is not valid gz data"),
])
def test_a_file_that_is_not_its_format_says_what_it_looks_like(config_dict, tmp_path, content,
                                                               name, says):
    path = tmp_path / name
    path.write_bytes(content)
    config_dict["data"]["train"]["path"] = str(path)
    with pytest.raises(ConfigError) as err:
        config_from_dict(config_dict)
    assert f"data.train.path: {path} {says}" in str(err.value)
    assert "not found in" not in str(err.value)  # not the misleading column message


def test_a_compressed_file_cut_short_is_one_line_naming_the_last_line_read(tmp_path):
    from sparse_distill.inference.readers import read_text_file, read_txt_batches

    data = gzip.compress(b"a fine film\n" * 50_000)
    path = tmp_path / "pool.txt.gz"
    path.write_bytes(data[:len(data) // 2])
    for read in (lambda: list(read_text_file(str(path), "txt")),
                 lambda: list(read_txt_batches(str(path), 1000))):
        with pytest.raises(DataError, match=re.escape(f"{path}: cannot read past line ")) as err:
            read()
        assert "the file is cut short or damaged" in str(err.value)
        assert "\n" not in str(err.value)
