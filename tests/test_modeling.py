import pytest
import torch
from conftest import tiny_config
from transformers import ViTForImageClassification, ViTModel

from hf_vit_port import ViTPortForImageClassification, ViTPortModel
from hf_vit_port.stock import stock_config, to_stock_state_dict


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter non-trivial values (the fresh head is all zeros, which would hide mistakes)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model.eval()


def images(batch=2, size=(16, 16), seed=1):
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


def test_output_shapes():
    config = tiny_config(representation_size=24)
    model = randomised(ViTPortForImageClassification(config))
    out = model(images(), output_hidden_states=True)
    assert out.logits.shape == (2, 5)
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert all(h.shape == (2, 17, 32) for h in out.hidden_states)
    base = model.vit(images())
    assert base.last_hidden_state.shape == (2, 17, 32)
    assert base.pooler_output.shape == (2, 24)


def test_pooler_output_is_the_pooled_token_without_pre_logits():
    model = randomised(ViTPortModel(tiny_config()))
    out = model(images())
    torch.testing.assert_close(out.pooler_output, out.last_hidden_state[:, 0])


def test_gap_classifier_has_no_cls_token_and_averages_tokens():
    model = randomised(ViTPortModel(tiny_config(classifier="gap")))
    assert model.embeddings.cls_token is None
    out = model(images())
    assert out.last_hidden_state.shape == (2, 16, 32)
    torch.testing.assert_close(out.pooler_output, out.last_hidden_state.mean(dim=1))


def test_features_only_model_has_no_head():
    model = randomised(ViTPortForImageClassification(tiny_config(num_labels=0, representation_size=24)))
    # Features come from the encoder; asking for logits says there is no head (and where the features are).
    assert model.forward_head(model.vit.forward_features(images()), pre_logits=True).shape == (2, 24)
    for call in (lambda: model(images()), lambda: model(images(), labels=torch.tensor([0, 1]))):
        with pytest.raises(ValueError, match="no classification head.*image-feature-extraction"):
            call()


def test_forward_head_split_matches_forward():
    model = randomised(ViTPortForImageClassification(tiny_config(representation_size=24)))
    tokens = model.vit.forward_features(images())
    torch.testing.assert_close(model.forward_head(tokens), model(images()).logits)
    torch.testing.assert_close(model.forward_head(tokens, pre_logits=True), model.vit(images()).pooler_output)


def test_head_is_zero_initialised_like_the_original():
    model = ViTPortForImageClassification(tiny_config(representation_size=24))
    assert not model.classifier.weight.any() and not model.classifier.bias.any()
    assert not model.vit.embeddings.cls_token.any()
    assert model.vit.layers[0].mlp.fc1.bias.abs().max() < 1e-4
    assert model.vit.pre_logits.weight.std() > 0


@pytest.mark.parametrize("size", [(24, 24), (16, 32), (32, 20)])
def test_interpolate_pos_encoding_accepts_other_sizes(size):
    model = randomised(ViTPortForImageClassification(tiny_config()))
    assert model(images(size=size), interpolate_pos_encoding=True).logits.shape == (2, 5)
    with pytest.raises(ValueError, match="interpolate_pos_encoding=True"):
        model(images(size=size))


def test_interpolation_at_the_native_size_changes_nothing():
    model = randomised(ViTPortForImageClassification(tiny_config()))
    torch.testing.assert_close(model(images(), interpolate_pos_encoding=True).logits, model(images()).logits)


def test_eager_and_sdpa_agree_and_attentions_are_returned():
    config = tiny_config(representation_size=24)
    sdpa = randomised(ViTPortForImageClassification._from_config(config, attn_implementation="sdpa"))
    eager = ViTPortForImageClassification._from_config(tiny_config(representation_size=24), attn_implementation="eager")
    eager.load_state_dict(sdpa.state_dict())
    eager.eval()
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    torch.testing.assert_close(sdpa(images()).logits, eager(images()).logits, atol=1e-5, rtol=1e-5)
    attentions = eager(images(), output_attentions=True).attentions
    assert len(attentions) == 2 and attentions[0].shape == (2, 4, 17, 17)
    torch.testing.assert_close(attentions[0].sum(-1), torch.ones(2, 4, 17))


