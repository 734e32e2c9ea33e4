"""tools/ship_checkpoint.py: a small fp16 checkpoint that samples like the original."""

import pytest
import torch
from conftest import ROOT

import mdlm_model as M
from tools.ship_checkpoint import restamp, ship  # noqa: E402

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


@pytest.fixture
def stamped_by_other_code(smoke_checkpoint, tmp_path):
    """A copy of the smoke checkpoint and of mdlm_model.py, as if another version made both."""
    old_code = (ROOT / "mdlm_model.py").read_text(encoding="utf-8")
    old_code = old_code.replace(M.SOURCE_SHA256, "0" * 64)
    checkpoint = torch.load(smoke_checkpoint, weights_only=True)
    checkpoint["code_sha256"] = "0" * 64
    path = tmp_path / "ckpt.pt"
    torch.save(checkpoint, path)
    return path, old_code


def test_restamp_records_the_current_code_when_the_logits_are_the_same(stamped_by_other_code):
    path, old_code = stamped_by_other_code
    (path.parent / "old.py").write_text(old_code)
    assert restamp(path, path.parent / "old.py") == "0" * 64
    checkpoint = M.load_checkpoint(path)  # no warning now
    assert checkpoint["code_sha256"] == M.SOURCE_SHA256
    assert checkpoint["metrics"]["restamped_from"] == "0" * 64


def test_restamp_refuses_code_that_computes_other_logits(stamped_by_other_code):
    path, old_code = stamped_by_other_code
    before = path.read_bytes()
    projection = "logits = F.linear(x, self.embed.weight)"
    changed = old_code.replace(projection, "logits = 1.001 * F.linear(x, self.embed.weight)")
    assert changed != old_code
    (path.parent / "old.py").write_text(changed)
    with pytest.raises(M.CheckpointError, match="other logits"):
        restamp(path, path.parent / "old.py")
    (path.parent / "other.py").write_text(old_code.replace("0" * 64, "1" * 64))
    with pytest.raises(M.CheckpointError, match="is not the code that made"):
        restamp(path, path.parent / "other.py")
    assert path.read_bytes() == before  # nothing written
