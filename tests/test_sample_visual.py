"""sample_visual.py: layout worked out by hand, a drawn frame, the keys, the headless GIF."""

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"  # before pygame opens a display: no window, no sound
os.environ["SDL_AUDIODRIVER"] = "dummy"

import re
import subprocess
import sys
from pathlib import Path

import pygame
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from bpe_tokenizer import BPETokenizer
from mdlm_model import load_model
from sample_visual import (
    MASK,
    Cell,
    FontChain,
    Renderer,
    Settings,
    Trajectory,
    Viewer,
    frames_since_reveal,
    layout,
    main,
    sample_trajectory,
    token_texts,
)

ROOT = Path(__file__).resolve().parent.parent
BYTES = BPETokenizer([])  # no merges: every byte is a token; mask_id = 258


@pytest.fixture(scope="module", autouse=True)
def display_and_one_thread():
    """pygame's dummy display; and one torch thread, which samples a tiny model faster than
    two threads that fight over a shared CPU."""
    pygame.display.init()
    pygame.font.init()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    pygame.quit()


@pytest.mark.parametrize(
    "texts, width, expected",
    [
        (  # the docstring's example: a mask that does not fit wraps like a word
            ["The", " cat", None, " sat\n", "on"],
            8,
            [
                (0, 0, 0, "The"),
                (1, 3, 0, " cat"),
                (2, 0, 1, None),
                (3, 2, 1, " sat"),
                (4, 0, 2, "on"),
            ],
        ),
        (  # a wrapped line drops its leading space; a token never splits
            ["ab", " cd", " efghij"],
            5,
            [(0, 0, 0, "ab"), (1, 2, 0, " cd"), (2, 0, 1, "efghij")],
        ),
        (  # "\n\n" is two line breaks and nothing to draw
            ["a", "\n\n", "b", None],
            80,
            [(0, 0, 0, "a"), (2, 0, 2, "b"), (3, 1, 2, None)],
        ),
    ],
)
def test_layout_by_hand(texts, width, expected):
    assert layout(texts, width) == [Cell(*cell) for cell in expected]


@given(
    st.lists(st.one_of(st.none(), st.text(alphabet="ab \n", max_size=6)), max_size=30),
    st.integers(min_value=2, max_value=20),
)
def test_layout_keeps_order_and_width(texts, width):
    cells = layout(texts, width)
    positions, places = [c.position for c in cells], [(c.row, c.x) for c in cells]
    assert positions == sorted(positions) and places == sorted(places)  # reading order
    for cell in cells:  # a cell fits its line, unless it is wider than a line on its own
        size = 2 if cell.text is None else len(cell.text)
        assert cell.x + size <= width or cell.x == 0
    masks = [position for position, text in enumerate(texts) if text is None]
    assert [cell.position for cell in cells if cell.text is None] == masks


@pytest.mark.parametrize(
    "ids, expected",
    [
        ([72, 105], ["H", "i"]),
        ([0xC3, 0xA9, 33], ["", "é", "!"]),  # "é" is two bytes: it shows on the second
        ([0xC3, 258, 0xA9], ["\ufffd", None, "\ufffd"]),  # a mask cuts it: both halves are "�"
        ([258, 9], [None, "    "]),  # a tab is four spaces
    ],
)
def test_token_texts(ids, expected):
    assert token_texts(BYTES, ids) == expected


def test_frames_since_reveal():
    masked = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 0, 1], [0, 0, 0]]).bool()  # (F, L)
    masked = masked[:, None]  # (F, B=1, L): revealed in frames 2, 1 and 3
    assert frames_since_reveal(masked, 3, horizon=6).tolist() == [[1, 2, 0]]
    assert frames_since_reveal(masked, 3, horizon=1).tolist() == [[1, 1, 0]]
    assert frames_since_reveal(masked, 0, horizon=6).tolist() == [[6, 6, 6]]


