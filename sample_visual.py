"""
Watch a masked diffusion language model write: text emerges from a sequence of masks.

    python sample_visual.py                     # the newest checkpoint: its first line says which
    python sample_visual.py --sampler confidence --steps 64 --prompt "ROMEO:"
    python sample_visual.py --headless --out docs/img/unmasking.gif       # no display needed

The sampler (mdlm_sampling.sample) runs first and records every step; the window then plays
that trajectory back, so you can pause, step and scrub through it. A frame shows the text with
every masked position as a grey block, all of one size (the model does not know how long a
token is until it picks one, so the text reflows as tokens appear); each revealed token in the
colour of the probability the model gave it when it was chosen, outlined for a few frames after
it appears; the prompt, kept fixed, in blue; a status bar; and a timeline to click or drag, with
a tick for every frame that revealed tokens, as tall as the number it revealed.

Keys: space pause/play, left/right step, up/down or +/- speed, R new seed, T next temperature,
1-9 steps = 4, 8, ..., 1024, S screenshot PNG, G trajectory GIF, Esc or Q quit.

Characters the monospace font lacks (emoji, many symbols) are drawn in the first installed font
that has them (FALLBACK_FONTS: DejaVu Sans, Noto, Segoe UI, Apple's, ...); a character that no
installed font has shows as a box. Colour emoji need a colour emoji font that SDL can scale.

Left out, on purpose: sampling in a background thread (the window waits while a new trajectory
is sampled, seconds for a big model on a CPU), scrolling (lines that do not fit are not drawn),
wide (CJK) and right-to-left scripts, and an outline for a token that is only a newline or half
a character (it has nothing to draw).
"""

import argparse
import codecs
import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch
from PIL import Image

from mdlm_model import CheckpointError, load_model, pick_device
from mdlm_sampling import (
    METHODS,
    checkpoint_choice,
    make_fixed,
    newest_checkpoint,
    sample,
    windows,
)
from tools import cli

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame prints a banner on import
import pygame
import pygame.freetype

BACKGROUND, PANEL, MASK = (22, 24, 31), (34, 37, 47), (64, 71, 89)
TEXT, DIM, PROMPT, HIGHLIGHT = (220, 223, 228), (128, 134, 150), (110, 160, 255), (250, 250, 210)
UNSURE, HALF_SURE, SURE = (226, 96, 110), (232, 184, 92), (118, 214, 160)  # p = 0, 1/2, 1
HIGHLIGHT_FRAMES = 4  # a new token stays outlined for this many frames
TEMPERATURES = (0.6, 0.8, 1.0, 1.2)  # T cycles through these
MAX_GIF_FRAMES = 256  # longer trajectories are thinned evenly, keeping the first and last frame
MIN_SIZE = (320, 200)  # the smallest window in which the text, legend and timeline all fit
# fonts for characters the monospace font lacks, tried in this order where installed
FALLBACK_FONTS = (
    "dejavusans",
    "notosans",
    "notosanssymbols",
    "notosanssymbols2",
    "notocoloremoji",
    "notoemoji",
    "segoeuiemoji",
    "segoeuisymbol",
    "applecoloremoji",
    "applesymbols",
    "symbola",
    "unifont",
)
HELP = "space pause  left/right step  up/down speed  R seed  T temperature  1-9 steps 4..1024  "
HELP += "S png  G gif  Q quit"


@dataclass
class Settings:
    """What to sample: the command line's knobs, which keys change while the window runs."""

    sampler: str = "ancestral"
    steps: int = 128
    temperature: float = 1.0
    top_p: float | None = None
    length: int | None = None  # None: the model's seq_len
    prompt: str = ""
    remask: float = 0.0  # the confidence sampler's corrector: a share of tokens masked again
    seed: int = 0
    num_samples: int = 1

    def describe(self) -> str:
        top_p = f"  top-p {self.top_p:g}" if self.top_p else ""
        remask = f"  remask {self.remask:g}" if self.remask else ""
        return f"{self.sampler}  T {self.temperature:g}{top_p}{remask}  seed {self.seed}"


