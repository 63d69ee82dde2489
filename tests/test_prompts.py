"""Prompts, the project-built tokenizer, conditional training sets and the shipped latent built-ins."""

from __future__ import annotations

import torch

from slimfusion.data.digits import load_digits_split
from slimfusion.data.prompts import (
    build_tokenizer,
    digit_of_prompt,
    prompt_bank,
    prompt_words,
    render,
    style_attributes,
)
from slimfusion.models.io import builtin_path
from slimfusion.train.trainset import TrainSet


def test_styles_are_thirds_within_each_digit_and_prompts_are_truthful():
    images, labels = load_digits_split("train")
    attrs = style_attributes(images, labels)
    shares = attrs.float().mean(0)
    assert torch.allclose(shares, torch.full((3,), 1 / 3), atol=0.03), shares
    assert not (attrs[:, 0] & attrs[:, 1]).any(), "no image is both bold and thin"
    bank = prompt_bank(labels, attrs)
    assert bank.prompts[0] == "" and len(set(bank.prompts)) == len(bank.prompts)
    for i in (0, 100, 1000):
        for prompt in (bank.prompts[j] for j in bank.choices[i]):
            assert digit_of_prompt(prompt) == labels[i]
            assert ("bold" in prompt) <= bool(attrs[i, 0]) and ("slanted" in prompt) <= bool(attrs[i, 2])
    assert render("a {s}handwritten {w}", 7, "") == "a handwritten seven"
    assert digit_of_prompt("the digit 7") == 7 and digit_of_prompt("a cat") is None


def test_tokenizer_knows_every_prompt_word_and_reloads(tmp_path):
    from transformers import CLIPTokenizer

    prompts = ["a bold slanted handwritten seven", "number three, written by hand", "the digit 7"]
    tokenizer = build_tokenizer(prompts)
    for word in prompt_words(prompts):
        assert len(tokenizer.tokenize(word)) == 1, word
    assert len(tokenizer.tokenize("zebra")) > 1, "unseen words still tokenize, in pieces"
    tokenizer.save_pretrained(tmp_path)
    again = CLIPTokenizer.from_pretrained(tmp_path)
    assert again(prompts).input_ids == tokenizer(prompts).input_ids
    assert tokenizer.eos_token_id == len(tokenizer) - 1  # CLIP pools at the end token: highest id in any version


def test_trainset_draws_truthful_rows_and_drops_to_null():
    table = torch.arange(5).float()
    data = TrainSet(torch.zeros(4, 1, 2, 2), table, [torch.tensor([1, 2]), torch.tensor([3])] * 2, null=0, drop=0.5)
    gen = torch.Generator().manual_seed(0)
    _, cond = data.draw(torch.tensor([0, 1, 2, 3] * 250), gen)
    rows = cond.long().view(250, 4)
    assert set(rows[:, 0].tolist()) == {0, 1, 2} and set(rows[:, 1].tolist()) == {0, 3}
    assert 0.4 < (cond == 0).float().mean().item() < 0.6


def test_shipped_latent_builtins_load_in_plain_diffusers():
    from diffusers import DiTPipeline, StableDiffusionPipeline

    t2i = StableDiffusionPipeline.from_pretrained(builtin_path("digits-t2i"))
    image = t2i("a handwritten seven", num_inference_steps=2, output_type="np").images
    dit = DiTPipeline.from_pretrained(builtin_path("digits-dit"))
    assert image.shape == (1, 16, 16, 1) and dit.labels == {str(i): i for i in range(10)}
    assert t2i.vae.config.scaling_factor == dit.vae.config.scaling_factor


def test_every_prompt_encoder_equals_the_pipelines_own_encode_prompt():
    import slimfusion
    from slimfusion.models.families.pipeline import embed
    from slimfusion.prune.conditioning import encode_prompts

    pipe = slimfusion.load_pipeline("builtin:digits-t2i")
    prompts = ["a bold 3", "a 7", ""]
    own, _ = pipe.encode_prompt(prompts, "cpu", 1, False)
    assert torch.equal(embed(pipe, prompts), own)
    assert torch.equal(encode_prompts("builtin:digits-t2i", prompts), own)
