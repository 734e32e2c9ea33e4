"""One short run on a fresh CUDA machine: the GPU tests, training speed, real training, sampling.

    bash tools/gpu_prepare.sh          # here, first: wheels and the corpus, and the command
    python tools/gpu_run.py --out "$OUT" --data .gpu_data/gutenberg      # on the GPU machine
    python tools/gpu_run.py --dry-run --out /tmp/dry --data tests/data/tiny.txt      # anywhere

Everything ends within --budget seconds (default 480, for a machine lent for 15 minutes):

1. speed: bench/bench_train.py at full size, the MDLM and its twin, without and with
   torch.compile, then the shippable size compiled: tokens/s and MFU against the GPU's bf16
   peak, one measurement at a time (the compilations first, side by side), and a profile of one
   compiled full-size MDLM step.
2. training: train_model.ipynb through papermill, four runs at once on the one GPU: the MDLM
   and its twin at full size, and at the shippable size (SHIP: about 10M parameters, under
   25 MB in fp16). Their steps come from the speeds of phase 1 (plan_steps), so that the
   full-size pair ends near the budget and the shippable pair early enough to be sampled.
   The `gpu` tests (tests/test_gpu.py) run beside them, and so does train.py under torchrun
   with one process (DDP over NCCL, compiled, two micro-batches a step, at the smoke size):
   the multi-GPU path, checked on the one GPU there is.
3. sampling: sampling.ipynb in full mode on the shippable MDLM, judged by its twin.
4. outputs in --out, none over 16 MiB: summary.json (every figure), runs.tar.gz (executed
   notebooks, metrics, logs, figures), and the shippable pair in fp16 as ship.tar, cut into
   ship.tar.000, .001, ... (`cat ship.tar.* > ship.tar && tar -xf ship.tar` joins them).

A phase that fails is recorded in summary.json and the next one runs: one try must bring back
whatever worked. --dry-run does it all on whatever device there is, at smoke sizes, a few steps
and no compilation; tests/test_gpu_run.py runs it, so the script cannot rot before a GPU is at
hand. Left out: more than one GPU, and retrying a phase.
"""

import datetime
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run_all import SIZES  # noqa: E402  the full size, in one place with the benchmark
from mdlm_model import pick_device  # noqa: E402
from tools import cli  # noqa: E402

FULL = SIZES["full"]["train"]  # train_model.ipynb's full mode: 8 layers of 512, vocab 8192
SHIP = {"n_layer": 8, "d_model": 256, "n_head": 4}  # about 12M parameters: 24 MB in fp16
DRY = {"vocab_size": 384, "seq_len": 64, "n_layer": 2, "n_head": 2, "d_model": 64, "batch": 8}
DRY_SHIP = {"n_layer": 1, "d_model": 32, "n_head": 2}
PART_BYTES = 15 * 2**20  # pieces of ship.tar: the device tool brings back files up to 16 MiB
# The budget of 480 s: speed up to SPEED_S; then the four training runs, the full-size pair until
# PACKING_S before the end (about 5 minutes), the shippable pair SAMPLING_S earlier still (about
# 3 minutes), so that sampling.ipynb runs on it while the full-size pair finishes.
SPEED_S = 150  # phase 1: four compilations side by side (about a minute), then six timings
STARTUP_S = 45  # a training run's kernel, imports, tokenizer and compilation, before step 1
SAMPLING_S = 115  # sampling.ipynb in full mode on the shippable model
PACKING_S = 20  # phase 4
MIN_STEPS = 20
# Each run's share of the GPU while it trains, for plan_steps: four runs share it at first, the
# full-size pair more (their kernels are bigger); after the shippable pair ends, sampling and
# the full-size pair share it. A guess until a run on a GPU measures it: summary.json records
# the planned and the measured speed of every run.
SHARES = {"full": 0.3, "ship": 0.2}
STARTED = time.monotonic()


def elapsed() -> float:
    return time.monotonic() - STARTED


def log(message: str) -> None:
    print(f"[gpu_run {elapsed():4.0f} s] {message}", flush=True)