@dataclass
class Trajectory:
    """Every recorded step of one sampling run, stacked: F frames of B sequences of L tokens."""

    tokens: torch.Tensor  # (F, B, L) long
    confidence: torch.Tensor  # (F, B, L) p(token) when it was chosen; NaN masked, 1 given
    steps: list[int]  # the sampler's step count at each frame
    times: list[float]  # t at each frame: 1 all masked, 0 done
    num_steps: int  # steps planned; the sampler stops early once nothing is masked
    mask_id: int
    masked: torch.Tensor = field(init=False)  # (F, B, L) bool

    def __post_init__(self):
        self.masked = self.tokens == self.mask_id

    def __len__(self) -> int:
        return len(self.tokens)


def sample_trajectory(model, tokenizer, settings: Settings, device) -> Trajectory:
    """Run the sampler once, recording every step."""
    length = settings.length or model.config.seq_len
    fixed = make_fixed(tokenizer, length, prefix=settings.prompt) if settings.prompt else None
    result = sample(
        model,
        num_samples=settings.num_samples,
        length=length,
        steps=settings.steps,
        method=settings.sampler,
        temperature=settings.temperature,
        top_p=settings.top_p,
        fixed=fixed,
        remask=settings.remask,
        seed=settings.seed,
        record_trace=True,
        device=device,
    )
    # text longer than seq_len is made window after window, each with its own `steps` steps
    seq_len = model.config.seq_len
    num_steps = settings.steps * len(windows(length, seq_len, seq_len // 2))
    frames = result.trace  # mdlm_sampling.Frame: step, t, tokens (B, L), confidence (B, L)
    tokens = torch.stack([frame.tokens for frame in frames])  # (F, B, L)
    confidence = torch.stack([frame.confidence.float() for frame in frames])  # (F, B, L)
    steps, times = [frame.step for frame in frames], [frame.t for frame in frames]
    return Trajectory(tokens, confidence, steps, times, num_steps, tokenizer.mask_id)


def token_texts(tokenizer, ids: list[int]) -> list[str | None]:
    """The text of each position, None where masked.

    A token can hold part of a UTF-8 character (BPE may split the two bytes of "é"), so all the
    bytes go through one incremental decoder: a character shows on the token that completes it,
    and a character cut short by a mask shows as "�" on the token before the mask.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    texts = []
    for idx in ids + [tokenizer.mask_id]:  # a mask at the end flushes the last character
        if idx == tokenizer.mask_id:
            if texts and (tail := decoder.decode(b"", final=True)):
                texts[-1] += tail
            texts.append(None)
        else:
            texts.append(decoder.decode(tokenizer.token_bytes(idx)).replace("\t", "    "))
    return texts[:-1]


@dataclass
class Cell:
    """One piece of one position placed on the page: x in measure units, row in lines."""

    position: int
    x: int
    row: int
    text: str | None  # None: a mask block


def layout(texts: list[str | None], width: int, measure=len, mask_width: int = 2) -> list[Cell]:
    """Word-wrap positions into lines `width` wide; a newline inside a token starts a new line.

    texts holds one string per position, None where masked; measure(text) is its width. A line
    breaks between tokens, never inside one, and drops the space that starts a wrapped line.
    Worked example, width 8, measure=len, mask_width=2:
        ["The", " cat", None, " sat\\n", "on"] -> row 0: "The" at 0, " cat" at 3;
        row 1: the mask at 0, " sat" at 2; row 2: "on" at 0.
    """
    cells, x, row = [], 0, 0
    for position, text in enumerate(texts):
        for k, part in enumerate([None] if text is None else text.split("\n")):
            if k > 0:  # the token held a newline
                x, row = 0, row + 1
            size = mask_width if part is None else measure(part)
            if x > 0 and x + size > width:  # no room left on this line
                x, row = 0, row + 1
                if part is not None:
                    part = part.lstrip(" ")
                    size = measure(part)
            if part != "":
                cells.append(Cell(position, x, row, part))
                x += size
    return cells


def blend(a, b, w: float) -> tuple[int, int, int]:
    """The colour a fraction w of the way from a to b."""
    return tuple(round(x + w * (y - x)) for x, y in zip(a, b))


def confidence_colour(p: float) -> tuple[int, int, int]:
    """Red for an unlikely choice, amber at 1/2, green for a sure one; blue for NaN (no choice)."""
    if math.isnan(p):
        return PROMPT
    return blend(UNSURE, HALF_SURE, 2 * p) if p < 0.5 else blend(HALF_SURE, SURE, 2 * p - 1)


class FontChain:
    """A font and its fallbacks: each character is drawn in the first font that has it.

    pygame.font draws a box for a character its font lacks, and cannot say which ones those are;
    pygame.freetype can, so it looks them up. Worked example with DejaVu Sans Mono, which has no
    emoji, and DejaVu Sans, which has a black-and-white one: "hi 😀!" -> [(mono, "hi "),
    (sans, "😀"), (mono, "!")].
    """

    def __init__(self, name: str, size: int, fallbacks=FALLBACK_FONTS):
        pygame.freetype.init()  # does nothing if it already ran
        self.fonts = [pygame.font.SysFont(name, size)]  # SysFont's own choice comes first
        self.lookups = []  # a freetype.Font per font in self.fonts, to ask which characters it has
        paths = [pygame.font.match_font(name)] + [pygame.font.match_font(f) for f in fallbacks]
        for k, path in enumerate(dict.fromkeys(paths)):  # the first font's path first
            if path is None:
                continue
            try:
                lookup = pygame.freetype.Font(path, size)
                font = self.fonts[0] if k == 0 else pygame.font.Font(path, size)
            except (OSError, pygame.error):  # e.g. a bitmap emoji font without this size
                continue
            if k > 0:
                self.fonts.append(font)
            self.lookups.append(lookup)
        self._runs = {}  # text -> its runs, since the same tokens are drawn frame after frame

    def runs(self, text: str) -> list[tuple]:
        """text -> [(font, piece), ...]: consecutive characters that one font draws."""
        if text not in self._runs:
            pieces = []
            for char in text:
                font = self.font_for(char)
                if pieces and pieces[-1][0] is font:
                    pieces[-1] = (font, pieces[-1][1] + char)
                else:
                    pieces.append((font, char))
            self._runs[text] = pieces
        return self._runs[text]

    def font_for(self, char: str):
        """The first font that has char; the first font (which draws a box) if none has it."""
        if len(self.lookups) < len(self.fonts) or char.isspace():
            return self.fonts[0]  # no lookup for the main font: draw everything with it
        for font, lookup in zip(self.fonts, self.lookups):
            if lookup.get_metrics(char)[0] is not None:
                return font
        return self.fonts[0]

    def size(self, text: str) -> tuple[int, int]:
        widths = [font.size(piece)[0] for font, piece in self.runs(text)]
        return sum(widths), self.fonts[0].get_linesize()

    def render(self, text: str, antialias: bool, colour) -> pygame.Surface:
        """Like pygame.font.Font.render; runs in other fonts sit on the first font's baseline."""
        runs = self.runs(text)
        if len(runs) <= 1:
            return (runs[0][0] if runs else self.fonts[0]).render(text, antialias, colour)
        ascent = max(font.get_ascent() for font, _ in runs)
        images = [(font, font.render(piece, antialias, colour)) for font, piece in runs]
        height = max(ascent - font.get_ascent() + image.get_height() for font, image in images)
        surface = pygame.Surface((sum(i.get_width() for _, i in images), height), pygame.SRCALPHA)
        x = 0
        for font, image in images:
            surface.blit(image, (x, ascent - font.get_ascent()))
            x += image.get_width()
        return surface


class Renderer:
    """Draws one frame of a trajectory onto a pygame Surface: status, text, legend, timeline."""

    margin = 20

    def __init__(self, tokenizer, font_size: int = 20):
        self.tokenizer = tokenizer
        self.font = FontChain("monospace", font_size)  # the text, with fallbacks (emoji)
        self.small = pygame.font.SysFont("monospace", round(font_size * 0.7))
        self.line_height = self.font.fonts[0].get_linesize()
        self.mask_width = self.font.size("MM")[0]

    def measure(self, text: str) -> int:
        return self.font.size(text)[0]

    def timeline_rect(self, size) -> pygame.Rect:
        """Where the timeline sits in a window of this size (the viewer hit-tests clicks on it)."""
        width, height = size
        top = height - self.margin - self.small.get_linesize() - 34
        return pygame.Rect(self.margin, top, width - 2 * self.margin, 26)

    def draw(self, surface, trajectory: Trajectory, index: int, knobs: str, help_line=""):
        """Frame `index` of the trajectory; knobs names the sampler's settings in the status bar."""
        surface.fill(BACKGROUND)
        timeline = self.timeline_rect(surface.get_size())
        legend_y = timeline.top - self.small.get_linesize() - 10
        self.draw_text(surface, trajectory, index, bottom=legend_y - 8)
        self.draw_status(surface, trajectory, index, knobs)
        self.draw_legend(surface, legend_y)
        self.draw_timeline(surface, trajectory, index, timeline)
        surface.blit(self.small.render(help_line, True, DIM), (self.margin, timeline.bottom + 8))

    def draw_status(self, surface, trajectory, index, knobs):
        masked, total = int(trajectory.masked[index].sum()), trajectory.masked[index].numel()
        status = f"step {trajectory.steps[index]}/{trajectory.num_steps}   "
        status += f"t = {trajectory.times[index]:.3f}   masked {masked}/{total}"
        pygame.draw.rect(surface, PANEL, (0, 0, surface.get_width(), 2 * self.margin + 4))
        text = self.font.render(status, True, TEXT)
        surface.blit(text, (self.margin, self.margin // 2 + 2))
        self.label(surface, knobs, 2 * self.margin + text.get_width(), self.margin // 2 + 6)

    def draw_text(self, surface, trajectory, index, bottom):
        """The sequences, one below the other; lines that do not fit above `bottom` are left out."""
        age = frames_since_reveal(trajectory.masked, index, HIGHLIGHT_FRAMES)  # (B, L)
        prompt = ~trajectory.masked[0]  # (B, L) given before the first step
        top, width = 3 * self.margin + 4, surface.get_width() - 2 * self.margin
        for b, ids in enumerate(trajectory.tokens[index].tolist()):
            texts = token_texts(self.tokenizer, ids)
            cells = layout(texts, width, self.measure, self.mask_width)
            for cell in cells:
                x, y = self.margin + cell.x, top + cell.row * self.line_height
                if y + self.line_height > bottom:
                    break
                size = self.mask_width if cell.text is None else self.measure(cell.text)
                if age[b, cell.position] < HIGHLIGHT_FRAMES:  # a frame that fades away
                    glow = 1 - age[b, cell.position].item() / HIGHLIGHT_FRAMES
                    colour = blend(BACKGROUND, HIGHLIGHT, glow)
                    pygame.draw.rect(surface, colour, (x - 1, y, size + 2, self.line_height), 2, 4)
                if cell.text is None:
                    block = (x + 2, y + 3, size - 4, self.line_height - 6)
                    pygame.draw.rect(surface, MASK, block, border_radius=3)
                    continue
                p = trajectory.confidence[index, b, cell.position].item()
                colour = PROMPT if prompt[b, cell.position] else confidence_colour(p)
                surface.blit(self.font.render(cell.text, True, colour), (x, y))
            top += (max((cell.row for cell in cells), default=0) + 2) * self.line_height

    def draw_legend(self, surface, y):
        """One line that says what the colours mean."""
        height = self.small.get_linesize()
        x = self.label(surface, "p(token) when chosen  0", self.margin, y)
        for k in range(100):  # a gradient, one pixel per percent
            colour = confidence_colour(k / 99)
            pygame.draw.line(surface, colour, (x + k, y + 3), (x + k, y + height - 3))
        x = self.label(surface, "1", x + 106, y)
        for colour, text in [(MASK, "masked"), (HIGHLIGHT, "just revealed"), (PROMPT, "prompt")]:
            swatch = (x + 24, y + 2, 2 * height, height - 4)
            pygame.draw.rect(surface, colour, swatch, border_radius=3)
            x = self.label(surface, text, x + 30 + 2 * height, y)

    def label(self, surface, text, x, y) -> int:
        """Small grey text at (x, y); returns where the next item starts."""
        surface.blit(self.small.render(text, True, DIM), (x, y))
        return x + self.small.size(text)[0] + 6

    def draw_timeline(self, surface, trajectory, index, rect):
        """A track filled up to the current frame, with a tick for each frame's reveals."""
        pygame.draw.rect(surface, PANEL, rect, border_radius=6)
        last = max(1, len(trajectory) - 1)
        knob_x = rect.left + round(index / last * rect.width)
        filled = pygame.Rect(rect.left, rect.top, knob_x - rect.left, rect.height)
        pygame.draw.rect(surface, MASK, filled, border_radius=6)
        masked = trajectory.masked
        reveals = (masked[:-1] & ~masked[1:]).sum(dim=(1, 2)).tolist()  # new tokens in frame f+1
        most = max([1, *reveals])
        for frame, count in enumerate(reveals, start=1):
            x, top = rect.left + round(frame / last * rect.width), rect.bottom - 3
            if count:
                pygame.draw.line(
                    surface, DIM, (x, top), (x, top - count * (rect.height - 6) // most)
                )
        pygame.draw.rect(surface, TEXT, (knob_x - 3, rect.top - 4, 6, rect.height + 8), 0, 3)


def frames_since_reveal(masked: torch.Tensor, index: int, horizon: int) -> torch.Tensor:
    """(B, L) how many frames ago each position was revealed: 0 in frame `index` itself, and
    `horizon` if longer ago or never. masked is (F, B, L) bool.

    A sampler that remasks can hide a token again: the count starts from the latest reveal.
    """
    age = torch.full(masked.shape[1:], horizon)
    for k in range(min(horizon, index), 0, -1):  # oldest first, so the newest reveal wins
        age[masked[index - k] & ~masked[index]] = k - 1
    return age


def save_gif(renderer, trajectory, path, size, knobs, frame_ms=80, frames_dir=None):
    """Render every frame (at most MAX_GIF_FRAMES) into an animated GIF, and PNGs if asked."""
    count = min(len(trajectory), MAX_GIF_FRAMES)
    indices = torch.linspace(0, len(trajectory) - 1, count).round().long().tolist()
    surface, images = pygame.Surface(size), []
    for index in indices:
        renderer.draw(surface, trajectory, index, knobs)
        if frames_dir:
            pygame.image.save(surface, Path(frames_dir) / f"frame_{index:04d}.png")
        image = Image.frombytes("RGB", size, pygame.image.tobytes(surface, "RGB"))
        images.append(image.quantize(method=Image.Quantize.FASTOCTREE))  # 1 byte a pixel, not 3
    durations = [frame_ms] * (len(images) - 1) + [2000]  # hold the finished text
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)
    return indices


class Viewer:
    """The window: which frame is shown, play/pause, speed, and the keys that resample."""

    def __init__(self, model, tokenizer, settings, trajectory, device, size, out_dir="."):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.settings, self.trajectory, self.out_dir = settings, trajectory, Path(out_dir)
        self.screen = pygame.display.set_mode(size, pygame.RESIZABLE)
        pygame.display.set_caption("MDLM: text from masks")
        self.renderer, self.clock = Renderer(tokenizer), pygame.time.Clock()
        self.speed, self.running, self.scrubbing, self.message = 16, True, False, ""
        self.position, self.paused = 0.0, False  # position: a fractional frame index

    @property
    def index(self) -> int:
        return int(self.position)

    def resample(self, **changes):
        """Sample a new trajectory with some settings changed, and play it from the start."""
        self.settings = replace(self.settings, **changes)
        self.draw(message="sampling...")
        self.trajectory = sample_trajectory(self.model, self.tokenizer, self.settings, self.device)
        self.position, self.paused = 0.0, False

    def handle_event(self, event):
        timeline = self.renderer.timeline_rect(self.screen.get_size())
        if event.type == pygame.QUIT:
            self.running = False
        elif event.type == pygame.KEYDOWN:
            self.handle_key(event.key)
        elif event.type == pygame.MOUSEBUTTONDOWN and timeline.collidepoint(event.pos):
            self.scrubbing = True
        elif event.type == pygame.MOUSEBUTTONUP:
            self.scrubbing = False
        if self.scrubbing and event.type in (pygame.MOUSEBUTTONDOWN, pygame.MOUSEMOTION):
            fraction = (event.pos[0] - timeline.left) / timeline.width
            self.position = round(min(max(fraction, 0), 1) * (len(self.trajectory) - 1))
            self.paused = True

    def handle_key(self, key):
        last, self.message = len(self.trajectory) - 1, ""
        if key in (pygame.K_ESCAPE, pygame.K_q):
            self.running = False
        elif key == pygame.K_SPACE:
            if self.index == last:  # at the end, space plays it again
                self.position, self.paused = 0.0, False
            else:
                self.paused = not self.paused
        elif key in (pygame.K_LEFT, pygame.K_RIGHT):
            step = 1 if key == pygame.K_RIGHT else -1
            self.position, self.paused = min(max(self.index + step, 0), last), True
        elif key in (pygame.K_UP, pygame.K_PLUS, pygame.K_EQUALS, pygame.K_KP_PLUS):
            self.speed = min(self.speed * 2, 256)
        elif key in (pygame.K_DOWN, pygame.K_MINUS, pygame.K_KP_MINUS):
            self.speed = max(self.speed // 2, 1)
        elif key == pygame.K_r:
            self.resample(seed=self.settings.seed + 1)
        elif key == pygame.K_t:
            warmer = [x for x in TEMPERATURES if x > self.settings.temperature]
            self.resample(temperature=(warmer or TEMPERATURES)[0])
        elif pygame.K_1 <= key <= pygame.K_9:
            self.resample(steps=2 ** (key - pygame.K_0 + 1))
        elif key == pygame.K_s:
            path = self.out_dir / f"mdlm_seed{self.settings.seed}_frame{self.index:04d}.png"
            pygame.image.save(self.screen, path)
            self.message = f"saved {path}"
        elif key == pygame.K_g:
            path = self.out_dir / f"mdlm_seed{self.settings.seed}.gif"
            knobs = self.settings.describe()
            self.draw(message="writing GIF...")
            save_gif(self.renderer, self.trajectory, path, self.screen.get_size(), knobs)
            self.message = f"saved {path}"

    def update(self, seconds: float):
        """Advance playback by `seconds` of wall time, holding at the last frame."""
        if not self.paused and not self.scrubbing:
            self.position = min(self.position + self.speed * seconds, len(self.trajectory) - 1)

    def draw(self, message=""):
        speed = f"{self.speed} frames/s ({self.clock.get_fps():.0f} fps)"
        knobs, line = f"{self.settings.describe()}   {speed}", message or self.message or HELP
        self.renderer.draw(self.screen, self.trajectory, self.index, knobs, line)
        pygame.display.flip()

    def run(self, fps_cap: int = 60):
        while self.running:
            for event in pygame.event.get():
                self.handle_event(event)
            self.update(self.clock.tick(fps_cap) / 1000)
            self.draw()


def window_size(text: str) -> tuple[int, int]:
    """ "1000x700" -> (1000, 700); a size that is not WIDTHxHEIGHT, or too small, is refused."""
    try:
        width, height = map(int, text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 1000x700") from None
    if width < MIN_SIZE[0] or height < MIN_SIZE[1]:
        raise argparse.ArgumentTypeError(
            f"{width}x{height} is too small to draw the text, legend and timeline: "
            f"at least {MIN_SIZE[0]}x{MIN_SIZE[1]}"
        )
    return width, height


def parse_args(argv=None):
    paragraphs = __doc__.strip().split("\n\n")
    parser = cli.ArgumentParser(
        description=paragraphs[0],
        epilog="\n\n".join(p for p in paragraphs if p.startswith(("Keys:", "Characters"))),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", help="a ckpt.pt (default: the newest under checkpoints/)")
    parser.add_argument("--sampler", default="ancestral", choices=METHODS)
    parser.add_argument("--steps", type=cli.whole_number(1), default=128)
    parser.add_argument("--temperature", type=cli.finite_number, default=1.0, help="0: greedy")
    parser.add_argument("--top-p", type=cli.finite_number, default=None)
    parser.add_argument(
        "--length", type=cli.whole_number(1), default=None, help="default: the model's seq_len"
    )
    parser.add_argument("--prompt", default="", help="text kept fixed at the start")
    parser.add_argument(
        "--remask", type=cli.finite_number, default=0.0, help="with --sampler confidence"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-samples", type=cli.whole_number(1), default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=window_size, default="1000x700", help="WIDTHxHEIGHT")
    parser.add_argument("--headless", action="store_true", help="write a GIF, open no window")
    parser.add_argument("--out", help="the GIF that --headless writes")
    parser.add_argument("--frames-dir", help="with --headless, also save every frame as PNG")
    args = parser.parse_args(argv)
    if args.headless and not args.out:
        parser.error("--headless needs --out FILE.gif")
    if args.headless:  # checked now, not after sampling
        args.out = cli.writable(args.out, "--out")
        if args.frames_dir:
            args.frames_dir = cli.folder(args.frames_dir, "--frames-dir")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"  # no display needed
    settings = Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})  # same names
    # no checkpoint, a device this machine lacks, or a setting that sample() refuses: one line
    with cli.refusing(CheckpointError, ValueError):
        device = pick_device(args.device, knob="--device")
        path = args.checkpoint or newest_checkpoint(knob="--checkpoint")
        model, tokenizer, checkpoint = load_model(path, device)
        if model.config.causal:
            raise CheckpointError(
                f"{path} is an autoregressive twin (OBJECTIVE='ar'), which writes left to right: "
                "give --checkpoint an MDLM's ckpt.pt"
            )
        print(checkpoint_choice(path, checkpoint, named=bool(args.checkpoint), knob="--checkpoint"))
        trajectory = sample_trajectory(model, tokenizer, settings, device)
    try:
        pygame.display.init()
        pygame.font.init()
        if not args.headless:
            viewer = Viewer(model, tokenizer, settings, trajectory, device, args.size)
    except pygame.error as error:  # no display: "No available video device"
        cli.refuse(f"no window can open here ({error}): --headless --out FILE.gif writes a GIF")
    if not args.headless:
        viewer.run()
        return
    renderer, knobs = Renderer(tokenizer), settings.describe()
    indices = save_gif(renderer, trajectory, args.out, args.size, knobs, frames_dir=args.frames_dir)
    masked = trajectory.masked.sum(dim=(1, 2)).tolist()  # (F,) positions masked in each frame
    total = trajectory.masked[0].numel()
    print(
        f"wrote {args.out}: {len(indices)} frames, masked positions {masked[0]}/{total} in the "
        f"first frame and {masked[-1]}/{total} in the last"
    )


if __name__ == "__main__":
    main()
