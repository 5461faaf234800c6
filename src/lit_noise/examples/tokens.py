"""A token example: synthetic padded token sequences (no download) and a tiny transformer classifier.

The class of a sequence is which of ``num_classes`` class-specific token groups it holds most
tokens of. The batches are dicts ``{"input_ids", "attention_mask", "labels"}`` like a Hugging Face
tokenizer's, so token noise (:class:`~lit_noise.TokenMask` ...), label smoothing and embedding
noise (NEFTune) can be tested and shown on a model that trains in seconds on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset
from typing_extensions import override

from lit_noise._validation import SEED_MAX, check_int, check_range, check_seed, fail
from lit_noise.errors import ConfigurationError
from lit_noise.examples.classifier import ClassificationSteps
from lit_noise.examples.tensor_data import TensorSplitDataModule

__all__ = ["MASK_ID", "PAD_ID", "TokenClassifier", "TokenDataModule", "make_token_sequences"]

#: The padding id of the token example (``nn.Embedding``'s ``padding_idx``).
PAD_ID = 0
#: A mask id reserved by the token example: it never occurs in the data (for :class:`~lit_noise.TokenMask`).
MASK_ID = 1
_FIRST_TOKEN = 2


@dataclass(frozen=True)
class _TokenTask:
    """The settings of the synthetic token task, checked in one place for both of its public forms.

    :func:`make_token_sequences` and :class:`TokenDataModule` both build one (each names itself in
    the errors of :meth:`check`) and draw from it with :meth:`sample`.
    """

    vocab_size: int
    num_classes: int
    group_size: int
    min_length: int
    max_length: int
    signal: float

    def check(self, owner: str) -> _TokenTask:
        """The task, checked: a bad setting raises :class:`ConfigurationError` naming ``owner`` and it."""
        check_int(owner, "num_classes", self.num_classes, 2)
        check_int(owner, "group_size", self.group_size, 1)
        smallest = _FIRST_TOKEN + self.num_classes * self.group_size
        check_int(owner, "vocab_size", self.vocab_size)
        if self.vocab_size < smallest:
            raise fail(owner, "vocab_size", self.vocab_size, f">= 2 + num_classes * group_size = {smallest}")
        check_int(owner, "min_length", self.min_length, 1)
        check_int(owner, "max_length", self.max_length)
        if self.max_length < self.min_length:
            raise fail(owner, "max_length", self.max_length, f">= `min_length` ({self.min_length})")
        return replace(self, signal=check_range(owner, "signal", self.signal, 0.0, 1.0))

    def sample(self, num_samples: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        """Ids, mask and labels of ``num_samples`` sequences (see :func:`make_token_sequences`)."""
        num_classes, group_size, max_length = self.num_classes, self.group_size, self.max_length
        generator = torch.Generator().manual_seed(seed)
        drawn = torch.randint(num_classes, (num_samples,), generator=generator)
        lengths = torch.randint(self.min_length, max_length + 1, (num_samples,), generator=generator)
        from_group = torch.rand(num_samples, max_length, generator=generator) < self.signal
        in_group = torch.randint(group_size, (num_samples, max_length), generator=generator)
        anywhere = torch.randint(
            _FIRST_TOKEN, self.vocab_size, (num_samples, max_length), generator=generator
        )
        ids = torch.where(from_group, _FIRST_TOKEN + drawn[:, None] * group_size + in_group, anywhere)
        mask = (torch.arange(max_length) < lengths[:, None]).long()
        ids = ids * mask  # padding is PAD_ID == 0
        group = (ids - _FIRST_TOKEN).div(group_size, rounding_mode="floor")
        counted = (mask == 1) & (ids >= _FIRST_TOKEN) & (group < num_classes)
        counts = F.one_hot(group.clamp(0, num_classes - 1), num_classes).mul(counted[..., None]).sum(1)
        labels = (counts.double() + 0.5 * F.one_hot(drawn, num_classes)).argmax(1)
        return ids, mask, labels


def make_token_sequences(
    num_samples: int,
    vocab_size: int = 48,
    num_classes: int = 4,
    group_size: int = 6,
    min_length: int = 6,
    max_length: int = 24,
    signal: float = 0.4,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Token ids ``(N, max_length)``, attention mask ``(N, max_length)`` and labels ``(N,)``, all int64.

    Ids ``0`` (:data:`PAD_ID`) and ``1`` (:data:`MASK_ID`) are special; the tokens are ids
    ``2 .. vocab_size - 1``, of which class ``k`` owns the group ``2 + k * group_size`` to
    ``2 + (k + 1) * group_size - 1``. Each sequence draws a class and a length uniformly
    (``min_length`` to ``max_length``); each of its tokens comes from the class's group with
    probability ``signal`` and uniformly from all tokens otherwise. The label is the class whose
    group holds most of the sequence's tokens (ties go to the drawn class), so it is a function of
    the sequence. Sequences are left-aligned and padded with ``0``; the mask is ``1`` on real
    tokens. Everything comes from a CPU generator seeded with ``seed``.

    Raises:
        ConfigurationError: for the settings :class:`TokenDataModule` refuses (``max_length`` below
            ``min_length``, ``vocab_size`` too small for the groups ...) and a negative ``num_samples``.

    Example:
        >>> ids, mask, labels = make_token_sequences(3, seed=0)
        >>> tuple(ids.shape), bool(((ids == 0) == (mask == 0)).all()), labels.dtype
        ((3, 24), True, torch.int64)
    """
    owner = "make_token_sequences"
    check_int(owner, "num_samples", num_samples, 0)
    task = _TokenTask(vocab_size, num_classes, group_size, min_length, max_length, signal).check(owner)
    return task.sample(num_samples, seed)


