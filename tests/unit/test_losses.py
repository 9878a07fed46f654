import torch

from nla_lens.training.losses import (
    WORST_MSE,
    clipped_surrogate,
    group_advantages,
    kl_penalty,
    reconstruction_loss,
    rewards_from_mse,
)


def test_rewards_floor_failed_samples():
    mse = torch.tensor([0.5, 1.0, 3.0])
    failed = torch.tensor([False, True, False])
    assert rewards_from_mse(mse, failed).tolist() == [-0.5, -WORST_MSE, -3.0]


def test_group_advantages_standardise_within_groups():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    adv = group_advantages(rewards)
    assert torch.allclose(adv.mean(dim=1), torch.zeros(2), atol=1e-6)
    expected = (rewards[0] - 2.0) / (torch.tensor([1.0, 2.0, 3.0]).std(unbiased=False) + 1e-4)
    assert torch.allclose(adv[0], expected)
    assert torch.equal(adv[1], torch.zeros(3))


def test_clipped_surrogate_matches_hand_computation_and_clips():
    logp = torch.log(torch.tensor([[0.5, 0.5], [0.4, 0.1]]))
    old = torch.log(torch.tensor([[0.25, 0.5], [0.4, 0.2]]))
    adv = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # seq 0: ratios 2 (clipped to 1.2) and 1 -> -(1.2 + 1)/2; seq 1: ratio 1 -> -(1 * -2)
    expected = ((-(1.2 + 1.0) / 2) + 2.0) / 2
    assert torch.isclose(clipped_surrogate(logp, old, adv, mask, clip=0.2), torch.tensor(expected))


def test_surrogate_gradient_raises_probability_of_positive_advantage():
    logits = torch.zeros(1, 3, requires_grad=True)
    logp = torch.log_softmax(logits, -1)[:, :1]
    loss = clipped_surrogate(logp, logp.detach(), torch.tensor([1.0]), torch.ones(1, 1))
    loss.backward()
    assert logits.grad[0, 0] < 0  # descending the loss raises logit 0


def test_kl_penalty_is_zero_for_equal_policies_and_positive_otherwise():
    logp = torch.log(torch.tensor([[0.2, 0.7]]))
    mask = torch.ones(1, 2)
    assert kl_penalty(logp, logp, mask).item() == 0.0
    assert kl_penalty(logp, torch.log(torch.tensor([[0.6, 0.1]])), mask).item() > 0


def test_reconstruction_loss_is_two_one_minus_cos():
    a, b = torch.randn(5, 16), torch.randn(5, 16)
    cos = torch.nn.functional.cosine_similarity(a, b)
    assert torch.isclose(reconstruction_loss(a, b), (2 * (1 - cos)).mean(), atol=1e-5)
