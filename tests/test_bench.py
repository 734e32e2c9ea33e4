"""bench/run_all.py at the tiniest settings: every section runs, and its JSON holds figures.

Only the shape of the report is checked (keys, units, positive figures), never a timing: on a
shared machine timings are noise. A random AR twin with the smoke model's tokenizer is judge.
"""

import json

import pytest
import torch

from bench import run_all
from mdlm_sampling import METHODS

TINY = {
    "tokenizer": dict(corpus=str(run_all.ROOT / "tests" / "data" / "tiny.txt"),
                      vocab_sizes=[260, 300], repeats=1),
    "train": dict(vocab_size=64, seq_len=16, n_layer=1, n_head=2, d_model=32, batch=2, steps=1,
                  warmup=1, compile_model=False),
    "train_reference": dict(vocab_size=66, seq_len=16, n_layer=1, n_head=2, d_model=32,
                            batch=2, steps=1, warmup=1, compile_model=False),
    "sampling": dict(steps=[2, 8], num_samples=2, repeats=1),
}  # fmt: skip


@pytest.fixture(scope="module")
def report(smoke_checkpoint, smoke_twin):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only wait for each other on a busy machine
    try:
        result = run_all.run(TINY, checkpoint=smoke_checkpoint, judge=smoke_twin, device="cpu")
    finally:
        torch.set_num_threads(before)
    return json.loads(json.dumps(result, default=str))  # what the JSON file would hold


def figures(section):
    return [(r["label"], name, f) for r in section["rows"] for name, f in r["figures"].items()]


def test_the_report_describes_the_machine_and_has_every_section(report):
    assert {"cpu", "cores", "device", "threads", "torch"} <= set(report["machine"])
    assert list(report["sections"]) == [
        "tokenizer",
        "train",
        "train_reference",
        "sampling",
        "quality",
    ]
    assert report["seconds"] > 0


def test_the_reference_size_is_measured_beside_the_published_figure(report):
    section = report["sections"]["train_reference"]
    assert "nanoGPT's Tiny Shakespeare size" in section["title"] and "vocab 66" in section["title"]
    assert section["rows"][-1]["note"] == run_all.REFERENCE_NOTE


@pytest.mark.parametrize("section", [*run_all.SECTIONS, "train_reference"])
def test_every_number_is_positive_and_has_a_unit(report, section):
    found = figures(report["sections"][section])
    assert found
    for label, name, figure in found:
        if isinstance(figure["value"], bool):  # "exact round trip": a check, not a measure
            assert figure["value"], (label, name)
        else:
            assert figure["value"] > 0 and figure["unit"], (label, name, figure)


def test_sampling_has_every_sampler_and_step_count_and_the_ar_model(report):
    rows = report["sections"]["sampling"]["rows"]
    timed = {(r["label"], r["figures"]["steps"]["value"]) for r in rows if "NFE" in r["figures"]}
    assert {(m, s) for m in METHODS for s in TINY["sampling"]["steps"]} < timed
    assert {"ar, kv cache", "ar, no cache"} < {label for label, _ in timed}


def test_quality_names_a_verdict_for_every_sampler(report):
    rows = {r["label"]: r for r in report["sections"]["quality"]["rows"]}
    assert rows["ar, no cache"]["note"] == "same samples as with the cache: True"
    for method in ("ancestral", "confidence"):
        verdict = rows[f"{method}, as good as ar"]
        assert verdict["note"].startswith("none at this size") or verdict["figures"]["speed"]


def test_the_table_shows_every_section(report, capsys):
    run_all.print_report(report)
    printed = capsys.readouterr().out
    for section in report["sections"].values():
        assert section["title"] in printed
    assert "tokens/s" in printed


@pytest.mark.parametrize("named", [True, False], ids=["named", "newest"])
def test_a_missing_checkpoint_says_how_to_make_one(tmp_path, monkeypatch, named):
    monkeypatch.setattr(run_all, "ROOT", tmp_path)  # so there is no checkpoints/ to search
    checkpoint = tmp_path / "none.pt" if named else ""
    result = run_all.run(TINY, only=["train", "sampling", "quality"], checkpoint=checkpoint)
    assert figures(result["sections"]["train"])  # the sections that need none still run
    for section in ("sampling", "quality"):
        (row,) = result["sections"][section]["rows"]
        assert "skipped" in row["note"] and "train_model.ipynb" in row["note"]
        assert named or "--checkpoint" in row["note"]


def test_an_unknown_section_is_refused():
    with pytest.raises(SystemExit):
        run_all.main(["--only", "tokenizer,speed"])


def test_settings_are_parsed_and_refused_with_the_keys_to_use():
    from bench import bench_settings

    assert bench_settings.parse_setting("batch_size=16,vocab_size=1024") == {
        "batch_size": 16,
        "vocab_size": 1024,
    }
    for bad in ("learning_rate=3e-3", "batch_size=", "batch=16"):
        with pytest.raises(SystemExit, match="keys among"):
            bench_settings.parse_setting(bad)


def test_settings_bench_times_every_setting_and_scales_the_steps(tmp_path, capsys):
    """The smoke mode (max_steps 40) against a batch twice as large: every setting gets
    rounds x steps timings, and its equal-time steps are 40 x (the defaults' median / its
    own), worked out here from the figures it wrote."""
    from bench import bench_settings

    out = tmp_path / "settings.json"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        bench_settings.main(["--mode", "smoke", "--try", "batch_size=16", "--rounds", "2",
                             "--steps", "1", "--json", str(out)])  # fmt: skip
    finally:
        torch.set_num_threads(before)
    report = json.loads(out.read_text())
    assert (report["defaults"]["batch_size"], report["defaults"]["max_steps"]) == (8, 40)
    rows = report["rows"]
    assert [row["setting"] for row in rows] == ["the defaults", "batch_size 16"]
    assert [row["tokens_per_step"] for row in rows] == [8 * 64, 16 * 64]
    base = rows[0]["median_step_ms"]
    for row in rows:
        assert row["ratio"] == pytest.approx(row["median_step_ms"] / base)
        assert row["equal_time_steps"] == round(40 * base / row["median_step_ms"])
    assert "equal-time steps" in capsys.readouterr().out
