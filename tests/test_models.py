"""Model factory, GlaViTU, local encoder weights and model summary (CPU, small inputs)."""

from __future__ import annotations

import warnings

import pytest
import torch
from pydantic import ValidationError

from timm.models import adapt_input_conv as timm_adapt_input_conv

from glaciermap.errors import ConfigError, InputDataError
from glaciermap.models import MODEL_NAMES, GlacierSegmenter, GlaViTUConfig, ModelConfig, build_model, model_summary
from glaciermap.models.summary import forward_flops

torch.set_num_threads(2)


def adapt_input_conv(w: torch.Tensor, c: int) -> torch.Tensor:
    """What encoder loading applies to a stem of another channel count (timm's adaptation)."""
    return timm_adapt_input_conv(c, w, base_chans=w.shape[1])

SENSOR_SETS = {
    "optical": {"optical": 6},
    "optical_dem": {"optical": 6, "dem": 3},
    "optical_sar": {"optical": 6, "sar": 3},
    "optical_sar_dem": {"optical": 6, "sar": 3, "dem": 3},
}
ALL = SENSOR_SETS["optical_sar_dem"]
SIZE, BATCH = 64, 2
LOC = torch.tensor([[7.9, 46.5], [-150.2, 61.1]])  # (lon, lat): Alps, Alaska


def small(name: str, **glavitu) -> ModelConfig:
    """A config that builds fast; GlaViTU gets 2 transformer blocks unless told otherwise."""
    return ModelConfig(name=name, glavitu=GlaViTUConfig(**{"depth": 2, **glavitu}))


def inputs(groups: dict[str, int], size: int = SIZE, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, sum(groups.values()), size, size, generator=g)


# ------------------------------------------------------------------------------------ shapes


@pytest.mark.parametrize("sensor_set", SENSOR_SETS)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_and_sensor_set_gives_logits_of_input_size(name, sensor_set):
    groups = SENSOR_SETS[sensor_set]
    model = build_model(small(name), groups)
    assert isinstance(model, GlacierSegmenter)
    assert model.groups == groups and model.in_channels == sum(groups.values())
    model.eval()
    with torch.no_grad():
        out = model(inputs(groups), LOC, torch.ones(BATCH, len(groups), dtype=torch.bool))
    assert out.shape == (BATCH, 1, SIZE, SIZE)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_num_classes_and_non_square_input(name):
    model = build_model(ModelConfig(name=name, num_classes=3, glavitu=GlaViTUConfig(depth=1)), ALL).eval()
    with torch.no_grad():
        out = model(inputs(ALL)[..., :32, :])  # 32 x 64
    assert out.shape == (BATCH, 3, 32, SIZE)


def test_timm_encoder_through_smp_with_local_timm_weights(tmp_path):
    import timm

    model = build_model(ModelConfig(name="unet", encoder="tu-convnext_atto"), ALL).eval()
    with torch.no_grad():
        assert model(inputs(ALL, size=96)).shape == (BATCH, 1, 96, 96)
    state = timm.create_model("convnext_atto", pretrained=False).state_dict()  # 'stem.0.weight', 'head.fc...'
    path = tmp_path / "convnext_atto.pth"
    torch.save(state, path)
    loaded = build_model(ModelConfig(name="unet", encoder="tu-convnext_atto", encoder_weights_path=path), ALL)
    enc = loaded.net.encoder.state_dict()  # smp's feature extractor: 'model.stem_0.weight', ...
    torch.testing.assert_close(enc["model.stages_3.blocks.1.conv_dw.weight"], state["stages.3.blocks.1.conv_dw.weight"])
    torch.testing.assert_close(enc["model.stem_0.weight"], adapt_input_conv(state["stem.0.weight"], 12))


def test_segformer_defaults_to_a_transformer_encoder_and_config_round_trips():
    cfg = ModelConfig(name="segformer")
    assert cfg.encoder == "mit_b0"
    assert ModelConfig(name="unet").encoder == "resnet34"
    assert ModelConfig(name="segformer", encoder="resnet18").encoder == "resnet18"
    for c in (cfg, ModelConfig(name="glavitu", glavitu=GlaViTUConfig(depth=3, location_encoding=True))):
        assert ModelConfig.model_validate(c.model_dump(mode="json")) == c


