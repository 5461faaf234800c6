"""Addressing a tensor inside a batch and writing it back out of place."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from lit_noise import ConfigurationError
from lit_noise.batch import normalize_key, read, write


def test_normalize_key() -> None:
    assert normalize_key(None, "X") is None
    assert normalize_key(0, "X") == (0,)
    assert normalize_key("image", "X") == ("image",)
    assert normalize_key("inputs.image", "X") == ("inputs", "image")
    assert normalize_key("inputs.0", "X") == ("inputs", 0)
    assert normalize_key(["inputs", 1], "X") == ("inputs", 1)
    assert normalize_key(OmegaConf.create({"k": ["a", "b"]}).k, "X") == ("a", "b")  # Hydra ListConfig
    for bad in (True, 1.5, [], [1.5], {"a": 1}):
        with pytest.raises(
            ConfigurationError, match=r"X: `key` must be an int, a str, a path of those or None"
        ):
            normalize_key(bad, "X")  # type: ignore[arg-type]


def test_read_write_list_dict_nested() -> None:
    x, y, z = torch.zeros(2), torch.ones(2), torch.full((2,), 2.0)
    batch_list = [x, y]
    assert read(batch_list, (1,), "X") is y
    write(batch_list, (0,), z, "X")
    assert batch_list[0] is z
    assert torch.equal(x, torch.zeros(2))
    nested = {"inputs": {"image": x, "mask": y}, "target": [y, x]}
    assert read(nested, ("inputs", "image"), "X") is x
    write(nested, ("inputs", "image"), z, "X")
    write(nested, ("target", 1), z, "X")
    assert nested["inputs"]["image"] is z
    assert nested["target"][1] is z
    assert torch.equal(x, torch.zeros(2))


def test_missing_keys_list_what_is_available() -> None:
    with pytest.raises(ConfigurationError) as info:
        read({"image": torch.zeros(1), "label": torch.zeros(1)}, ("img",), "InputNoise")
    assert str(info.value) == (
        "InputNoise: `key` 'img' is not in the batch (at 'img'; available: ['image', 'label'])."
    )
    with pytest.raises(
        ConfigurationError, match=r"`key` 5 is not in the batch \(at 5; available: indices 0\.\.1\)"
    ):
        read([torch.zeros(1), torch.zeros(1)], (5,), "InputNoise")
    with pytest.raises(ConfigurationError, match=r"`key` 'inputs\.img' .* available: \['image'\]"):
        read({"inputs": {"image": torch.zeros(1)}}, ("inputs", "img"), "InputNoise")
    with pytest.raises(ConfigurationError, match=r"`key` 'x' .*available: indices 0\.\.0"):
        read([torch.zeros(1)], ("x",), "InputNoise")


def test_keys_that_do_not_address_a_tensor() -> None:
    with pytest.raises(ConfigurationError, match=r"`key` 'meta' must address a tensor, found str"):
        read({"meta": "abc"}, ("meta",), "InputNoise")
    with pytest.raises(ConfigurationError, match=r"indexes into a tensor .* pass `key=None`"):
        read(torch.zeros(4, 3), (0,), "InputNoise")  # would silently pick the first sample
    with pytest.raises(
        ConfigurationError, match=r"the key is None, so the batch itself must be a tensor, got list"
    ):
        read([torch.zeros(1)], None, "InputNoise")


def test_tuples_cannot_be_written() -> None:
    batch = (torch.zeros(2), torch.ones(2))
    with pytest.raises(
        ConfigurationError, match=r"cannot write the noisy tensor back into a tuple.*collate_fn"
    ):
        write(batch, (0,), torch.ones(2), "InputNoise")
    nested = [(torch.zeros(2), torch.ones(2)), torch.ones(2)]
    with pytest.raises(ConfigurationError, match="tuple"):
        write(nested, (0, 1), torch.ones(2), "InputNoise")


def test_bare_tensors_in_place_unless_a_view() -> None:
    batch = torch.zeros(3, 2)
    write(batch, None, torch.ones(3, 2), "InputNoise")
    assert torch.equal(batch, torch.ones(3, 2))  # the same object, updated in place
    storage = torch.zeros(10, 2)
    view = storage[2:5]
    with pytest.raises(ConfigurationError, match=r"view of other storage .* would change the dataset"):
        write(view, None, torch.ones(3, 2), "InputNoise")
    assert torch.equal(storage, torch.zeros(10, 2))
    with pytest.raises(
        ConfigurationError, match=r"the key is None, so the batch itself must be a tensor, got list"
    ):
        write([torch.zeros(1)], None, torch.ones(1), "InputNoise")


def test_errors_name_the_argument_and_show_the_key_as_given() -> None:
    """One style: the argument's name in backticks, the key as the user wrote it as a repr."""
    batch = {"inputs": {"image": torch.zeros(1)}, "label": torch.zeros(1)}
    with pytest.raises(ConfigurationError) as info:
        read(batch, normalize_key("inputs.img", "MixupDataModule", "input_key"), "MixupDataModule")
    assert str(info.value) == (
        "MixupDataModule: `input_key` 'inputs.img' is not in the batch (at 'img'; available: ['image'])."
    )
    with pytest.raises(ConfigurationError) as info:
        read(
            batch, normalize_key(["inputs", "img"], "CalibrationMonitor", "target_key"), "CalibrationMonitor"
        )
    assert "`target_key` ['inputs', 'img'] is not in the batch" in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        read([torch.zeros(1)], normalize_key(3, "InputNoise"), "InputNoise")
    assert "`key` 3 is not in the batch (at 3; available: indices 0..0)" in str(info.value)
    with pytest.raises(ConfigurationError, match=r"`target_key` 'label\.0' indexes into a tensor \(at 0\)"):
        read(batch, normalize_key("label.0", "X", "target_key"), "X")
    with pytest.raises(
        ConfigurationError, match=r"X: `target_key` 'inputs' must address a tensor, found dict"
    ):
        read(batch, normalize_key("inputs", "X", "target_key"), "X")
    with pytest.raises(
        ConfigurationError, match=r"X: `input_key` must be an int, a str, a path .*, got 1\.5"
    ):
        normalize_key(1.5, "X", "input_key")  # type: ignore[arg-type]
    assert normalize_key("inputs.0", "X", "input_key") == ("inputs", 0)  # still a plain tuple path