def synthetic_trajectory(text="To be, or not to be: that is the question.", num_frames=5):
    """A byte-level text revealed in a fixed random order, evenly over num_frames frames."""
    ids = torch.tensor(list(text.encode()))  # (L,)
    rank = torch.randperm(len(ids), generator=torch.Generator().manual_seed(0))  # (L,)
    shown = rank[None] < torch.linspace(0, len(ids), num_frames)[:, None]  # (F, L) bool
    tokens = torch.where(shown, ids, BYTES.mask_id)[:, None]  # (F, 1, L)
    confidence = torch.where(shown, torch.linspace(0, 1, len(ids)), torch.nan)[:, None]
    steps, times = list(range(num_frames)), torch.linspace(1, 0, num_frames).tolist()
    return Trajectory(tokens, confidence, steps, times, num_frames - 1, BYTES.mask_id)


def mask_pixels(image: Image.Image) -> int:
    """Pixels of the mask's colour (give or take the GIF's rounding) between status and legend."""
    width, height = image.size
    renderer = Renderer(BYTES)
    bottom = renderer.timeline_rect(image.size).top - 2 * renderer.line_height
    area = image.convert("RGB").crop((0, 3 * renderer.margin, width, bottom))
    pixels = torch.frombuffer(bytearray(area.tobytes()), dtype=torch.uint8).view(-1, 3)
    return int(((pixels.int() - torch.tensor(MASK)).abs().max(dim=1).values <= 2).sum())


def test_renderer_draws_masks_first_and_text_last():
    trajectory, renderer = synthetic_trajectory(), Renderer(BYTES)
    surface = pygame.Surface((480, 320))
    for index, masks_drawn in [(0, True), (len(trajectory) - 1, False)]:
        renderer.draw(surface, trajectory, index, "ancestral", "help")
        image = Image.frombytes("RGB", (480, 320), pygame.image.tobytes(surface, "RGB"))
        assert (mask_pixels(image) > 0) == masks_drawn


@pytest.fixture(scope="module")
def smoke_model(smoke_checkpoint):
    model, tokenizer, _ = load_model(smoke_checkpoint)
    return model, tokenizer


@pytest.fixture
def viewer(smoke_model, tmp_path):
    """A window on an 8-step trajectory of the smoke model (9 frames, fewer if it ends early)."""
    model, tokenizer = smoke_model
    settings = Settings(steps=8)
    trajectory = sample_trajectory(model, tokenizer, settings, "cpu")
    return Viewer(model, tokenizer, settings, trajectory, "cpu", (640, 400), out_dir=tmp_path)


def press(viewer, *keys):
    """Post key presses to pygame's event queue and let the viewer handle them."""
    for key in keys:
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))
    for event in pygame.event.get():
        viewer.handle_event(event)


def test_space_pauses_and_arrows_step(viewer):
    assert not viewer.paused and viewer.index == 0
    press(viewer, pygame.K_SPACE)
    assert viewer.paused
    press(viewer, pygame.K_RIGHT, pygame.K_RIGHT, pygame.K_RIGHT, pygame.K_LEFT)
    assert viewer.index == 2
    press(viewer, pygame.K_LEFT, pygame.K_LEFT, pygame.K_LEFT)
    assert viewer.index == 0  # held at the first frame
    press(viewer, pygame.K_SPACE)
    assert not viewer.paused


def test_playback_holds_at_the_end_and_space_replays(viewer):
    viewer.update(seconds=0.125)  # 16 frames/s
    assert viewer.index == 2
    viewer.update(seconds=100)
    assert viewer.index == len(viewer.trajectory) - 1
    press(viewer, pygame.K_SPACE)
    assert viewer.index == 0 and not viewer.paused


def test_speed_keys(viewer):
    press(viewer, pygame.K_UP, pygame.K_EQUALS)
    assert viewer.speed == 64
    press(viewer, pygame.K_DOWN, pygame.K_MINUS, pygame.K_MINUS)
    assert viewer.speed == 8