def plan_steps(tokens_per_s, tokens_per_step, window_s, share, startup_s=STARTUP_S, safety=0.85):
    """Steps that one run can make in window_s seconds of wall time with `share` of the GPU.

    tokens_per_s: its speed alone on the GPU (phase 1). The first startup_s seconds make no
    steps, and evaluations and checkpoints take about 1 - safety of the rest. Worked example:
    1,000,000 tokens/s alone, 32,768 tokens a step, 300 s, a third of the GPU:
    (300 - 45) x 0.85 x 1,000,000 / 3 / 32,768 = 2,204 steps.
    """
    loop_s = max(0.0, window_s - startup_s) * safety
    return max(MIN_STEPS, int(loop_s * tokens_per_s * share / tokens_per_step))


STAGGER_S = 3  # seconds between the starts of two children


class Runs:
    """Child processes with deadlines, each in its own process group (papermill starts a
    kernel), so that one past its deadline is stopped with everything it started."""

    def __init__(self, env):
        self.env, self.children = env, {}

    def start(self, name, command, log_path, deadline):
        handle = open(log_path, "w")  # noqa: SIM115  closed in wait()
        child = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.children[name] = (child, handle, deadline, time.monotonic())
        log(f"started {name}: {' '.join(map(str, command))}")
        # papermill's kernels pick free ports before binding them: kernels started in the same
        # instant can pick the same one, and one dies at startup (seen once in the dry run)
        time.sleep(STAGGER_S)

    def wait(self, name) -> dict:
        """Wait until the child ends or its deadline passes (then stop it); its exit and time."""
        child, handle, deadline, started = self.children.pop(name)
        try:
            code = child.wait(timeout=max(1.0, deadline - elapsed()))
            stopped = False
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                code = child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                code = child.wait()
            stopped = True
        handle.close()
        seconds = time.monotonic() - started
        log(
            f"{name}: exit {code}{' (stopped at its deadline)' if stopped else ''}, {seconds:.0f} s"
        )
        return {"exit": code, "stopped_at_deadline": stopped, "seconds": seconds}


def tail(path: Path, lines: int = 30) -> str:
    return (
        "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
    )


def machine() -> dict:
    import torch

    info = {"torch": torch.__version__, "python": sys.version.split()[0], "cuda": None}
    if torch.cuda.is_available():
        info.update(cuda=torch.version.cuda, gpu=torch.cuda.get_device_name(0))
        found = shutil.which("nvidia-smi")
        if found:
            query = "--query-gpu=name,driver_version,memory.total,clocks.max.sm"
            result = subprocess.run([found, query, "--format=csv"], capture_output=True, text=True)
            info["nvidia_smi"] = result.stdout.strip()
    return info


def bench_command(objective, size, *, compile_model, json_path, steps, warmup, device, profile=0):
    command = [sys.executable, "bench/bench_train.py", "--objective", objective, "--device", device]
    command += ["--vocab", size["vocab_size"], "--seq-len", size["seq_len"]]
    command += ["--n-layer", size["n_layer"], "--n-head", size["n_head"]]
    command += ["--d-model", size["d_model"], "--batch", size["batch"]]
    command += ["--steps", steps, "--warmup", warmup, "--json", json_path]
    command += ["--compile"] * compile_model + ["--profile", profile] * bool(profile)
    return [str(part) for part in command]


