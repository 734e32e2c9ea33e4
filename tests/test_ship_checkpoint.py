"""scripts/ship_checkpoint.py: a small fp16 checkpoint that samples like the original."""

import sys

import pytest
import torch
from conftest import ROOT

import mdlm_model as M

sys.path.insert(0, str(ROOT / "scripts"))
from ship_checkpoint import ship  # noqa: E402

pytestmark = pytest.mark.slow


def test_shipped_checkpoint_is_smaller_and_predicts_the_same(smoke_checkpoint, tmp_path):
    target = tmp_path / "shipped" / "ckpt.pt"
    size = ship(smoke_checkpoint, target)
    assert size < smoke_checkpoint.stat().st_size / 2
    original, tokenizer, _ = M.load_model(smoke_checkpoint)
    shipped, shipped_tokenizer, checkpoint = M.load_model(target)
    assert checkpoint["optimizer"] is None and shipped_tokenizer.to_json() == tokenizer.to_json()
    idx = torch.randint(tokenizer.mask_id + 1, (2, 32))
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        assert torch.allclose(original(idx, t), shipped(idx, t), atol=2e-2)