# ------------------------------------------------------------------------------------ gradients


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradient_reaches_every_parameter(name):
    cfg = small(name, location_encoding=True)
    model = build_model(cfg, ALL).train()
    for m in model.modules():  # stochastic depth may skip a whole block for every sample of the batch
        if hasattr(m, "drop_prob"):
            m.drop_prob = 0.0
    logits, aux = model.forward_with_aux(inputs(ALL), LOC, torch.ones(BATCH, 3, dtype=torch.bool))
    target = (torch.rand(BATCH, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    for weight, a in aux:
        loss = loss + weight * torch.nn.functional.binary_cross_entropy_with_logits(a, target)
    loss.backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    no_grad = [n for n, p in params if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:10]}"
    assert all(torch.isfinite(p.grad).all() for _, p in params)
    zero = [n for n, p in params if not p.grad.abs().sum() > 0]
    assert not zero, f"zero gradients: {zero[:10]}"  # for GlaViTU: aux head, location MLP, pos_embed too
    if name == "glavitu":
        assert [w for w, _ in aux] == [0.5]
        assert model.net.location is not None and model.net.aux_head is not None
    else:
        assert aux == []


# ------------------------------------------------------------------------------------ sensor groups


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_absent_group_does_not_influence_the_prediction(name):
    model = build_model(small(name), ALL).eval()
    x = inputs(ALL)
    noisy = x.clone()
    noisy[:, 6:9] = 10 * torch.randn_like(noisy[:, 6:9])  # change the SAR channels only
    present = torch.tensor([[True, False, True], [True, False, True]])
    with torch.no_grad():
        a, b = model(x, LOC, present), model(noisy, LOC, present)
        c, d = model(x, LOC), model(noisy, LOC)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(c, d, atol=1e-4)  # when present, SAR does matter


def test_glavitu_absent_group_zeroes_its_fusion_branch_per_sample():
    model = build_model(small("glavitu"), ALL).eval()
    x = inputs(ALL)
    present = torch.tensor([[True, True, True], [True, False, False]])
    fusion = model.net.fusion
    with torch.no_grad():
        fused = fusion(x, present)
        opt_only = fusion.branches["optical"](x[:, :6])
        all_groups = fusion(x, None)
    torch.testing.assert_close(fused[1], opt_only[1])  # sample 2: optical branch alone
    torch.testing.assert_close(fused[0], all_groups[0])  # sample 1: all branches


def test_glavitu_all_groups_absent_still_predicts():
    model = build_model(small("glavitu"), ALL).eval()
    with torch.no_grad():
        out = model(torch.zeros(BATCH, 12, SIZE, SIZE), None, torch.zeros(BATCH, 3, dtype=torch.bool))
    assert out.shape == (BATCH, 1, SIZE, SIZE) and torch.isfinite(out).all()


@pytest.mark.parametrize("sensor_set", ["optical", "optical_sar", "optical_dem", "optical_sar_dem"])
def test_glavitu_has_one_fusion_branch_per_group(sensor_set):
    groups = SENSOR_SETS[sensor_set]
    model = build_model(small("glavitu"), groups)
    branches = model.net.fusion.branches
    assert list(branches) == list(groups)
    for g, c in groups.items():
        assert branches[g].conv[0][0].in_channels == c


# ------------------------------------------------------------------------------------ location


def test_glavitu_location_encoding_uses_the_location():
    model = build_model(small("glavitu", location_encoding=True), ALL).eval()
    x = inputs(ALL)
    with torch.no_grad():
        a = model(x, LOC)
        b = model(x, LOC.flip(0))
        c = model(x, LOC + torch.tensor([360.0, 0.0]))  # same place, longitude wrapped
    assert not torch.allclose(a, b, atol=1e-5)
    torch.testing.assert_close(a, c, atol=1e-4, rtol=1e-4)
    with pytest.raises(InputDataError, match="location"):
        model(x)


def test_glavitu_without_location_encoding_ignores_location():
    model = build_model(small("glavitu"), ALL).eval()
    assert model.net.location is None
    x = inputs(ALL)
    with torch.no_grad():
        torch.testing.assert_close(model(x, LOC), model(x, None))


# ------------------------------------------------------------------------------------ positional embedding, dropout


@pytest.mark.parametrize("size", [64, 96])
def test_glavitu_interpolates_positional_embedding_for_other_sizes(size):
    model = build_model(small("glavitu", depth=1), ALL).eval()
    setr = model.net.setr
    assert setr.pos_embed.shape == (1, (384 // 16) ** 2, 64)  # laid out for 384 px inputs
    grid = size // 16
    pe = setr.position_embedding(grid, grid)
    assert pe.shape == (1, grid * grid, 64)
    assert setr.position_embedding(24, 24) is setr.pos_embed
    with torch.no_grad():
        out = model(inputs(ALL, size=size))
    assert out.shape == (BATCH, 1, size, size)


def test_glavitu_positional_embedding_matters_and_follows_the_learned_one():
    model = build_model(small("glavitu", depth=1, pos_embed_size=64), ALL).eval()
    setr = model.net.setr
    assert setr.pos_embed.shape == (1, 16, 64)
    assert setr.position_embedding(4, 4) is setr.pos_embed  # 64 px: used as learned
    x = inputs(ALL, size=96)
    with torch.no_grad():
        a = model(x)
        before = setr.position_embedding(6, 6).clone()
        setr.pos_embed.add_(1.0)
        b = model(x)
        # interpolation is linear in the embedding and keeps constants: shifting it shifts the result
        torch.testing.assert_close(setr.position_embedding(6, 6), before + 1.0, atol=1e-4, rtol=1e-4)
        # a constant shift can vanish in the pre-norm blocks' LayerNorm; a varying one must not
        torch.manual_seed(0)
        setr.pos_embed.add_(torch.randn_like(setr.pos_embed))
        b = model(x)
    assert not torch.allclose(a, b)  # the interpolated embedding feeds the 96 px forward


def test_glavitu_dropout_active_in_training_only():
    model = build_model(small("glavitu", depth=1, dropout=0.2), ALL)
    x = inputs(ALL)
    model.train()
    torch.manual_seed(0)
    a = model(x)
    b = model(x)
    assert not torch.allclose(a, b)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))
    # without dropout, training-mode forwards agree: the difference above is dropout's
    model0 = build_model(small("glavitu", depth=1, dropout=0.0), ALL).train()
    torch.testing.assert_close(model0(x), model0(x))


def test_glavitu_full_size_has_about_ten_million_parameters():
    model = build_model(ModelConfig(name="glavitu"), ALL)
    n = sum(p.numel() for p in model.parameters())
    print(f"GlaViTU (optical+SAR+DEM, paper config): {n / 1e6:.2f} M parameters")
    assert 5e6 < n < 20e6
    assert len(model.net.setr.blocks) == 12
    assert model.net.setr.blocks[0].attn.num_heads == 4
    assert model.net.setr.blocks[0].mlp.fc1.out_features == 256
    assert model.net.unet.bottleneck.body[1][0].out_channels == 512


def test_glavitu_without_deep_supervision():
    model = build_model(small("glavitu", aux_weight=0.0), ALL).eval()
    assert model.net.aux_head is None
    with torch.no_grad():
        logits, aux = model.forward_with_aux(inputs(ALL))
    assert aux == [] and logits.shape == (BATCH, 1, SIZE, SIZE)


# ------------------------------------------------------------------------------------ local encoder weights


def _resnet34_state(seed: int = 1, arch: str = "resnet34") -> dict[str, torch.Tensor]:
    import torchvision

    torch.manual_seed(seed)
    return getattr(torchvision.models, arch)(weights=None).state_dict()  # ImageNet layout, 3 channels


def test_local_encoder_weights_are_loaded_and_first_conv_adapted(tmp_path):
    state = _resnet34_state()
    path = tmp_path / "resnet34_imagenet.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)  # wrapped + prefixed
    groups = {"optical": 6, "dem": 3}  # 9 channels
    random_model = build_model(ModelConfig(name="unet"), groups)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fc.* (the classifier) is dropped silently
        model = build_model(ModelConfig(name="unet", encoder_weights_path=path), groups)
    enc = model.net.encoder
    torch.testing.assert_close(enc.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    torch.testing.assert_close(enc.bn1.running_var, state["bn1.running_var"])
    assert not torch.allclose(random_model.net.encoder.layer4[1].conv2.weight, enc.layer4[1].conv2.weight)
    w = enc.conv1.weight
    assert w.shape == (64, 9, 7, 7)
    for i in range(9):
        torch.testing.assert_close(w[:, i], state["conv1.weight"][:, i % 3] * 3 / 9)
    with torch.no_grad():
        assert model.eval()(inputs(groups)).shape == (BATCH, 1, SIZE, SIZE)


def test_local_encoder_weights_from_safetensors_with_encoder_prefix(tmp_path):
    from safetensors.torch import save_file

    donor = build_model(ModelConfig(name="deeplabv3plus"), {"optical": 3})
    state = {k.removeprefix("net."): v.contiguous() for k, v in donor.state_dict().items()}  # encoder.* + decoder.*
    path = tmp_path / "full_model.safetensors"
    save_file(state, str(path))
    with pytest.warns(UserWarning, match="not used by the resnet34 encoder"):
        model = build_model(ModelConfig(name="deeplabv3plus", encoder_weights_path=path), {"optical": 6, "sar": 3})
    enc = model.net.encoder
    torch.testing.assert_close(enc.layer2[0].conv1.weight, state["encoder.layer2.0.conv1.weight"])
    assert enc.conv1.weight.shape[1] == 9


def test_local_encoder_weights_from_a_lightning_style_checkpoint(tmp_path):
    donor = build_model(ModelConfig(name="unet"), {"optical": 3})
    path = tmp_path / "last.ckpt"  # keys like "model.net.encoder.conv1.weight", plus non-tensor entries
    torch.save({"epoch": 3, "state_dict": {f"model.{k}": v for k, v in donor.state_dict().items()}}, path)
    with pytest.warns(UserWarning, match="not used"):  # the decoder tensors
        model = build_model(ModelConfig(name="unet", encoder_weights_path=path), ALL)
    enc, src = model.net.encoder, donor.net.encoder
    torch.testing.assert_close(enc.layer3[2].conv1.weight, src.layer3[2].conv1.weight)
    torch.testing.assert_close(enc.conv1.weight, adapt_input_conv(src.conv1.weight, 12))
    assert enc.conv1.weight.shape[1] == 12


def test_local_weights_can_be_skipped_when_the_file_is_gone(tmp_path):
    cfg = ModelConfig(name="unet", encoder_weights_path=tmp_path / "gone.pth")
    with pytest.raises(ConfigError, match="not found") as err:
        build_model(cfg, ALL)
    assert "gone.pth" in str(err.value)
    assert build_model(cfg, ALL, load_encoder_weights=False).in_channels == 12


def test_corrupt_weights_file_is_a_config_error_naming_it(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ConfigError) as err:
        build_model(ModelConfig(name="unet", encoder_weights_path=path), ALL)
    assert err.value.path == str(path) and "cannot read encoder weights" in str(err.value)
    bad_st = tmp_path / "broken.safetensors"
    bad_st.write_bytes(b"\x00" * 64)
    with pytest.raises(ConfigError, match="broken.safetensors"):
        build_model(ModelConfig(name="unet", encoder_weights_path=bad_st), ALL)


def test_weights_of_another_architecture_are_rejected(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(_resnet34_state(arch="resnet18"), path)
    with pytest.raises(ConfigError, match="lacks .* tensors of the resnet34 encoder") as err:
        build_model(ModelConfig(name="unet", encoder_weights_path=path), ALL)
    assert err.value.path == str(path)
    unrelated = tmp_path / "unrelated.pth"
    torch.save({"foo.weight": torch.zeros(3)}, unrelated)
    with pytest.raises(ConfigError, match="no tensor name in the file matches"):
        build_model(ModelConfig(name="unet", encoder_weights_path=unrelated), ALL)


def test_adapt_input_conv():
    w = torch.randn(8, 3, 3, 3)
    torch.testing.assert_close(adapt_input_conv(w, 1), w.sum(1, keepdim=True))
    assert adapt_input_conv(w, 3) is w
    a = adapt_input_conv(w, 5)
    torch.testing.assert_close(a[:, 3], w[:, 0] * 3 / 5)
    # for a multiple of 3 channels, a constant image gives the RGB kernel's response to a constant RGB image
    for c in (6, 9, 12):
        xc, x3 = torch.ones(1, c, 4, 4), torch.ones(1, 3, 4, 4)
        torch.testing.assert_close(torch.nn.functional.conv2d(xc, adapt_input_conv(w, c)),
                                   torch.nn.functional.conv2d(x3, w))


def test_encoder_weights_are_refused_for_glavitu(tmp_path):
    with pytest.raises(ValidationError, match="no pretrained encoder"):
        ModelConfig(name="glavitu", encoder_weights_path=tmp_path / "w.pth")


# ------------------------------------------------------------------------------------ names and sizes


def test_unknown_model_name_lists_the_valid_ones():
    with pytest.raises(ValidationError) as err:
        ModelConfig(name="unett")
    msg = str(err.value)
    assert "unknown model 'unett'" in msg and "did you mean 'unet'" in msg
    assert all(n in msg for n in MODEL_NAMES)
    with pytest.raises(ConfigError) as err2:  # configs that bypass validation fail in the factory
        build_model(ModelConfig.model_construct(name="bogus"), ALL)
    assert all(n in str(err2.value) for n in MODEL_NAMES)


def test_unknown_encoder_name_lists_the_valid_ones():
    with pytest.raises(ValidationError) as err:
        ModelConfig(name="unet", encoder="resnet35")
    msg = str(err.value)
    assert "unknown encoder 'resnet35'" in msg
    assert "resnet34" in msg and "mit_b0" in msg and "efficientnet-b0" in msg and "tu-" in msg
    with pytest.raises(ValidationError, match="timm has no model"):
        ModelConfig(encoder="tu-not_a_timm_model")
    with pytest.raises(ConfigError, match="unknown encoder 'nope'"):
        build_model(ModelConfig.model_construct(name="unet", encoder="nope"), ALL)


def test_encoder_that_cannot_serve_an_architecture_is_a_config_error():
    # DeepLabV3+ needs a dilated encoder, VGG cannot be dilated; a plain ViT has no feature pyramid
    with pytest.raises(ConfigError, match="cannot build deeplabv3plus with encoder 'vgg11'.*dilated"):
        build_model(ModelConfig(name="deeplabv3plus", encoder="vgg11"), ALL)
    with pytest.raises(ConfigError, match="cannot build unet with encoder 'tu-vit_tiny_patch16_224'"):
        build_model(ModelConfig(name="unet", encoder="tu-vit_tiny_patch16_224"), ALL)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_sizes_not_divisible_by_32_are_rejected(name):
    model = build_model(small(name), ALL).eval()
    with pytest.raises(InputDataError, match="divisible by 32"):
        model(torch.zeros(1, 12, 48, 64))
    with pytest.raises(InputDataError, match=r"expects input \(B, 12, H, W\)"):
        model(torch.zeros(1, 9, 64, 64))
    with pytest.raises(InputDataError, match="group_present"):
        model(torch.zeros(1, 12, 64, 64), None, torch.ones(1, 2, dtype=torch.bool))


def test_bad_groups_are_rejected():
    with pytest.raises(ConfigError, match="at least one sensor group"):
        build_model(ModelConfig(), {})
    with pytest.raises(ConfigError, match="channels"):
        build_model(ModelConfig(), {"optical": 0})
    with pytest.raises(ValidationError, match="divisible by heads"):
        GlaViTUConfig(embed_dim=64, heads=5)
    with pytest.raises(ValidationError, match="power of two"):
        GlaViTUConfig(patch_size=12)


def test_state_dict_round_trip_between_builds():
    a, b = build_model(small("glavitu"), ALL), build_model(small("glavitu"), ALL)
    assert not any("_channel_group" in k for k in a.state_dict())
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = inputs(ALL)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))
    other = build_model(small("glavitu"), SENSOR_SETS["optical_dem"])  # dem in place of sar: different keys
    with pytest.raises(RuntimeError):
        other.load_state_dict(build_model(small("glavitu"), SENSOR_SETS["optical_sar"]).state_dict())


# ------------------------------------------------------------------------------------ summary


def test_model_summary_counts_params_and_flops():
    model = build_model(ModelConfig(name="unet"), ALL)
    s = model_summary(model, size=128)
    assert s["params"] == sum(p.numel() for p in model.parameters())
    assert model.training  # mode restored
    # convolutional cost scales with the area
    assert model_summary(model, size=64)["gflops_per_patch"] * 4 == pytest.approx(s["gflops_per_patch"], rel=1e-3)


def test_flop_count_includes_attention():
    n_tok, e, mlp = (64 // 16) ** 2, 64, 256
    f1 = forward_flops(build_model(small("glavitu", depth=1), ALL), size=64)
    f2 = forward_flops(build_model(small("glavitu", depth=2), ALL), size=64)
    per_block = 2 * n_tok * e * (3 * e + e + 2 * mlp) + 2 * 2 * n_tok * n_tok * e  # linears + QK^T and AV
    assert f2 - f1 == per_block
    s = model_summary(build_model(small("glavitu", location_encoding=True), ALL), size=64)
    assert s["gflops_per_patch"] > 0