def test_keys_that_resample(viewer):
    first = viewer.trajectory.tokens[-1].clone()
    press(viewer, pygame.K_RIGHT, pygame.K_r)
    assert viewer.settings.seed == 1 and viewer.index == 0 and not viewer.paused
    assert not torch.equal(viewer.trajectory.tokens[-1], first)
    press(viewer, pygame.K_t)
    assert viewer.settings.temperature == 1.2
    press(viewer, pygame.K_t)
    assert viewer.settings.temperature == 0.6
    press(viewer, pygame.K_3)
    assert viewer.settings.steps == viewer.trajectory.num_steps == 16


def test_screenshot_and_gif(viewer, tmp_path):
    press(viewer, pygame.K_s, pygame.K_g)
    png, gif = tmp_path / "mdlm_seed0_frame0000.png", tmp_path / "mdlm_seed0.gif"
    assert pygame.image.load(png).get_size() == (640, 400)
    assert Image.open(gif).n_frames == len(viewer.trajectory)
    assert "saved" in viewer.message


def test_dragging_on_the_timeline_scrubs(viewer):
    timeline = viewer.renderer.timeline_rect(viewer.screen.get_size())
    for kind, x in [
        (pygame.MOUSEBUTTONDOWN, timeline.left),
        (pygame.MOUSEMOTION, timeline.centerx),  # halfway along
        (pygame.MOUSEBUTTONUP, timeline.right),
    ]:
        pygame.event.post(pygame.event.Event(kind, pos=(x, timeline.centery), button=1))
    for event in pygame.event.get():
        viewer.handle_event(event)
    assert viewer.index == round((len(viewer.trajectory) - 1) / 2)
    assert viewer.paused and not viewer.scrubbing


@pytest.mark.parametrize(
    "event",
    [
        pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE),
        pygame.event.Event(pygame.KEYDOWN, key=pygame.K_q),
        pygame.event.Event(pygame.QUIT),  # the window's close button
    ],
    ids=["Esc", "Q", "close"],
)
def test_quit(viewer, event):
    pygame.event.post(event)
    for event in pygame.event.get():
        viewer.handle_event(event)
    assert not viewer.running


