from __future__ import annotations

import re
from pathlib import Path

import pytest

from sparse_distill.errors import ConfigError
from sparse_distill.files import expand_path
from sparse_distill.stages.config import apply_overrides, config_from_dict, load_config


def problems_of(data, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, **kwargs)
    return info.value.problems


def test_valid_config_loads_with_defaults(config_dict):
    cfg = config_from_dict(config_dict)
    assert cfg.vocab.ngram_range == [1, 2]
    assert cfg.vocab.min_df == 1
    assert cfg.student.distill.batch_size == 2048
    assert cfg.teacher.lr == pytest.approx(2e-5)
    assert [k for k, _ in cfg.sources()] == ["data.train", "data.dev", "data.test",
                                             "data.unlabeled[0]"]


def test_unknown_key_suggests_the_close_one(config_dict):
    config_dict["vocab"]["ngram_rnage"] = [1, 3]
    (problem,) = problems_of(config_dict)
    assert problem.startswith("vocab.ngram_rnage: unknown key; did you mean 'ngram_range'? ")
    assert "valid keys: ngram_range, max_features" in problem


def test_unknown_section(config_dict):
    config_dict["studnet"] = {}
    assert problems_of(config_dict)[0].startswith("studnet: unknown key; did you mean 'student'?")


def test_wrong_type_names_key_and_value(config_dict):
    config_dict["student"] = {"hidden_dims": "abc"}
    assert problems_of(config_dict) == ["student.hidden_dims: expected a list of int, got 'abc'"]


def test_wrong_item_type_in_list(config_dict):
    config_dict["student"] = {"hidden_dims": [256, "big"]}
    assert problems_of(config_dict) == ["student.hidden_dims[1]: expected an int, got 'big'"]


def test_bucket_settings_are_checked(config_dict):
    config_dict["student"] = {"subwords": [5, 3]}
    assert problems_of(config_dict) == [
        "student.subwords: must be [min, max] character n-gram lengths with 1 <= min <= max "
        "<= 20, or [] for none; got [5, 3]"]
    config_dict["student"] = {"buckets": 100, "bucket_ngrams": False, "subwords": []}
    assert problems_of(config_dict)[0].startswith("student.buckets: nothing would go to the")
    config_dict["student"] = {"buckets": -1}
    assert problems_of(config_dict)[0].startswith("student.buckets:")


def test_bool_is_not_an_int(config_dict):
    config_dict["run"]["seed"] = True
    assert problems_of(config_dict) == ["run.seed: expected an int, got True"]


def test_out_of_range_values_quote_the_value(config_dict):
    config_dict["vocab"]["min_df"] = 0
    config_dict["student"] = {"dropout": 1.5, "distill": {"lr": -1}}
    assert problems_of(config_dict) == [
        "vocab.min_df: must be >= 1, got 0",
        "student.dropout: must be < 1.0, got 1.5",
        "student.distill.lr: must be > 0.0, got -1.0",
    ]


def test_steps_take_an_int_or_auto(config_dict):
    config_dict["student"] = {"distill": {"steps": "auto", "eval_every": 50}}
    assert config_from_dict(config_dict).student.distill.steps == "auto"
    config_dict["student"] = {"distill": {"steps": "fast", "eval_every": 0}}
    assert problems_of(config_dict) == [
        "student.distill.steps: expected an int or one of auto, got 'fast'",
        "student.distill.eval_every: must be >= 1, got 0"]


def test_choice_lists_the_valid_options(config_dict):
    config_dict["student"] = {"pooling": "avg"}
    assert problems_of(config_dict) == [
        "student.pooling: expected one of mean, sum, max, got 'avg'"]


def test_cross_field_checks(config_dict):
    config_dict["vocab"]["ngram_range"] = [3, 1]
    config_dict["vocab"]["token_pattern"] = "(unclosed"
    config_dict["run"]["device"] = "gpu"
    problems = problems_of(config_dict)
    assert "vocab.ngram_range: expected [min_n, max_n] with 1 <= min_n <= max_n, got [3, 1]" \
        in problems
    assert any(p.startswith("vocab.token_pattern: not a valid regular expression")
               for p in problems)
    assert "run.device: expected auto, cpu, cuda, cuda:N or mps, got 'gpu'" in problems


def test_missing_required_section():
    assert problems_of({"run": {"seed": 1}}) == [
        "data: missing; add it to the config (expected a mapping)"]


def test_missing_file_and_column_are_reported_with_the_fix(config_dict, data_dir):
    config_dict["data"]["dev"]["path"] = str(data_dir / "nope.jsonl")
    config_dict["data"]["train"]["label"] = "sentiment"
    problems = problems_of(config_dict)
    assert problems == [
        f"data.train.label: column 'sentiment' not found in {data_dir / 'train.jsonl'} "
        "(columns: text, label); set data.train.label to one of them",
        f"data.dev.path: file not found: {data_dir / 'nope.jsonl'}; fix the path (relative paths "
        "are read from the current directory)",
        f"data.test.label: column 'sentiment' (taken from data.train.label) not found in "
        f"{data_dir / 'test.jsonl'} (columns: text, label); set data.test.label to one of them",
    ]


def test_every_problem_is_reported_together(config_dict, data_dir):
    config_dict["vocab"]["min_df"] = -3
    config_dict["vocab"]["lowercase"] = "yes"
    config_dict["teacher"] = {"epochs": "three", "max_lenght": 64}
    config_dict["data"]["test"]["path"] = str(data_dir / "missing.csv")
    problems = problems_of(config_dict)
    assert len(problems) == 5, problems
    keys = sorted(p.split(":")[0] for p in problems)
    assert keys == ["data.test.path", "teacher.epochs", "teacher.max_lenght", "vocab.lowercase",
                    "vocab.min_df"]


