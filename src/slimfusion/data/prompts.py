"""Prompts for the digits: varied wordings of "a handwritten seven", style words measured on each image, and the
project-built CLIP tokenizer that encodes them (vocabulary and merges made here from the prompt words, no hub).

Style words are only given to images that show them: "bold" / "thin" for the top / bottom third of ink within the
digit's class, "slanted" for the third that leans most to the right. A prompt bank lists, for every image, the indices
of the prompts that describe it truthfully, so training can draw a different wording each time it sees the image.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from slimfusion.errors import DataError

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
STYLES = ("bold", "thin", "slanted")
# {d}: the digit as a numeral, {w}: as a word, {s}: style words ("bold slanted ") or nothing
TEMPLATES = (
    "a {s}handwritten {w}",
    "the digit {d}",
    "a {s}digit {d}",
    "number {w}, written by hand",
    "a {s}{w}",
    "the number {w}",
    "{w}",
    "a handwritten number {d}, {s}",
)
MAX_TOKENS = 16
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def style_attributes(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Bool [N, 3] of (bold, thin, slanted) per image, each relative to the image's own digit class.

    Args:
        images (`torch.Tensor`): [N, 1, H, W] in [-1, 1].
        labels (`torch.Tensor`): [N] digit labels.
    """
    ink = (images[:, 0] + 1) / 2
    mass = ink.sum(dim=(1, 2)).clamp_min(1e-6)
    side = ink.shape[-1]
    ys, xs = torch.meshgrid(
        torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32), indexing="ij"
    )
    my = (ink * ys).sum(dim=(1, 2)) / mass
    mx = (ink * xs).sum(dim=(1, 2)) / mass
    cov_xy = (ink * (xs - mx[:, None, None]) * (ys - my[:, None, None])).sum(dim=(1, 2)) / mass
    var_y = (ink * (ys - my[:, None, None]) ** 2).sum(dim=(1, 2)) / mass
    lean = -cov_xy / var_y.clamp_min(1e-6)  # > 0: the top of the stroke lies right of its bottom (y points down)
    out = torch.zeros(len(images), 3, dtype=torch.bool)
    for digit in labels.unique():
        sel = labels == digit
        lo, hi = torch.quantile(mass[sel], torch.tensor([1 / 3, 2 / 3]))
        out[sel, 0] = mass[sel] > hi
        out[sel, 1] = mass[sel] < lo
        out[sel, 2] = lean[sel] > torch.quantile(lean[sel], 2 / 3)
    return out


def _style_combos(attrs: tuple[bool, bool, bool]) -> list[str]:
    """Style phrases an image may be described with: none, or any non-empty subset of the styles it shows."""
    shown = [name for name, on in zip(STYLES, attrs, strict=True) if on]
    combos = [""]
    for k in range(1, len(shown) + 1):
        combos += [" ".join(c) for c in itertools.combinations(shown, k)]
    return combos


def render(template: str, digit: int, style: str) -> str:
    """One prompt: a template filled with a digit and a (possibly empty) style phrase, whitespace tidied."""
    text = template.format(d=digit, w=WORDS[digit], s=f"{style} " if style else "")
    return re.sub(r"\s+", " ", text).strip(" ,")


@dataclass
class PromptBank:
    """All distinct prompts, and for every image the indices of the prompts that describe it.

    Args:
        prompts (`list[str]`): distinct prompts; index 0 is the empty prompt (classifier-free guidance's null).
        choices (`list[torch.Tensor]`): per image, a LongTensor of indices into `prompts`.
        digits (`torch.Tensor`): the digit each prompt names (-1 for the empty prompt).
    """

    prompts: list[str]
    choices: list[torch.Tensor]
    digits: torch.Tensor


def prompt_bank(labels: torch.Tensor, attributes: torch.Tensor) -> PromptBank:
    """Every truthful prompt for every image (all templates x all style phrases the image shows)."""
    index: dict[str, int] = {"": 0}
    digits = [-1]
    choices = []
    for label, attrs in zip(labels.tolist(), attributes.tolist(), strict=True):
        mine = []
        for template, style in itertools.product(TEMPLATES, _style_combos(tuple(attrs))):
            if "{s}" not in template and style:
                continue
            text = render(template, label, style)
            if text not in index:
                index[text] = len(index)
                digits.append(label)
            mine.append(index[text])
        choices.append(torch.tensor(sorted(set(mine)), dtype=torch.long))
    return PromptBank(list(index), choices, torch.tensor(digits))


def prompts_for_digits(digits: list[int], style: str = "") -> list[str]:
    """The canonical evaluation prompt of each digit ("a handwritten seven")."""
    return [render(TEMPLATES[0], d, style) for d in digits]


def digit_of_prompt(prompt: str) -> int | None:
    """The digit a prompt names (as a word or a numeral), or None when it names none or several."""
    words = re.findall(r"[a-z]+|\d", prompt.lower())
    found = {WORDS.index(w) for w in words if w in WORDS} | {int(w) for w in words if w.isdigit()}
    return found.pop() if len(found) == 1 else None


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a text file, one per line; blank lines and lines starting with # are skipped."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"prompts file not found: {file}")
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{file}: unreadable prompts file ({exc})") from exc
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise DataError(f"{file}: no prompts (one per line expected)")
    return prompts


# ------------------------------------------------------------------------------------------------------ tokenizer
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-level alphabet: every byte maps to one printable character (so any text tokenizes)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars), strict=True))


def clip_vocab_and_merges(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP BPE vocabulary and merge list in which every word of `words` is one token.

    The base alphabet is CLIP's: all 256 byte characters, alone and as word ends (`x</w>`), so unseen words still
    tokenize (into pieces). Each word adds the merges that build it left to right, as CLIP's trained merges would.
    The special tokens take the highest ids, so CLIP's pooling at the end token works in every transformers version.
    """
    alphabet = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in alphabet + [c + "</w>" for c in alphabet]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in sorted(set(words)):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        prefix = pieces[0]
        for nxt in pieces[1:]:
            merge = (prefix, nxt)
            prefix += nxt
            if merge not in merges:
                merges.append(merge)
            vocab.setdefault(prefix, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return vocab, merges


def prompt_words(prompts: list[str]) -> list[str]:
    """The lowercase words (runs of letters) in a list of prompts: what the tokenizer must know as single tokens."""
    return sorted({w for p in prompts for w in re.findall(r"[a-z]+", p.lower())})


def build_tokenizer(prompts: list[str], max_tokens: int = MAX_TOKENS):
    """A `transformers.CLIPTokenizer` whose vocabulary is built from the words of `prompts`."""
    vocab, merges = clip_vocab_and_merges(prompt_words(prompts))
    # lazy: transformers costs ~0.5-1 s of import time, paid only by commands that tokenise or build CLIP
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_tokens)
