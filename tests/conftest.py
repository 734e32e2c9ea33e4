"""Shared fixtures: a checkpoint made by the real training notebook in smoke mode, and a twin."""

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tools.nbexport import MODULE_FOR

ROOT = Path(__file__).resolve().parent.parent
SHARED_TEXT = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
# CI and this project's machines have ../shared/data; a fresh clone uses the 200 kB slice here.
SMOKE_DATA = SHARED_TEXT if SHARED_TEXT.exists() else ROOT / "tests" / "data" / "tiny.txt"
SMOKE_EMA_DECAY = 0.9  # the smoke run keeps an average of its weights: about its last 10 steps


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run the CUDA paths: where there is no CUDA GPU they are skipped."""
    if torch.cuda.is_available():
        return
    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU (tools/gpu_run.py runs these on one)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(no_gpu)


def run_notebook(notebook: str, out_dir: Path, **parameters) -> Path:
    """Execute a notebook with papermill (cwd = repo root) and return the executed copy."""
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / f"executed_{notebook}"
    command = [sys.executable, "-m", "papermill", notebook, str(executed), "--cwd", str(ROOT)]
    for name, value in parameters.items():
        command += ["-p", name, str(value)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"{notebook} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return executed


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The OUT_DIR of one smoke training run (ckpt.pt and metrics.json inside), with an average
    of the weights (off by default), so that it is trained, saved and resumed too."""
    out_dir = tmp_path_factory.mktemp("smoke_run")
    run_notebook(
        "train_model.ipynb",
        out_dir,
        RUN_MODE="smoke",
        DATA=SMOKE_DATA,
        OUT_DIR=out_dir,
        EMA_DECAY=SMOKE_EMA_DECAY,
    )
    return out_dir


@pytest.fixture(scope="session")
def smoke_checkpoint(smoke_run) -> Path:
    """ckpt.pt of the smoke training run (a tiny MDLM with time conditioning)."""
    return smoke_run / "ckpt.pt"


@pytest.fixture(scope="session")
def smoke_twin(smoke_checkpoint, tmp_path_factory) -> Path:
    """ckpt.pt of a random autoregressive twin (1 layer) with the smoke model's tokenizer and
    window: a judge that reads the same token ids, without training a second model."""
    from mdlm_model import ModelConfig, Transformer, load_model, save_checkpoint

    _, tokenizer, checkpoint = load_model(smoke_checkpoint)
    mdlm_config = checkpoint["model_config"]
    config = ModelConfig(
        vocab_size=mdlm_config["vocab_size"],
        mask_id=mdlm_config["mask_id"],
        seq_len=mdlm_config["seq_len"],
        n_layer=1,
        n_head=2,
        d_model=32,
        time_conditioning=False,
        causal=True,
    )
    path = tmp_path_factory.mktemp("smoke_twin") / "ckpt.pt"
    save_checkpoint(path, model=Transformer(config), tokenizer=tokenizer)
    return path


def notebook_function(notebook: str, name: str):
    """A function defined in a notebook cell that is not exported, compiled alone so that the
    rest of its cell (which may run a whole model) does not run. Its globals are those of the
    notebook's module (mdlm_model.py or mdlm_sampling.py), where its other names come from."""
    cells = json.loads((ROOT / notebook).read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and f"def {name}(" in source:
            tree = ast.parse(source)
            definition = [n for n in tree.body if getattr(n, "name", None) == name]
            module = importlib.import_module(MODULE_FOR[notebook].removesuffix(".py"))
            namespace = dict(vars(module))
            exec(compile(ast.Module(definition, type_ignores=[]), notebook, "exec"), namespace)
            return namespace[name]
    raise AssertionError(f"no cell of {notebook} defines {name}")


def tiny_model(
    vocab_size=24,
    seq_len=16,
    time_conditioning=False,
    causal=False,
    n_layer=1,
    constant_conditioning=False,
):
    """A small randomly initialised network (seed 0) in eval mode; the last id is the mask."""
    from mdlm_model import ModelConfig, Transformer

    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=vocab_size,
        mask_id=vocab_size - 1,
        seq_len=seq_len,
        n_layer=n_layer,
        n_head=2,
        d_model=32,
        time_conditioning=time_conditioning,
        constant_conditioning=constant_conditioning,
        causal=causal,
    )
    return Transformer(config).eval()


def hold_out_dir(folder, seconds=300) -> subprocess.Popen:
    """Another process that claims `folder` as a training run would (the lock of
    train_model.ipynb's section 1) and holds it: returned once it does. Kill it when done."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, mdlm_model as M; "
         "M.claim_out_dir(sys.argv[1], run_name='the first run'); print('held', flush=True); "
         f"time.sleep({seconds})", str(folder)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    return holder