def test_plain_text_cannot_be_labelled(config_dict, data_dir):
    config_dict["data"]["train"]["path"] = str(data_dir / "pool.txt")
    (problem,) = problems_of(config_dict)
    assert problem.startswith("data.train.path: ") and "plain text" in problem


def test_unknown_format(config_dict, tmp_path):
    odd = tmp_path / "train.data"
    odd.write_text("x")
    config_dict["data"]["train"]["path"] = str(odd)
    (problem,) = problems_of(config_dict)
    assert problem.startswith(f"data.train.format: cannot tell the format of {odd}")


def test_overrides_are_dotted_and_yaml_parsed(config_dict):
    data = apply_overrides(config_dict, ["student.distill.steps=5", "vocab.ngram_range=[1, 3]",
                                         "teacher.finetune=false", "data.unlabeled.0.text=body",
                                         "student.hidden_dims=[64, 32]"])
    cfg = config_from_dict(data, check_inputs=False)
    assert cfg.student.distill.steps == 5
    assert cfg.vocab.ngram_range == [1, 3]
    assert cfg.teacher.finetune is False
    assert cfg.data.unlabeled[0].text == "body"
    assert cfg.student.hidden_dims == [64, 32]
    assert config_dict["vocab"]["ngram_range"] == [1, 2]  # the input is not modified


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match=re.escape("--set 'steps': expected KEY=VALUE")):
        apply_overrides({}, ["steps"])
    with pytest.raises(ConfigError, match=re.escape("--set data.unlabeled.3.path: data.unlabeled "
                                                    "is a list of 1; use an index from 0 to 0")):
        apply_overrides({"data": {"unlabeled": [{}]}}, ["data.unlabeled.3.path=x"])


def test_override_of_unknown_key_is_reported(config_dict):
    data = apply_overrides(config_dict, ["student.distill.stpes=5"])
    assert problems_of(data)[0].startswith("student.distill.stpes: unknown key; did you mean "
                                           "'steps'?")


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("run:\n  dir: [unclosed\nvocab: {}\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: line 3: not valid YAML")):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_env_vars_in_paths(monkeypatch, tmp_path, config_dict, data_dir):
    monkeypatch.setenv("SDISTILL_CACHE", str(data_dir))
    assert expand_path("$SDISTILL_CACHE/train.jsonl") == str(data_dir / "train.jsonl")
    config_dict["data"]["train"]["path"] = "${SDISTILL_CACHE}/train.jsonl"
    config_from_dict(config_dict)
    monkeypatch.delenv("SDISTILL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert expand_path("$SDISTILL_CACHE/x") == str(tmp_path / "sparse-distill" / "x")
    config_dict["data"]["dev"]["path"] = "$NOT_SET_ANYWHERE/dev.jsonl"
    problems = problems_of(config_dict)
    assert "data.dev.path: environment variable $NOT_SET_ANYWHERE is not set; set it or write " \
           "the path out" in problems


def test_section_hash_changes_only_with_its_section(config_dict):
    a = config_from_dict(config_dict)
    config_dict["student"] = {"embedding_dim": 64}
    b = config_from_dict(config_dict)
    assert a.section_hash("data", "vocab") == b.section_hash("data", "vocab")
    assert a.section_hash("student") != b.section_hash("student")


def test_settings_added_later_leave_earlier_runs_up_to_date(config_dict):
    import dataclasses
    import hashlib
    import json

    # Runs made before student.init existed had random rows: that is what its hash leaves out.
    config_dict["student"] = {"init": "random"}
    cfg = config_from_dict(config_dict)
    # The hash as it was computed before student.init, its bucket settings, student.seed,
    # student.wide, distill.loss, student.calibrate, the class weights, teacher.max_windows and
    # the pool budget existed.
    for section, keys in (("student", ["init", "buckets", "bucket_ngrams", "subwords", "seed",
                                       "wide", "distill.loss", "calibrate",
                                       "finetune.class_weight"]),
                          ("teacher", ["max_windows", "class_weight"]),
                          ("data", ["augment", "max_bad_fraction", "pool_budget",
                                    "pool_select"])):
        payload = {section: dataclasses.asdict(getattr(cfg, section))}
        for key in keys:
            *parents, name = key.split(".")
            node = payload[section]
            for parent in parents:
                node = node[parent]
            del node[name]
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        assert cfg.section_hash(section) == hashlib.sha256(blob.encode()).hexdigest()
    config_dict["student"] = {"init": "random", "buckets": 10}
    assert config_from_dict(config_dict).section_hash("student") != cfg.section_hash("student")
    config_dict["student"] = {"init": "random", "seed": 14}
    assert config_from_dict(config_dict).section_hash("student") != cfg.section_hash("student")
    config_dict["student"] = {"init": "random", "wide": True}
    assert config_from_dict(config_dict).section_hash("student") != cfg.section_hash("student")
    config_dict["student"] = {"init": "random", "calibrate": False}
    assert config_from_dict(config_dict).section_hash("student") != cfg.section_hash("student")
    budget = config_from_dict({**config_dict, "data": {**config_dict["data"], "pool_budget": 9}})
    assert budget.section_hash("data") != cfg.section_hash("data")
    # Today's default, teacher rows, is not what those runs did: they are out of date.
    config_dict["student"] = {}
    config_dict["teacher"] = {"max_windows": 4}
    changed = config_from_dict(config_dict)
    assert changed.section_hash("student") != cfg.section_hash("student")
    assert changed.section_hash("teacher") != cfg.section_hash("teacher")


def test_committed_configs_are_valid(monkeypatch):
    # The shipped configs must at least parse and type-check (their data is fetched separately).
    for path in sorted(Path(__file__).parents[1].glob("configs/*.yaml")):
        load_config(path, check_inputs=False)
