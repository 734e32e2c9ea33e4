"""Every command-line tool refuses a bad argument or file with one line on stderr and status 2,
never a traceback (tools/cli.py); the samplers say which checkpoint they took."""

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT

from mdlm_sampling import checkpoint_choice
from tools import cli, make_results

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # sample_visual imports pygame


@pytest.fixture
def files(tmp_path, monkeypatch):
    """Bad files of every kind, in a folder that is also the current one (no checkpoints/)."""
    monkeypatch.chdir(tmp_path)
    f = SimpleNamespace(root=tmp_path)
    f.text, f.binary, f.json = tmp_path / "text.txt", tmp_path / "binary.bin", tmp_path / "x.json"
    f.text.write_text("some text to train on " * 50, encoding="utf-8")
    f.binary.write_bytes(bytes(range(256)) * 8)
    f.json.write_text("{not json")
    f.file, f.folder = tmp_path / "a_file", tmp_path / "a_folder"
    f.file.write_text("")
    f.folder.mkdir()
    f.missing = tmp_path / "missing.txt"
    f.nowhere = tmp_path / "no_folder" / "out.json"  # a file in a folder that does not exist
    f.under_a_file = f.file / "out"  # a path under a file
    f.gif = tmp_path / "x.gif"
    return f


MODULES = {
    "bpe": "bpe_tokenizer",
    "viewer": "sample_visual",
    "check": "exercises.check",
    "results": "tools.make_results",
    "collect": "tools.collect_metrics",
    "ship": "tools.ship_checkpoint",
    "adopt": "tools.adopt_outputs",
    "nbexport": "tools.nbexport",
    "gpu_run": "tools.gpu_run",
    "corpus": "corpus",
    "figures": "docs.make_figures",
    "b_sampling": "bench.bench_sampling",
    "b_settings": "bench.bench_settings",
    "b_tokenizer": "bench.bench_tokenizer",
    "b_train": "bench.bench_train",
    "run_all": "bench.run_all",
}
# tool | its arguments, {name} being a path of `files` | what its one line says
CASES = """
bpe        | train --vocab-size 300 --input {missing} --out {json} | No such file or directory
bpe        | train --vocab-size 300 --input {folder} --out {json}  | is a folder: give a text file
bpe        | train --vocab-size 300 --input {binary} --out {json}  | is not UTF-8 text (byte 128)
bpe        | train --vocab-size 300 --input {text} --out {nowhere} | there is no folder
bpe        | train --vocab-size 300 --input {text} --out {folder}  | is a folder: give a file name
bpe        | train --vocab-size 100 --input {text} --out {json}    | it needs at least 259
bpe        | train --vocab-size abc --input {text} --out {json}    | invalid int value: 'abc'
bpe        |                                                       | arguments are required: command
bpe        | encode --tokenizer {missing} --input {text}           | No such file or directory
bpe        | encode --tokenizer {json} --input {text}              | not valid JSON
bpe        | encode --tokenizer {binary} --input {text}            | is not UTF-8 text
viewer     | --headless --out {gif} --length 0                     | --length: must be 1 or more
viewer     | --headless --out {gif} --length -5                    | --length: must be 1 or more
viewer     | --headless --out {gif} --num-samples -1               | --num-samples: must be 1 or
viewer     | --headless --out {gif} --num-samples 0                | --num-samples: must be 1 or
viewer     | --headless --out {gif} --steps 0                      | --steps: must be 1 or more
viewer     | --headless --out {gif} --temperature nan              | must be a finite number
viewer     | --headless --out {gif} --device gpu                   | --device 'gpu' is not a device
viewer     | --headless --out {nowhere}                            | there is no folder
viewer     | --headless --out {gif} --frames-dir {file}            | is a file, not a folder
viewer     | --headless --out {gif} --checkpoint {folder}          | is not a readable checkpoint
viewer     | --headless --out {gif}                                | run train_model.ipynb first
viewer     | --headless                                            | --headless needs --out
check      | 0                                                     | invalid choice: '0'
check      | abc                                                   | invalid choice: 'abc'
results    | --bogus                                               | unrecognized arguments
collect    | {missing} {json}                                      | No such file or directory
collect    | {json} {nowhere}                                      | is not JSON
collect    | {text} {nowhere}                                      | is not JSON
ship       | {missing} --out {json}                                | no checkpoint at
ship       | {binary} --out {json}                                 | is not a readable checkpoint
ship       | {binary} --restamp                                    | --restamp needs --old-code
ship       | {binary} --restamp --old-code {missing}               | --old-code
ship       | {binary} --out {under_a_file}/x.pt                    | is a file, not a folder
adopt      | {missing} {missing}                                   | no such notebook file
adopt      | {json} {json}                                         | is not a notebook
nbexport   | nosuch.ipynb                                          | no module is made from
gpu_run    | --out {folder} --budget -5                            | a number of seconds above 0
gpu_run    | --out {folder} --work {root_of_the_project}           | would be emptied first
gpu_run    | --out {folder} --device gpu                           | --device 'gpu' is not a device
gpu_run    | --out {under_a_file}                                  | is a file, not a folder
corpus     | {missing}                                             | no such file or folder
corpus     | {text} --errors bogus                                 | invalid choice: 'bogus'
figures    | --out {under_a_file}                                  | is a file, not a folder
b_sampling | --steps 0                                             | --steps: must be 1 or more
b_sampling | --num-samples 0                                       | must be 1 or more
b_sampling | --repeats 0                                           | must be 1 or more
b_sampling | --threads -1                                          | must be 0 or more
b_sampling | --device gpu                                          | --device 'gpu' is not a device
b_sampling | --json {nowhere}                                      | there is no folder
b_sampling | --checkpoint {missing}                                | no checkpoint at
b_settings | --rounds 0                                            | must be 1 or more
b_settings | --mode nosuch                                         | no run mode 'nosuch'
b_settings | --try batch_size=0                                    | keys among
b_settings | --mode smoke --try d_model=66                         | RoPE turns in pairs
b_settings | --json {nowhere}                                      | there is no folder
b_tokenizer| --input {missing}                                     | No such file or directory
b_tokenizer| --input {binary}                                      | is not UTF-8 text
b_tokenizer| --input {text} --vocab-sizes 100                      | must be 259 or more
b_tokenizer| --input {text} --repeats 0                            | must be 1 or more
b_train    | --n-head 5                                            | RoPE turns in pairs
b_train    | --steps 0                                             | must be 1 or more
b_train    | --batch 0                                             | must be 1 or more
b_train    | --vocab 1                                             | must be 2 or more
b_train    | --warmup -1                                           | must be 0 or more
b_train    | --device gpu                                          | --device 'gpu' is not a device
b_train    | --json {nowhere}                                      | there is no folder
run_all    | --device gpu                                          | --device 'gpu' is not a device
run_all    | --json {nowhere}                                      | there is no folder
run_all    | --only nosuch                                         | --only: unknown ['nosuch']
run_all    | --size huge                                           | invalid choice: 'huge'
"""
if not torch.cuda.is_available():
    CASES += "viewer | --headless --out {gif} --device cuda | torch finds no CUDA GPU\n"
