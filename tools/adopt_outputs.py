"""Give a notebook the outputs of an executed copy of it, so readers on the web see a real run.

    python tools/adopt_outputs.py runs/mdlm_quick_gutenberg.ipynb train_model.ipynb

papermill writes the executed copy with one extra cell, "injected-parameters", holding the
`-p` values of the command line (for the project's runs, paths to local copies of the corpora
such as ../shared/data/gutenberg). That cell is dropped: kept, it would override the
parameters cell for everyone who runs the notebook, with paths that only exist on the machine
of the run. Its values are printed, to put in the commit message.

tqdm draws its progress bars in notebooks as widgets, whose saved plain-text fallback is the
bar as first drawn ("0%"), which is what GitHub shows. The run's final state of each bar is kept
in the notebook's widget metadata; the fallback text is rewritten from it ("100%").

Refuses when the executed copy's code differs from the notebook's (cell for cell, ignoring the
injected cell), so committed outputs always come from the committed code.
"""

import html
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools import cli  # noqa: E402

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# tqdm's widget: a box holding its prefix, the bar and its suffix
TQDM_BAR = ["HBoxModel", "HTMLModel", "FloatProgressModel", "HTMLModel"]


def settle_progress_bars(nb) -> int:
    """Rewrite the plain-text fallback of tqdm's widgets to their final state; return how many."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def model(ref):  # a child is named "IPY_MODEL_<id>"
        return state.get(ref.removeprefix("IPY_MODEL_"), {})

    def text(m):  # tqdm pads with figure spaces and escapes its HTML
        return html.unescape(m["state"]["value"]).replace("\u2007", " ")

    settled = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            box = model(view["model_id"]) if view else {}
            parts = [model(c) for c in box.get("state", {}).get("children", [])]
            names = [box.get("model_name")] + [m.get("model_name") for m in parts]
            if names != TQDM_BAR:
                continue
            bar = parts[1]["state"]
            filled = round(10 * bar["value"] / bar["max"]) if bar.get("max") else 0
            output["data"]["text/plain"] = (
                f"{text(parts[0])}|{'█' * filled}{' ' * (10 - filled)}|{text(parts[2])}"
            )
            settled += 1
    return settled


def adopt(executed_path: Path, target_path: Path) -> list[str]:
    """Write executed_path, less its injected cell, over target_path; return the injected lines."""
    executed, target = read_notebook(executed_path), read_notebook(target_path)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    executed.cells = [c for c in executed.cells if c not in injected]
    ours = [(c.cell_type, c.source) for c in target.cells]
    theirs = [(c.cell_type, c.source) for c in executed.cells]
    if ours != theirs:
        differing = next(
            (i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs))
        )
        cli.refuse(
            f"{executed_path} was run from other code than {target_path} (first difference at "
            f"cell {differing}): run the notebook again, then adopt its outputs"
        )
    for ran, cell in zip(executed.cells, target.cells):
        ran.id = cell.id  # keep the committed ids: diffs then show outputs, not renamed cells
    settle_progress_bars(executed)
    nbformat.write(executed, target_path)
    return [line for cell in injected for line in cell.source.splitlines()]


def read_notebook(path: Path):
    """The notebook at `path`, or a refusal that says what is wrong with the file."""
    if not Path(path).is_file():
        cli.refuse(f"{path}: no such notebook file")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as error:  # not JSON, not UTF-8, or JSON of another shape
        cli.refuse(f"{path} is not a notebook ({cli.describe(error)})")


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("executed", type=Path, help="the notebook papermill wrote")
    parser.add_argument("target", type=Path, help="the notebook to give its outputs")
    args = parser.parse_args(argv)
    injected = adopt(args.executed, args.target)
    print(f"{args.target}: outputs of {args.executed}; the run's parameters were:")
    for line in injected:
        print(f"    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