def speed_phase(args, runs, work, sizes) -> dict:
    """Phase 1: every size's speed, alone on the device; compilations side by side first."""
    compile_model = not args.dry_run
    steps, warmup = (2, 1) if args.dry_run else (10, 3)
    plan = [  # (name, objective, size, compiled)
        ("full_mdlm_eager", "mdlm", sizes["full"], False),
        ("full_ar_eager", "ar", sizes["full"], False),
        ("full_mdlm_compiled", "mdlm", sizes["full"], compile_model),
        ("full_ar_compiled", "ar", sizes["full"], compile_model),
        ("ship_mdlm_compiled", "mdlm", sizes["ship"], compile_model),
        ("ship_ar_compiled", "ar", sizes["ship"], compile_model),
    ]
    limit = elapsed() + (60 if args.dry_run else SPEED_S)
    if compile_model:  # fill the compilation caches, all at once: later runs load the kernels
        for name, objective, size, _ in plan[2:]:
            json_path = work / f"warm_{name}.json"
            command = bench_command(
                objective, size, compile_model=True, json_path=json_path, steps=1, warmup=1,
                device=args.device,
            )  # fmt: skip
            runs.start(f"warm_{name}", command, work / f"warm_{name}.log", limit - 75)
        for name, *_ in plan[2:]:
            runs.wait(f"warm_{name}")
    figures = {}
    for name, objective, size, compiled in plan:
        json_path = work / f"speed_{name}.json"
        profile = 12 if name == "full_mdlm_compiled" else 0
        command = bench_command(
            objective, size, compile_model=compiled, json_path=json_path, steps=steps,
            warmup=warmup, device=args.device, profile=profile,
        )  # fmt: skip
        runs.start(name, command, work / f"speed_{name}.log", limit)
        result = runs.wait(name)
        if json_path.exists():
            figures[name] = {**json.loads(json_path.read_text()), **result}
        else:
            figures[name] = {**result, "log": tail(work / f"speed_{name}.log")}
    return figures


def training_runs(args, sizes) -> dict:
    """The four runs of phase 2: name -> (papermill parameters, size key)."""
    common = {"DATA": args.data, "COMPILE": not args.dry_run}
    common["RUN_MODE"] = "smoke" if args.dry_run else "full"
    ship = {key.upper(): value for key, value in sizes["ship_changes"].items()}
    return {
        "full_mdlm": ({**common, "OBJECTIVE": "mdlm"}, "full"),
        "full_ar": ({**common, "OBJECTIVE": "ar"}, "full"),
        "ship_mdlm": ({**common, "OBJECTIVE": "mdlm", **ship}, "ship"),
        "ship_ar": ({**common, "OBJECTIVE": "ar", **ship}, "ship"),
    }


def ddp_command(args, out_dir) -> list[str]:
    """train.py under torchrun, one process: the path of a multi-GPU run (NCCL on a GPU, gloo in
    the dry run), with GRAD_ACCUM 2 so that no_sync is used, at the smoke size."""
    parameters = {"RUN_MODE": "smoke", "DATA": args.data, "GRAD_ACCUM": 2, "BATCH_SIZE": 4}
    parameters.update(COMPILE=not args.dry_run, OUT_DIR=out_dir)
    if args.dry_run:
        parameters.update(MAX_STEPS=6, EVAL_EVERY=3)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    return command + ["train.py"] + [f"--{name}={value}" for name, value in parameters.items()]


def papermill_command(notebook, executed, parameters):
    command = [sys.executable, "-m", "papermill", notebook, str(executed), "--cwd", str(ROOT)]
    for name, value in parameters.items():
        command += ["-p", name, str(value)]
    return command


def run_metrics(out_dir: Path) -> dict:
    """A run's metrics.json, or, for a run stopped early, those of its last checkpoint."""
    if (out_dir / "metrics.json").exists():
        return json.loads((out_dir / "metrics.json").read_text())
    if (out_dir / "ckpt.pt").exists():
        import torch

        checkpoint = torch.load(out_dir / "ckpt.pt", map_location="cpu", weights_only=True)
        return {**checkpoint["metrics"], "from_checkpoint": True}
    return {}


def summarize_run(metrics: dict) -> dict:
    """The figures of a training run that summary.json keeps (its history stays in the tar)."""
    keys = ["run", "objective", "steps", "tokens_seen", "val_bpb", "unigram_bpb", "params",
            "train_tokens_per_s", "wall_s", "device", "dtype", "from_checkpoint"]  # fmt: skip
    summary = {key: metrics.get(key) for key in keys if key in metrics}
    history = metrics.get("history", {})
    if history.get("val_bpb"):
        best = min(range(len(history["val_bpb"])), key=history["val_bpb"].__getitem__)
        summary["best_val_bpb"] = history["val_bpb"][best]
        summary["best_step"] = history["val_step"][best]
        summary["val_curve"] = list(zip(history["val_step"], history["val_bpb"], strict=True))
    return summary


