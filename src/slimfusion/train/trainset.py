"""What a denoiser trains on: inputs (images or VAE latents) and, for conditional models, a condition per example.

Conditions live in one table (prompt embeddings [P, L, D] of a frozen text encoder, or class labels [P]); every example
lists the rows that describe it truthfully (several wordings of one caption), and a step draws one of them. With
probability `drop` the drawn row is replaced by the null row (the empty prompt, DiT's null class) so the model also
learns the unconditional prediction that classifier-free guidance needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slimfusion.errors import DataError


@dataclass
class TrainSet:
    """Training examples for `fit`.

    Args:
        inputs (`torch.Tensor`): [N, C, H, W] images in [-1, 1] or scaled latents.
        table (`torch.Tensor`, optional): conditions, one row each; None for unconditional models.
        choices (`list[torch.Tensor]`, optional): per example, the table rows it may be paired with; None pairs
            example i with row i.
        null (`int`, optional): the table row used when a condition is dropped.
        drop (`float`, defaults to 0.0): probability of dropping a condition (classifier-free guidance training).
    """

    inputs: torch.Tensor
    table: torch.Tensor | None = None
    choices: list[torch.Tensor] | None = None
    null: int | None = None
    drop: float = 0.0

    def __post_init__(self) -> None:
        if len(self.inputs) == 0:
            raise DataError("the training set is empty")
        if self.table is None:
            return
        if self.choices is not None and len(self.choices) != len(self.inputs):
            raise DataError(f"{len(self.inputs)} examples but {len(self.choices)} condition lists")
        if self.choices is None and len(self.table) < len(self.inputs):
            raise DataError(f"{len(self.inputs)} examples but only {len(self.table)} conditions")
        if self.drop > 0 and self.null is None:
            raise DataError("condition dropout needs a null condition")

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def conditional(self) -> bool:
        return self.table is not None

    def draw(self, idx: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Inputs and conditions of the examples `idx`; condition draws use `gen` only for conditional sets."""
        inputs = self.inputs[idx]
        if self.table is None:
            return inputs, None
        if self.choices is None:
            rows = idx.clone()
        else:
            picks = torch.rand(len(idx), generator=gen)
            rows = torch.stack([c[int(p * len(c))] for c, p in zip((self.choices[i] for i in idx), picks, strict=True)])
        if self.drop > 0:
            rows = torch.where(torch.rand(len(idx), generator=gen) < self.drop, self.null, rows)
        return inputs, self.table[rows]

    def to(self, device: torch.device | str) -> TrainSet:
        """The same set with its tensors on `device` (choices stay on the CPU: they only index)."""
        table = None if self.table is None else self.table.to(device)
        return TrainSet(self.inputs.to(device), table, self.choices, self.null, self.drop)


def as_trainset(data: torch.Tensor | TrainSet) -> TrainSet:
    """Plain image tensors are an unconditional training set."""
    return data if isinstance(data, TrainSet) else TrainSet(data)
