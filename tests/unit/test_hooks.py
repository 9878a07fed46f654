import pytest

from nla_lens.errors import HookNameError, NLALensError
from nla_lens.hooks import check_layer, parse_hook_name, resid_post, resolve_hook_name, validate_hook_name

VALID = [f"blocks.{k}.{s}" for k in range(4) for s in ("hook_resid_pre", "hook_resid_post", "attn.hook_z")]
VALID += ["hook_embed", "ln_final.hook_normalized"]


def test_layer_to_name_to_hidden_states_index():
    for layer in range(4):
        point = parse_hook_name(resid_post(layer, 4))
        assert point.name == f"blocks.{layer}.hook_resid_post"
        assert point.layer == layer
        assert point.hidden_states_index == layer + 1
        assert point.stop_at_layer == layer + 1
    assert parse_hook_name("blocks.2.hook_resid_pre").hidden_states_index == 2
    assert parse_hook_name("hook_embed").hidden_states_index == 0
    assert parse_hook_name("hook_embed").stop_at_layer == 0
    assert parse_hook_name("ln_final.hook_normalized").stop_at_layer is None
    assert parse_hook_name("blocks.1.attn.hook_z").hidden_states_index is None


def test_int_and_negative_layers():
    assert resolve_hook_name(layer=3, n_layers=4).name == "blocks.3.hook_resid_post"
    assert resid_post(-1, 30) == "blocks.29.hook_resid_post"
    assert check_layer(-30, 30) == 0


@pytest.mark.parametrize("layer", [4, 17, -5])
def test_layer_out_of_range_names_the_valid_range(layer):
    with pytest.raises(HookNameError, match=r"valid layers are 0\.\.3"):
        resid_post(layer, 4)
    with pytest.raises(HookNameError):
        validate_hook_name(f"blocks.{layer}.hook_resid_post", VALID, 4)


def test_unknown_hook_suggests_the_closest_names():
    with pytest.raises(HookNameError) as info:
        validate_hook_name("blocks.2.hook_resid_pots", VALID, 4)
    message = str(info.value)
    assert "'blocks.2.hook_resid_post'" in message and "hook_resid_pre" in message
    assert isinstance(info.value, NLALensError) and isinstance(info.value, KeyError)


@pytest.mark.parametrize("bad", ["", "blocks.x.hook_resid_post", "blocks.", None, 2.5, True])
def test_malformed_names(bad):
    with pytest.raises(HookNameError):
        parse_hook_name(bad, 4)


def test_valid_name_passes():
    assert validate_hook_name("blocks.3.attn.hook_z", VALID, 4).layer == 3


def test_an_int_hook_name_is_refused_with_a_pointer_to_layer():
    for call in (
        lambda: parse_hook_name(3, 4),
        lambda: validate_hook_name(3, VALID, 4),
        lambda: resolve_hook_name(3, n_layers=4),
    ):
        with pytest.raises(HookNameError, match=r"pass layer=3 instead"):
            call()


def test_resolve_hook_name_takes_a_name_or_a_layer():
    assert resolve_hook_name("blocks.2.hook_resid_pre").hidden_states_index == 2
    assert resolve_hook_name(layer=-1, n_layers=4).name == "blocks.3.hook_resid_post"
    assert resolve_hook_name("blocks.3.attn.hook_z", n_layers=4, valid_names=VALID).layer == 3
    with pytest.raises(HookNameError, match="'blocks.2.hook_resid_post'"):
        resolve_hook_name("blocks.2.hook_resid_pots", n_layers=4, valid_names=VALID)
    with pytest.raises(HookNameError, match="not both"):
        resolve_hook_name("blocks.1.hook_resid_post", layer=1)
    with pytest.raises(HookNameError, match="or layer=K"):
        resolve_hook_name()