class TokenDataModule(TensorSplitDataModule):
    """Synthetic classification of padded token sequences (see :func:`make_token_sequences`).

    Batches are dicts ``{"input_ids": (B, L) int64, "attention_mask": (B, L) int64 (1 = real
    token), "labels": (B,) int64}`` with ``L = max_length``; padding is ``pad_id = 0`` and the id
    ``mask_id = 1`` never occurs in the data. The three splits are drawn from seeds derived from
    ``seed``; the training order is reshuffled each epoch from ``(shuffle_seed, epoch)``. With the
    defaults an epoch is 16 batches of 64 and :class:`TokenClassifier` reaches a validation accuracy
    above 0.9 within two epochs.

    Args:
        train_size: training sequences.
        val_size: validation sequences.
        test_size: test sequences.
        vocab_size: ids ``0 .. vocab_size - 1`` (two special, the rest tokens).
        num_classes: number of classes (token groups).
        group_size: tokens per class group.
        min_length: shortest sequence.
        max_length: longest sequence (the padded length).
        signal: probability that a token comes from the sequence's class group.
        seed: seed of the data.
        batch_size: sequences per batch.
        shuffle_seed: seed of the training order.
        num_workers: data-loader workers.

    Example:
        >>> dm = TokenDataModule(batch_size=8)
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> sorted(batch), tuple(batch["input_ids"].shape), dm.pad_id, dm.mask_id
        (['attention_mask', 'input_ids', 'labels'], (8, 24), 0, 1)
    """

    batch_keys = ("input_ids", "attention_mask", "labels")
    pad_id = PAD_ID
    mask_id = MASK_ID

    # `vocab_size` ... `seed` are make_token_sequences' arguments again, on purpose (`duplicates` pairs
    # them): the DataModule must list them to be built from YAML and LightningCLI, and the function
    # is the public way to draw the same data without a DataModule. Both check and draw through one
    # _TokenTask, so only the parameter list is repeated; tests/test_repeated_signatures.py keeps
    # the two lists' types and defaults equal.
    def __init__(
        self,
        train_size: int = 1024,
        val_size: int = 256,
        test_size: int = 256,
        vocab_size: int = 48,
        num_classes: int = 4,
        group_size: int = 6,
        min_length: int = 6,
        max_length: int = 24,
        signal: float = 0.4,
        seed: int = 0,
        batch_size: int = 64,
        shuffle_seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, shuffle_seed, num_workers)
        owner = "TokenDataModule"
        self.train_size = check_int(owner, "train_size", train_size, 1)
        self.val_size = check_int(owner, "val_size", val_size, 1)
        self.test_size = check_int(owner, "test_size", test_size, 1)
        task = _TokenTask(vocab_size, num_classes, group_size, min_length, max_length, signal).check(owner)
        self.vocab_size, self.num_classes, self.group_size = vocab_size, num_classes, group_size
        self.min_length, self.max_length, self.signal = min_length, max_length, task.signal
        self.seed = check_seed(owner, "seed", seed)

    def _task(self) -> _TokenTask:
        """The task of the current attributes (set after construction too), checked again."""
        attributes = (self.vocab_size, self.num_classes, self.group_size, self.min_length, self.max_length)
        return _TokenTask(*attributes, self.signal).check(type(self).__name__)

    @override
    def make_splits(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        """Draw the three splits, each from its own seed."""
        sizes, task = (self.train_size, self.val_size, self.test_size), self._task()
        train, val, test = (
            # Kept to 64 bits (a seed may be up to 2**64 - 1); the same seeds as before below that.
            TensorDataset(*task.sample(size, seed=(3 * self.seed + split) & SEED_MAX))
            for split, size in enumerate(sizes)
        )
        return train, val, test


class TokenClassifier(ClassificationSteps):
    """A tiny transformer classifier of padded token sequences, trained with plain ``cross_entropy``.

    Token embedding (``self.embedding``, an ``nn.Embedding`` with ``padding_idx=pad_id``, the
    module NEFTune hooks) plus a learned positional embedding, a ``nn.TransformerEncoder`` that
    ignores padding (``src_key_padding_mask``), the mean over the real tokens and a linear head.
    It takes the dict batches of :class:`TokenDataModule`; without an ``attention_mask`` the real
    tokens are those that are not ``pad_id``. The labels may be class indices or
    :class:`~lit_noise.SoftLabels` (label smoothing): cross-entropy sees the distribution, the
    accuracy the hard labels. Logs ``train/loss``, ``val/loss``, ``val/acc``, ``test/loss`` and
    ``test/acc``; ``validation_step`` and ``predict_step`` return the logits. A sequence with no
    real token (every one dropped) gets the head's bias as its logits.

    Args:
        vocab_size: number of token ids.
        num_classes: number of classes.
        max_length: longest sequence (size of the positional embedding).
        d_model: embedding and transformer width.
        nhead: attention heads.
        num_layers: transformer layers.
        dim_feedforward: width of the transformer's feed-forward layers.
        dropout: the transformer's dropout.
        pad_id: the padding id.
        lr: Adam's learning rate.
        weight_decay: Adam's weight decay.

    Example:
        >>> model = TokenClassifier()
        >>> ids = torch.tensor([[5, 9, 7, 0], [3, 0, 0, 0]])
        >>> model(ids, attention_mask=(ids != 0).long()).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        vocab_size: int = 48,
        num_classes: int = 4,
        max_length: int = 24,
        d_model: int = 32,
        nhead: int = 4,
        num_layers: int = 1,
        dim_feedforward: int = 64,
        dropout: float = 0.0,
        pad_id: int = PAD_ID,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        owner = "TokenClassifier"
        check_int(owner, "vocab_size", vocab_size, 2)
        check_int(owner, "num_classes", num_classes, 2)
        check_int(owner, "max_length", max_length, 1)
        check_int(owner, "nhead", nhead, 1)
        check_int(owner, "d_model", d_model, 1)
        if d_model % nhead:
            raise fail(owner, "d_model", d_model, f"a multiple of `nhead` ({nhead})")
        check_int(owner, "num_layers", num_layers, 1)
        check_int(owner, "dim_feedforward", dim_feedforward, 1)
        check_range(owner, "dropout", dropout, 0.0, 1.0, high_open=True)
        check_int(owner, "pad_id", pad_id, 0)
        if pad_id >= vocab_size:
            raise fail(owner, "pad_id", pad_id, f"an id below `vocab_size` ({vocab_size})")
        self.lr = check_range(owner, "lr", lr, 0.0, low_open=True)
        self.weight_decay = check_range(owner, "weight_decay", weight_decay, 0.0)
        self.save_hyperparameters()
        self.pad_id = pad_id
        self.max_length = max_length
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.position = nn.Embedding(max_length, d_model)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)
        self._accuracies(num_classes)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Logits ``(B, num_classes)`` for ids ``(B, L)``; ``attention_mask`` is 1 on real tokens."""
        length = input_ids.shape[1]
        if length > self.max_length:
            raise ConfigurationError(
                f"TokenClassifier: sequences of length {length} exceed `max_length` ({self.max_length})."
            )
        real = input_ids != self.pad_id if attention_mask is None else attention_mask.bool()
        positions = torch.arange(length, device=input_ids.device)
        hidden = self.embedding(input_ids) + self.position(positions)
        # A sequence without real tokens attends to its first position (all keys masked would be NaN).
        ignored = ~real
        ignored[:, 0] &= real.any(1)
        hidden = self.encoder(hidden, src_key_padding_mask=ignored)
        weights = real.to(hidden.dtype).unsqueeze(-1)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        logits: Tensor = self.head(pooled)
        return logits

    def _logits(self, batch: dict[str, Tensor]) -> Tensor:
        logits: Tensor = self(batch["input_ids"], batch.get("attention_mask"))
        return logits

    @override
    def _logits_and_targets(self, batch: dict[str, Tensor], stage: str) -> tuple[Tensor, Any]:
        return self._logits(batch), batch["labels"]

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """The logits of a dict batch or of a bare ids tensor."""
        if isinstance(batch, Tensor):
            logits: Tensor = self(batch)
            return logits
        return self._logits(batch)