def run_script(*args, cwd=ROOT):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as above: one thread is faster here
    command = [sys.executable, str(ROOT / "sample_visual.py"), *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_headless_writes_a_gif_from_masks_to_text(smoke_checkpoint, tmp_path):
    out, frames = tmp_path / "unmasking.gif", tmp_path / "frames"
    args = ["--headless", "--out", out, "--checkpoint", smoke_checkpoint, "--steps", 12]
    result = run_script(*args, "--size", "480x320", "--frames-dir", frames)
    assert result.returncode == 0, result.stderr
    choice, line = result.stdout.splitlines()
    assert choice == f"model: {smoke_checkpoint} (step 40), as --checkpoint asks"
    found = re.fullmatch(
        rf"wrote {out}: (\d+) frames, masked positions (\d+)/(\d+) in the first "
        r"frame and 0/\3 in the last",
        line,
    )
    assert found, line
    num_frames, first, total = map(int, found.groups())
    assert first == total and 2 < num_frames <= 13  # all masked first, none at the end
    with Image.open(out) as gif:
        assert gif.n_frames == num_frames and gif.size == (480, 320)
        assert mask_pixels(gif) > 0
        gif.seek(num_frames - 1)
        assert mask_pixels(gif) == 0
    assert len(list(frames.glob("*.png"))) == num_frames


def test_without_a_checkpoint_it_says_how_to_make_one(tmp_path):
    result = run_script("--headless", "--out", tmp_path / "x.gif", cwd=tmp_path)  # no checkpoints/
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "train_model.ipynb" in result.stderr


@pytest.mark.parametrize("problem", ["missing", "corrupt", "remask without confidence"])
def test_a_bad_checkpoint_or_setting_exits_with_a_message(
    smoke_checkpoint, tmp_path, problem, capsys
):
    checkpoint, options = tmp_path / "ckpt.pt", []
    if problem == "corrupt":
        checkpoint.write_bytes(b"not a checkpoint")
    if problem == "remask without confidence":  # sample() refuses it: the message comes through
        checkpoint, options = smoke_checkpoint, ["--remask", "0.5"]
    with pytest.raises(SystemExit) as exit:
        main(
            [
                "--headless",
                "--out",
                str(tmp_path / "x.gif"),
                "--checkpoint",
                str(checkpoint),
                *options,
            ]
        )
    message, status = str(exit.value), exit.value.code
    assert status == 2 and capsys.readouterr().err == f"{message}\n"  # one line, no traceback
    expected = "needs method='confidence'" if problem.startswith("remask") else str(checkpoint)
    assert expected in message


@pytest.mark.parametrize("size", ["0x0", "319x700", "1000x199", "5x5"])
def test_a_size_too_small_to_draw_is_refused(size, capsys):
    with pytest.raises(SystemExit):
        main(["--headless", "--out", "x.gif", "--size", size])
    assert (
        "too small to draw the text, legend and timeline: at least 320x200"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize("size", ["big", "10x", "x10", "1e3x500"])
def test_a_size_that_is_not_width_by_height_is_refused(size, capsys):
    with pytest.raises(SystemExit):
        main(["--headless", "--out", "x.gif", "--size", size])
    assert "is not WIDTHxHEIGHT, e.g. 1000x700" in capsys.readouterr().err


def test_the_smallest_size_draws(smoke_checkpoint, tmp_path):
    out = tmp_path / "small.gif"
    main(["--headless", "--out", str(out), "--checkpoint", str(smoke_checkpoint), "--steps", "4",
          "--size", "320x200"])  # fmt: skip
    with Image.open(out) as gif:
        assert gif.size == (320, 200)


def test_an_autoregressive_checkpoint_names_the_flag(smoke_twin, tmp_path):
    with pytest.raises(SystemExit) as exit:
        main(["--headless", "--out", str(tmp_path / "x.gif"), "--checkpoint", str(smoke_twin)])
    message = str(exit.value)
    assert "autoregressive twin" in message and "give --checkpoint an MDLM's ckpt.pt" in message
    assert "CHECKPOINT" not in message.replace("--checkpoint", "")


def test_without_a_checkpoint_the_message_names_the_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no checkpoints/ here
    with pytest.raises(SystemExit) as exit:
        main(["--headless", "--out", "x.gif"])
    assert "name one with --checkpoint" in str(exit.value) and exit.value.code == 2


EMOJI = "\U0001f600"  # 😀, in no monospace font here; DejaVu Sans draws a black-and-white one


def test_fallback_fonts_draw_what_the_monospace_font_lacks():
    chain = FontChain("monospace", 20)
    if len(chain.lookups) < 2 or chain.font_for(EMOJI) is chain.fonts[0]:
        pytest.skip("no installed fallback font has the emoji")
    runs = chain.runs(f"hi {EMOJI}!")
    assert [piece for _, piece in runs] == ["hi ", EMOJI, "!"]
    assert runs[0][0] is chain.fonts[0] is runs[2][0] and runs[1][0] is not chain.fonts[0]
    box = chain.fonts[0].render(EMOJI, True, (255, 255, 255))  # what the window drew before
    drawn = chain.render(EMOJI, True, (255, 255, 255))
    assert pygame.image.tobytes(drawn, "RGBA") != pygame.image.tobytes(box, "RGBA")
    width = sum(font.size(piece)[0] for font, piece in runs)
    assert (
        chain.size(f"hi {EMOJI}!")[0]
        == width
        == chain.render(f"hi {EMOJI}!", True, (0, 0, 0)).get_width()
    )


def test_a_character_no_font_has_falls_back_to_the_box():
    chain = FontChain("monospace", 20)
    private_use = "\U0010fffd"  # assigned to nothing: no font has it
    assert chain.runs(f"a{private_use}") == [(chain.fonts[0], f"a{private_use}")]