def test_same_hidden_states_as_transformers_vit_model():
    config = tiny_config(representation_size=24)
    ours = randomised(ViTPortModel(config))
    stock = ViTModel(stock_config(config, for_classification=False), add_pooling_layer=True).eval()
    missing, unexpected = stock.load_state_dict(to_stock_state_dict(ours.state_dict()), strict=False)
    assert not missing and not unexpected
    pixels = images()
    a = ours(pixels, output_hidden_states=True)
    b = stock(pixels, output_hidden_states=True)
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, atol=1e-5, rtol=1e-5)
    for mine, theirs in zip(a.hidden_states, b.hidden_states, strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.pooler_output, b.pooler_output, atol=1e-5, rtol=1e-5)


def test_same_logits_as_transformers_vit_for_image_classification():
    config = tiny_config()
    ours = randomised(ViTPortForImageClassification(config))
    stock = ViTForImageClassification(stock_config(config, for_classification=True)).eval()
    missing, unexpected = stock.load_state_dict(to_stock_state_dict(ours.state_dict()), strict=False)
    assert not missing and not unexpected
    torch.testing.assert_close(ours(images()).logits, stock(images()).logits, atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter():
    model = randomised(ViTPortForImageClassification(tiny_config(representation_size=24))).train()
    model(images(), labels=torch.tensor([1, 3])).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_gradient_checkpointing_gives_the_same_gradients():
    plain = randomised(ViTPortForImageClassification(tiny_config())).train()
    checkpointed = randomised(ViTPortForImageClassification(tiny_config())).train()
    checkpointed.gradient_checkpointing_enable()
    assert checkpointed.is_gradient_checkpointing
    for model in (plain, checkpointed):
        model(images(), labels=torch.tensor([0, 4])).loss.backward()
    for a, b in zip(plain.parameters(), checkpointed.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize(
    "problem_type, labels",
    [
        ("single_label_classification", torch.tensor([0, 3])),
        ("multi_label_classification", torch.tensor([[1.0, 0, 1, 0, 0], [0, 1, 0, 0, 1]])),
        ("regression", torch.randn(2, 5)),
    ],
)
def test_each_problem_type_trains_a_step(problem_type, labels):
    model = randomised(ViTPortForImageClassification(tiny_config(problem_type=problem_type))).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    first = model(images(), labels=labels).loss
    first.backward()
    optimizer.step()
    optimizer.zero_grad()
    with torch.no_grad():
        second = model(images(), labels=labels).loss
    assert torch.isfinite(first) and second < first


def test_loss_type_is_inferred_from_the_labels():
    model = randomised(ViTPortForImageClassification(tiny_config()))
    logits = model(images()).logits
    loss = model(images(), labels=torch.tensor([1, 2])).loss
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, torch.tensor([1, 2])))


def test_stochastic_depth_is_off_in_eval_and_random_in_training():
    model = randomised(ViTPortForImageClassification(tiny_config(drop_path_rate=0.5)))
    torch.testing.assert_close(model(images()).logits, model(images()).logits)
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model(images()).logits, model(images()).logits)


def test_cls_only_last_block_gives_the_full_paths_logits_loss_and_gradients():
    """Without hidden states requested, the last block computes the CLS token alone: nothing observable changes."""
    fast = randomised(ViTPortForImageClassification(tiny_config(representation_size=24))).train()
    full = randomised(ViTPortForImageClassification(tiny_config(representation_size=24))).train()
    labels = torch.tensor([1, 3])
    fast_out = fast(images(), labels=labels)
    full_out = full(images(), labels=labels, output_hidden_states=True)
    torch.testing.assert_close(fast_out.logits, full_out.logits, atol=1e-5, rtol=1e-5)
    fast_out.loss.backward()
    full_out.loss.backward()
    for (name, a), b in zip(fast.named_parameters(), full.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)
    checkpointed = randomised(ViTPortForImageClassification(tiny_config())).train()
    checkpointed.gradient_checkpointing_enable()
    assert checkpointed(images(), labels=labels).loss.isfinite()
