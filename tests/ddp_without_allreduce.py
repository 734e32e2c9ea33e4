"""train.py with DDP's gradient all-reduce taken out: a check that must fail, run by test_ddp.py.

Every DistributedDataParallel gets a communication hook that hands each bucket of gradients back
unchanged (torch's noop_hook), so each process steps with the gradients of its own micro-batches
only. Its losses must then leave those of one process from the second step on; a comparison
that still passes would not be checking anything.

    python -m torch.distributed.run --standalone --nproc_per_node=2 \\
        tests/ddp_without_allreduce.py --RUN_MODE=smoke ...
"""

import os
import runpy
import sys
from pathlib import Path

from torch.distributed.algorithms.ddp_comm_hooks.debugging_hooks import noop_hook
from torch.nn.parallel import DistributedDataParallel

ROOT = Path(__file__).resolve().parent.parent
build = DistributedDataParallel.__init__


def build_without_allreduce(self, *args, **kwargs):
    build(self, *args, **kwargs)
    self.register_comm_hook(state=None, hook=noop_hook)


DistributedDataParallel.__init__ = build_without_allreduce
sys.path.insert(0, str(ROOT))
sys.argv[0] = str(ROOT / "train.py")
try:
    runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
    code = 0
except SystemExit as leaving:  # end_processes: every rank but 0 leaves after the loop
    code = leaving.code or 0
# Subtle: the hook is Python, and torch runs such hooks on a thread of its own; one that outlives
# the interpreter's teardown aborts the process ("terminate called without an active exception",
# seen once in about 15 runs; torch's destroy_process_group says as much). Skip the teardown.
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
