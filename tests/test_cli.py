"""End to end through the `sdistill` command line (Typer's CliRunner)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from sparse_distill.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_help_lists_every_command_of_the_contract():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("vocab", "teach", "train-student", "eval", "run", "predict", "data"):
        assert command in result.output
    data_help = invoke("data", "--help")
    assert "fetch" in data_help.output and "list" in data_help.output


def test_vocab_end_to_end_then_rerun_rules(config_dict, write_config, tmp_path):
    path = write_config(config_dict)
    result = invoke("vocab", str(path))
    assert result.exit_code == 0, result.output
    out = tmp_path / "run" / "vocab"
    assert f"output: {out}" in result.output
    assert f"next:   sdistill teach {path}" in result.output
    assert "vocabulary size" in result.output
    manifest = json.loads((out / "manifest.json").read_text())

    same = invoke("vocab", str(path))
    assert same.exit_code == 0 and "is up to date" in same.output
    assert json.loads((out / "manifest.json").read_text()) == manifest

    changed = invoke("vocab", str(path), "--set", "vocab.min_df=2")
    assert changed.exit_code == 1
    assert "was built from other inputs (config section 'vocab' changed); rerun with --force " \
           f"to overwrite it: sdistill vocab {path} --force" in " ".join(changed.output.split())
    assert "Traceback" not in changed.output
    assert json.loads((out / "manifest.json").read_text()) == manifest

    forced = invoke("vocab", str(path), "--set", "vocab.min_df=2", "--force")
    assert forced.exit_code == 0, forced.output
    assert json.loads((out / "manifest.json").read_text())["config"]["vocab"]["min_df"] == 2
    resolved = (tmp_path / "run" / "config.yaml").read_text()
    assert "min_df: 2" in resolved


def test_config_errors_all_at_once_no_traceback_nothing_written(config_dict, write_config,
                                                               tmp_path):
    config_dict["vocab"]["min_df"] = 0
    config_dict["data"]["train"]["text"] = "review"
    path = write_config(config_dict)
    result = invoke("vocab", str(path), "--set", "student.pooling=avg")
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 5, result.output  # min_df, pooling, and text for train/dev/test
    assert "error: vocab.min_df: must be >= 1, got 0" in lines
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_data_list_shows_every_asset(tmp_path):
    result = invoke("data", "list", "--cache-dir", str(tmp_path))
    assert result.exit_code == 0
    for name in ("rt", "trec", "20ng", "pool-general", "minilm"):
        assert name in result.output


def test_data_fetch_unknown_name_fails_cleanly(tmp_path):
    result = invoke("data", "fetch", "imdb", "--cache-dir", str(tmp_path))
    assert result.exit_code == 1 and "choose one of: rt, trec" in result.output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("sparse-distill ")


def test_python_api_mirrors_the_commands(config_dict, write_config):
    import sparse_distill as sd
    from sparse_distill.inference import portable, predict, student
    from sparse_distill.stages import evaluate, pipeline, teach, train_student, vocab

    # Each name of the package's front is the function the command runs, from its layer.
    assert sd.build_vocab is vocab.build_vocab and sd.teach is teach.teach
    assert sd.train_student is train_student.train_student
    assert sd.evaluate is evaluate.evaluate and sd.run_all is pipeline.run_all
    assert sd.predict_file is predict.predict_file and sd.Student is student.Student
    assert sd.NumpyStudent is portable.NumpyStudent
    # The README's first lines: a config with overrides, then the vocabulary stage.
    cfg = sd.load_config(write_config(config_dict), ["vocab.min_df=2"])
    assert isinstance(cfg, sd.Config) and cfg.vocab.min_df == 2
    result = sd.build_vocab(cfg)
    vocab_ = sd.Vocabulary.load(result.output)
    assert len(vocab_) > 0 and all(df >= 2 for df in vocab_.df)