def write_summary(out: Path, summary: dict) -> None:
    summary["elapsed_s"] = round(elapsed(), 1)
    temporary = out / "summary.json.tmp"
    temporary.write_text(json.dumps(summary, indent=1, default=str))
    os.replace(temporary, out / "summary.json")


def ship_pair(work: Path, out: Path) -> dict:
    """The shippable pair in fp16 as ship.tar, in parts of at most PART_BYTES."""
    from tools.ship_checkpoint import ship

    folder = work / "ship"
    sizes = {}
    for name, target in [("ship_mdlm", "ckpt.pt"), ("ship_ar", "ar_twin/ckpt.pt")]:
        source = work / "checkpoints" / name / "ckpt.pt"
        if source.exists():
            sizes[target] = ship(source, folder / target)
    if not sizes:
        return {"error": "no shippable checkpoint was written"}
    tar_path = work / "ship.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(folder, arcname="shipped")
    data = tar_path.read_bytes()
    parts = []
    for k in range(0, len(data), PART_BYTES):
        part = out / f"ship.tar.{k // PART_BYTES:03d}"
        part.write_bytes(data[k : k + PART_BYTES])
        parts.append(part.name)
    return {
        "bytes": sizes,
        "parts": parts,
        "sha256": hashlib.sha256(data).hexdigest(),
        "join": "cat ship.tar.* > ship.tar && tar -xf ship.tar  # makes shipped/",
    }


