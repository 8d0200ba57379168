import pytest

from rsoup_lib.errors import UserError
from rsoup_lib.profiles import DEFAULT_PROFILE, PROFILES, Profile, get_profile, parse_override


def test_the_three_profiles_exist_and_cpu_is_default():
    assert set(PROFILES) == {"smoke", "cpu", "gpu"}
    assert DEFAULT_PROFILE == "cpu"
    assert get_profile("smoke").policy == "tiny-random"
    assert get_profile("cpu").policy == "tiny"
    assert get_profile("gpu").policy == "smollm2-135m-instruct"


def test_parameters_are_flat_and_named_profile():
    params = get_profile("smoke").parameters()
    assert params["profile"] == "smoke"
    assert "description" not in params and "name" not in params
    assert set(params) - {"profile"} == {f for f in Profile.__dataclass_fields__} - {"name", "description"}


def test_smoke_is_smaller_than_cpu_everywhere():
    smoke, cpu = get_profile("smoke"), get_profile("cpu")
    for field in ("steps", "batch_prompts", "max_new_tokens", "eval_prompts"):
        assert getattr(smoke, field) < getattr(cpu, field), field


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(UserError, match="smoke, cpu, gpu"):
        get_profile("laptop")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("steps=10", ("steps", 10)),
        ("lr=3e-4", ("lr", 3e-4)),
        ("lora=true", ("lora", True)),
        ("policy=/models/x", ("policy", "/models/x")),
        ("rewards=[\"a\", \"b\"]", ("rewards", ["a", "b"])),
    ],
)
def test_overrides_parse_as_json_or_string(text, expected):
    assert parse_override(text) == expected


def test_override_without_equals_is_an_error():
    with pytest.raises(UserError, match="name=value"):
        parse_override("steps")


def test_set_threads_keeps_the_default_for_0_and_caps_at_the_cores():
    import os

    import torch

    from rsoup_lib.profiles import set_threads

    before = torch.get_num_threads()
    try:
        assert set_threads(0) == before
        assert set_threads(1) == 1
        assert set_threads(10_000) == (os.cpu_count() or 1)
        with pytest.raises(UserError):
            set_threads(-1)
    finally:
        torch.set_num_threads(before)