ROWS = [[cell.strip() for cell in line.split("|")] for line in CASES.strip().splitlines()]


@pytest.mark.parametrize("tool, arguments, message", ROWS, ids=[" ".join(r[:2]) for r in ROWS])
def test_a_bad_argument_or_file_is_one_line_and_status_2(tool, arguments, message, files, capsys):
    paths = {**vars(files), "root_of_the_project": ROOT}
    argv = [word.format(**paths) for word in arguments.split()]
    main = importlib.import_module(MODULES[tool]).main
    with pytest.raises(SystemExit) as refused:
        main(argv)
    err = capsys.readouterr().err
    assert refused.value.code == 2 and err.count("\n") == 1 and message in err, err


def test_a_results_file_that_is_not_json_is_named(tmp_path, monkeypatch, capsys):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "broken.json").write_text("{")
    monkeypatch.setattr(make_results, "ROOT", tmp_path)
    with pytest.raises(SystemExit) as refused:
        make_results.main([])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "results/broken.json is not a JSON file" in err


@pytest.mark.parametrize(
    "script, args",
    [
        ("bpe_tokenizer.py", ["train", "--input", "missing.txt", "--vocab-size", "300"]),
        ("exercises/check.py", ["0"]),
        ("sample_visual.py", ["--headless", "--out", "x.gif", "--length", "-5"]),
    ],
)
def test_as_a_process_too_it_is_one_line_and_status_2(script, args, tmp_path):
    command = [
        sys.executable,
        str(ROOT / script),
        *args,
        *(["--out", "x.json"] * ("train" in args)),
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_cli_types_say_what_they_want():
    assert cli.whole_number(1)("3") == 3 and cli.finite_number("-2.5") == -2.5
    for parse, text, message in [
        (cli.whole_number(1), "0", "must be 1 or more, not 0"),
        (cli.whole_number(0), "1.5", "'1.5' is not a whole number"),
        (cli.finite_number, "inf", "must be a finite number, not inf"),
        (cli.finite_number, "x", "'x' is not a number"),
    ]:
        with pytest.raises(Exception, match=message):
            parse(text)


# ----- which checkpoint the samplers took


@pytest.mark.parametrize(
    "path, step, named, line",
    [
        ("checkpoints/shipped/ckpt.pt", 3304, False,
         "model: checkpoints/shipped/ckpt.pt (step 3304): the shipped model, the newest MDLM under "
         "checkpoints/ (choose with --checkpoint)"),
        ("checkpoints/mdlm_smoke_x/ckpt.pt", 20, False,
         "model: checkpoints/mdlm_smoke_x/ckpt.pt (step 20 of 40): the newest MDLM under "
         "checkpoints/, so taken instead of the shipped model; choose another with --checkpoint, "
         "e.g. checkpoints/shipped/ckpt.pt"),
        ("mine/ckpt.pt", 40, True, "model: mine/ckpt.pt (step 40), as --checkpoint asks"),
    ],
)  # fmt: skip
def test_the_line_says_which_checkpoint_and_how_to_choose(tmp_path, monkeypatch, path, step,
                                                          named, line):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    planned = 3304 if "shipped" in path else 40
    checkpoint = {"step": step, "settings": {"max_steps": planned}}
    assert checkpoint_choice(Path(path), checkpoint, named=named, knob="--checkpoint") == line


def test_the_line_of_sampling_ipynb_names_its_knob():
    checkpoint = {"step": 40, "settings": {}}  # a checkpoint without settings: its step alone
    line = checkpoint_choice(Path("x/ckpt.pt"), checkpoint, named=True)
    assert line == "model: x/ckpt.pt (step 40), as CHECKPOINT asks"