def pack_runs(work: Path, out: Path) -> None:
    """Executed notebooks, metrics, logs and figures: runs.tar.gz (a few MB)."""
    with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:
        for path in sorted(work.rglob("*")):
            keep = path.suffix in (".ipynb", ".log", ".json", ".png", ".gif")
            if path.is_file() and keep and "ship" != path.parent.name:
                tar.add(path, arcname=str(path.relative_to(work)))


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where the results go")
    parser.add_argument("--data", default="gutenberg", help="DATA for train_model.ipynb")
    parser.add_argument("--work", type=Path, default=None, help="default: OUT/../gpu_run_work")
    parser.add_argument(
        "--budget", type=cli.finite_number, default=480, help="seconds for everything"
    )
    parser.add_argument("--device", default="auto", help="for the speed measurements")
    parser.add_argument("--dry-run", action="store_true", help="smoke sizes, no compilation")
    parser.add_argument(
        "--tests-on-cpu",
        action="store_true",
        help="run tests/test_gpu.py on the CPU (slow) where there is no GPU",
    )
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error(f"--budget {args.budget:g}: it must be a number of seconds above 0")
    with cli.refusing(ValueError):  # a device this machine lacks, before any work
        pick_device(args.device, knob="--device")
    cli.folder(args.out, "--out")
    work = args.work or args.out.parent / f"{args.out.name}_work"
    if work.resolve() in (ROOT, *ROOT.parents) or work.resolve() == args.out.resolve():
        cli.refuse(f"--work {work} would be emptied first: give a folder of its own")
    if work.exists() and not work.is_dir():
        cli.refuse(f"--work {work} is a file, not a folder")
    shutil.rmtree(work, ignore_errors=True)
    (work / "checkpoints").mkdir(parents=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    env.update(SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
    runs = Runs(env)
    full = DRY if args.dry_run else FULL
    ship_changes = DRY_SHIP if args.dry_run else SHIP
    sizes = {"full": full, "ship": {**full, **ship_changes}, "ship_changes": ship_changes}
    summary = {
        "command": " ".join(sys.argv),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "budget_s": args.budget,
        "machine": machine(),
        "sizes": sizes,
    }
    log(f"machine: {summary['machine']}")
    write_summary(args.out, summary)

    # 1. speed
    try:
        summary["speed"] = speed_phase(args, runs, work, sizes)
    except Exception as error:  # one failed phase must not cost the others
        summary["speed"] = {"error": repr(error)}
    write_summary(args.out, summary)

    # 2. training, with the gpu tests beside it
    finish_full = args.budget - PACKING_S
    finish_ship = finish_full - SAMPLING_S
    planned = {}
    for name, (parameters, size_key) in training_runs(args, sizes).items():
        speed = summary["speed"].get(f"{size_key}_{parameters['OBJECTIVE']}_compiled", {})
        tokens_per_step = sizes[size_key]["batch"] * sizes[size_key]["seq_len"]
        window = (finish_full if size_key == "full" else finish_ship) - elapsed()
        if args.dry_run:
            steps = 6
        elif speed.get("tokens_per_second"):
            share = SHARES[size_key]
            steps = plan_steps(speed["tokens_per_second"], tokens_per_step, window, share)
        else:
            steps = MIN_STEPS * 10  # no speed: a short run rather than none
        parameters = {**parameters, "MAX_STEPS": steps, "EVAL_EVERY": max(1, steps // 10)}
        parameters["OUT_DIR"] = work / "checkpoints" / name
        planned[name] = {"parameters": parameters, "window_s": round(window)}
        command = papermill_command("train_model.ipynb", work / f"{name}.ipynb", parameters)
        deadline = finish_full if size_key == "full" else finish_ship
        runs.start(name, command, work / f"{name}.log", deadline)
    summary["train"] = planned
    ddp_out = work / "checkpoints" / "ddp_one_process"
    runs.start("ddp", ddp_command(args, ddp_out), work / "ddp.log", finish_ship)
    test_command = [sys.executable, "-m", "pytest", "-q", "-rs", "tests/test_gpu.py"]
    test_env = {}
    if args.tests_on_cpu:
        test_env = {"GPU_TESTS_DEVICE": "cpu", "GPU_TESTS_COMPILE": "0"}
    else:
        test_command += ["-m", "gpu"]
    runs.env = {**env, **test_env}
    runs.start("gpu_tests", test_command, work / "gpu_tests.log", finish_ship)
    runs.env = env
    summary["gpu_tests"] = runs.wait("gpu_tests")
    summary["gpu_tests"]["tail"] = tail(work / "gpu_tests.log", 15)
    write_summary(args.out, summary)

    # 3. sampling, as soon as the shippable pair is done
    for name in ("ship_mdlm", "ship_ar"):
        summary["train"][name].update(runs.wait(name))
        summary["train"][name].update(summarize_run(run_metrics(work / "checkpoints" / name)))
    summary["ddp"] = {**runs.wait("ddp"), **summarize_run(run_metrics(ddp_out))}
    summary["ddp"]["processes"] = run_metrics(ddp_out).get("processes")
    summary["ddp"]["tail"] = tail(work / "ddp.log", 15)
    write_summary(args.out, summary)
    sampling_out = work / "sampling"
    parameters = {
        "CHECKPOINT": work / "checkpoints" / "ship_mdlm" / "ckpt.pt",
        "JUDGE": work / "checkpoints" / "ship_ar" / "ckpt.pt",
        "CACHE_CHECKPOINT": "none",
        "RUN_MODE": "smoke" if args.dry_run else "full",
        "OUT_DIR": sampling_out,
    }
    command = papermill_command("sampling.ipynb", work / "sampling.ipynb", parameters)
    runs.start("sampling", command, work / "sampling.log", finish_full)
    summary["sampling"] = runs.wait("sampling")
    if (sampling_out / "sampling_metrics.json").exists():
        summary["sampling"]["metrics"] = json.loads(
            (sampling_out / "sampling_metrics.json").read_text()
        )
    else:
        summary["sampling"]["log"] = tail(work / "sampling.log")
    for name in ("full_mdlm", "full_ar"):
        summary["train"][name].update(runs.wait(name))
        summary["train"][name].update(summarize_run(run_metrics(work / "checkpoints" / name)))
    write_summary(args.out, summary)

    # 4. outputs
    try:
        summary["ship"] = ship_pair(work, args.out)
    except Exception as error:
        summary["ship"] = {"error": repr(error)}
    for figure in ("docs/img/denoising.gif", "docs/img/quality_vs_steps.png"):
        if (ROOT / figure).exists() and not args.dry_run:  # sampling.ipynb's full mode made them
            shutil.copy(ROOT / figure, work / Path(figure).name)
    pack_runs(work, args.out)
    write_summary(args.out, summary)
    log(f"done: {sorted(p.name for p in args.out.iterdir())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
