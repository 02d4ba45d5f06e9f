"""IGBv2 (IGB paper Sec. 4.2): reward, replay buffer, warm-up phases, the SAC agent and exact resume."""

import io

import pytest
import torch

from mtl.balancers import BALANCERS
from mtl.balancers.sac import ReplayBuffer, SoftActorCritic
from mtl.config import TrainConfig
from mtl.context import StepContext
from mtl.errors import ConfigError
from mtl.methods import build_method
from mtl.train import Trainer
from tests.mtl.resume import assert_resume_is_bit_identical


def igbv2(num_tasks=3, seed=0, **kwargs):
    return BALANCERS.build("igbv2", context={"num_tasks": num_tasks, "seed": seed}, **kwargs)


# -- reward ---------------------------------------------------------------------------------------
def test_reward_sign_and_scale():
    b = igbv2(2)
    b.end_epoch(1, torch.tensor([1.0, 2.0]))
    prev = torch.tensor([1.0, 1.0])
    # both losses fall: decrements (0.5, 0.5) / L_base = (0.5, 0.25) -> min 0.25, times α_lr
    assert b.reward(prev, torch.tensor([0.5, 0.5]), lr_ratio=1.0) == pytest.approx(0.25)
    assert b.reward(prev, torch.tensor([0.5, 0.5]), lr_ratio=4.0) == pytest.approx(1.0)
    # one task gets worse: the reward is negative however much the other improves
    assert b.reward(prev, torch.tensor([0.0, 1.2]), lr_ratio=1.0) == pytest.approx(-0.1)
    assert b.reward(prev, prev, lr_ratio=1.0) == 0.0


def test_reward_is_scale_invariant_through_l_base():
    a, b = igbv2(2), igbv2(2)
    a.end_epoch(1, torch.tensor([1.0, 2.0]))
    b.end_epoch(1, torch.tensor([1000.0, 2.0]))
    ra = a.reward(torch.tensor([1.0, 1.0]), torch.tensor([0.9, 0.8]), 1.0)
    rb = b.reward(torch.tensor([1000.0, 1.0]), torch.tensor([900.0, 0.8]), 1.0)
    assert ra == pytest.approx(rb)


def test_reward_needs_l_base():
    with pytest.raises(ValueError, match="L_base"):
        igbv2(2).reward(torch.ones(2), torch.ones(2), 1.0)


def test_l_base_is_the_mean_loss_of_epoch_1_only():
    b = igbv2(2)
    b.end_epoch(0, torch.tensor([9.0, 9.0]))
    assert b.base_losses is None
    b.end_epoch(1, torch.tensor([3.0, 4.0]))
    b.end_epoch(2, torch.tensor([1.0, 1.0]))
    assert torch.equal(b.base_losses, torch.tensor([3.0, 4.0]))


# -- replay buffer --------------------------------------------------------------------------------
def test_buffer_wraps_around_overwriting_the_oldest():
    buf = ReplayBuffer(2, 2, capacity=3)
    for i in range(5):
        buf.add(torch.full((2,), float(i)), torch.full((2,), 10.0 + i), float(i), torch.full((2,), i + 0.5))
    assert len(buf) == 3 and buf.ptr == 2
    assert buf.state[:, 0].tolist() == [3.0, 4.0, 2.0]
    assert buf.reward[:, 0].tolist() == [3.0, 4.0, 2.0]
    assert buf.action[:, 0].tolist() == [13.0, 14.0, 12.0]
    s, a, r, s2 = buf.sample(200, torch.Generator().manual_seed(0))
    assert set(s[:, 0].tolist()) == {2.0, 3.0, 4.0}
    assert torch.equal(a[:, 0] - 10.0, s[:, 0]) and torch.equal(s2 - 0.5, s) and torch.equal(r[:, 0], s[:, 0])
    # the state dict survives the wrap (and a later add continues at the right slot)
    copy = ReplayBuffer(2, 2, capacity=3)
    copy.load_state_dict(buf.state_dict())
    for b in (buf, copy):
        b.add(torch.full((2,), 5.0), torch.zeros(2), 5.0, torch.zeros(2))
    assert torch.equal(copy.state, buf.state) and copy.ptr == buf.ptr == 0


def test_buffer_before_wrapping_and_empty():
    buf = ReplayBuffer(1, 1, capacity=4)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(1, torch.Generator())
    buf.add(torch.ones(1), torch.ones(1), 1.0, torch.ones(1))
    assert len(buf) == 1 and buf.ptr == 1
    s, *_ = buf.sample(10, torch.Generator())
    assert torch.equal(s, torch.ones(10, 1))


# -- warm-up phases -------------------------------------------------------------------------------
def _drive(b, epochs, steps_per_epoch, lr_ratio=1.0, losses_fn=None):
    """Call the balancer like the trainer does; return per-step (epoch, weights, buffer size, updates)."""
    log, k = [], 0
    for epoch in range(epochs):
        epoch_losses = []
        for i in range(steps_per_epoch):
            k += 1
            losses = losses_fn(k) if losses_fn else torch.tensor([2.0, 1.0, 0.5]) / k**0.3
            ctx = StepContext(
                epoch=epoch, step=k, step_in_epoch=i, steps_per_epoch=steps_per_epoch, lr_ratio=lr_ratio
            )
            before = b.num_updates
            w = b(losses, ctx).weights
            log.append((epoch, k, w, len(b.buffer), b.num_updates - before))
            epoch_losses.append(losses)
        b.end_epoch(epoch, torch.stack(epoch_losses).mean(dim=0))
    return log


def test_warm_up_phases_follow_the_reference_schedule():
    steps = 4
    b = igbv2(3, update_every=3, sac_batch_size=8, buffer_size=100)
    acted = []
    original_act = b.agent.act
    b.agent.act = lambda state, gen, deterministic=False: acted.append(1) or original_act(state, gen)
    log = _drive(b, epochs=7, steps_per_epoch=steps)
    for epoch, k, w, size, updates in log:
        assert float(w.sum()) == pytest.approx(3.0, rel=1e-5) and bool((w > 0).all())
        # transitions are stored once L_base is known (end of epoch 1): from the first step of epoch 2
        assert size == max(0, k - 2 * steps)
        # SAC trains from epoch 3, every 3 global steps, ⌊3 κ/2⌋ = 1 update per trigger here
        due = epoch >= 3 and (k - 1) % 3 == 0
        assert updates == (1 if due else 0), (epoch, k)
    # weights: random before epoch 5, the actor's from epoch 5 on (2 epochs x 4 steps)
    assert len(acted) == 2 * steps
    random_weights = torch.stack([w for epoch, *_rest in log for w in [_rest[1]] if epoch < 5])
    assert random_weights.std(dim=0).min() > 0.05  # they vary from step to step


def test_update_burst_grows_with_the_buffer():
    """κ = 1 + |buffer|/capacity: ⌊50 κ/2⌋ steps on ⌊256 κ/2⌋ samples (25 x 128 nearly empty, 50 x 256
    full)."""
    b = igbv2(2, buffer_size=10)
    sizes = []
    b.agent.update = lambda buffer, batch, gen: sizes.append(batch)
    b.buffer.add(torch.ones(2), torch.ones(2), 0.0, torch.ones(2))
    b.train_agent()
    assert sizes == [int(256 * 1.1 / 2)] * int(50 * 1.1 / 2)
    for _ in range(20):
        b.buffer.add(torch.ones(2), torch.ones(2), 0.0, torch.ones(2))
    sizes.clear()
    b.train_agent()
    assert sizes == [256] * 50


def test_learning_rate_ratio_scales_the_stored_rewards():
    a, b = igbv2(3, seed=1), igbv2(3, seed=1)
    _drive(a, epochs=3, steps_per_epoch=3, lr_ratio=1.0)
    _drive(b, epochs=3, steps_per_epoch=3, lr_ratio=8.0)
    n = len(a.buffer)
    assert n == 3
    torch.testing.assert_close(b.buffer.reward[:n], 8.0 * a.buffer.reward[:n])


def test_same_seed_same_weights_other_seed_other_weights():
    def weights(seed):
        return torch.stack([w for *_a, w, _s, _u in _drive(igbv2(3, seed=seed, update_every=2), 6, 3)])

    assert torch.equal(weights(3), weights(3))
    assert not torch.equal(weights(3), weights(4))


# -- the agent --------------------------------------------------------------------------------------
def test_architecture():
    agent = igbv2(11).agent
    linears = [m for m in agent.actor.trunk if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(11, 128), (128, 128)]
    assert isinstance(agent.actor.trunk[-1], torch.nn.ReLU)
    assert (agent.actor.mu.out_features, agent.actor.log_std.out_features) == (11, 11)
    for q in (agent.critic.q1, agent.critic.q2):
        dims = [(m.in_features, m.out_features) for m in q if isinstance(m, torch.nn.Linear)]
        assert dims == [(22, 128), (128, 128), (128, 1)]
    assert agent.target_entropy == -11.0
    assert float(agent.alpha) == pytest.approx(0.2)
    assert agent.discount == 0.99 and agent.tau == 0.005
    for opt in (agent.actor_optimizer, agent.critic_optimizer, agent.alpha_optimizer):
        assert opt.param_groups[0]["lr"] == 3e-4
    assert igbv2(3, sac_lr=1e-3).agent.actor_optimizer.param_groups[0]["lr"] == 1e-3


def test_log_prob_with_and_without_the_squash_term():
    gen = torch.Generator().manual_seed(0)
    mu, log_std = torch.randn(5, 3, generator=gen), 0.3 * torch.randn(5, 3, generator=gen)
    u = mu + log_std.exp() * torch.randn(5, 3, generator=gen)
    plain = SoftActorCritic(3, 3, squash_correction=False).log_prob(u, mu, log_std)
    expected = torch.distributions.Normal(mu, log_std.exp()).log_prob(u).sum(dim=1, keepdim=True)
    torch.testing.assert_close(plain, expected)
    squashed = SoftActorCritic(3, 3).log_prob(u, mu, log_std)
    tanh_term = torch.log(1 - torch.tanh(u) ** 2).sum(dim=1, keepdim=True)
    torch.testing.assert_close(squashed, expected - tanh_term)


def test_actions_are_task_weights_summing_to_t():
    agent = SoftActorCritic(4, 4)
    gen = torch.Generator().manual_seed(0)
    a = agent.act(torch.rand(4), gen)
    assert a.shape == (4,) and float(a.sum()) == pytest.approx(4.0) and bool((a > 0).all())
    w, logp = agent.policy(torch.rand(7, 4), gen)
    torch.testing.assert_close(w.sum(dim=1), torch.full((7,), 4.0))
    assert logp.shape == (7, 1)


def test_sac_learns_a_bandit():
    """One-step problem (discount 0): the reward is the weight of task 0. The actor must learn to favour it,
    and the temperature must adapt."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    agent = SoftActorCritic(3, 3, discount=0.0, lr=3e-3, seed=0)
    buf = ReplayBuffer(3, 3, capacity=2000)
    for _ in range(2000):
        s = torch.rand(3, generator=gen)
        a = 3 * torch.softmax(2 * torch.randn(3, generator=gen), dim=0)
        buf.add(s, a, float(a[0]) - 1.0, torch.rand(3, generator=gen))
    before = agent.act(torch.full((3,), 0.5), gen, deterministic=True)
    for _ in range(200):
        stats = agent.update(buf, 64, gen)
    after = agent.act(torch.full((3,), 0.5), gen, deterministic=True)
    assert float(after[0]) > 2.0 > float(before[0])
    assert stats["alpha"] != pytest.approx(0.2)


# -- configuration and state ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs", [{"sac_lr": 0.0}, {"buffer_size": 0}, {"update_every": 1.5}, {"discount": 1.0}, {"tau": 0.0}]
)
def test_bad_configuration(kwargs):
    with pytest.raises(ConfigError, match="igbv2"):
        igbv2(3, **kwargs)


def test_state_dict_resumes_exactly_and_loads_with_weights_only():
    kwargs = {"update_every": 2, "sac_batch_size": 16, "buffer_size": 7}
    straight = igbv2(3, seed=5, **kwargs)
    log_a = _drive(straight, epochs=5, steps_per_epoch=3)
    buffer = io.BytesIO()
    torch.save(straight.state_dict(), buffer)
    buffer.seek(0)
    resumed = igbv2(3, seed=99, **kwargs)  # another seed: everything must come from the state
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert len(resumed.buffer) == 7 and resumed.buffer.ptr == straight.buffer.ptr  # wrapped around
    k0 = log_a[-1][1]

    def losses(k):
        return torch.tensor([2.0, 1.0, 0.5]) / (k + k0) ** 0.3

    for b in (straight, resumed):
        b._log = []
        k = k0
        for epoch in range(5, 8):
            for i in range(3):
                k += 1
                ctx = StepContext(epoch=epoch, step=k, step_in_epoch=i, steps_per_epoch=3)
                b._log.append(b(losses(k), ctx).weights)
            b.end_epoch(epoch, torch.ones(3))
    for wa, wb in zip(straight._log, resumed._log, strict=True):
        assert torch.equal(wa, wb)
    for pa, pb in zip(straight.agent.actor.parameters(), resumed.agent.actor.parameters()):
        assert torch.equal(pa, pb)
    assert straight.num_updates == resumed.num_updates > 0


def _config(epochs=5, **kwargs):
    return TrainConfig(
        dataset="synthetic",
        method="igbv2",
        seed=0,
        epochs=epochs,
        batch_size=32,
        method_kwargs={
            "base_epoch": 0,
            "update_after_epoch": 1,
            "start_epoch": 2,
            "update_every": 2,
            "sac_batch_size": 16,
            **kwargs,
        },
        dataset_kwargs={"n_train": 96, "n_val": 32, "n_test": 32, "hidden": 8},
        scheduler="step",
        scheduler_kwargs={"step_size": 1, "gamma": 0.5},
    )


@pytest.mark.parametrize("method", ["igbv2", "igbv2+pcgrad"])
def test_trainer_resume_is_bit_identical_across_the_phases(method):
    """Stop after epoch 2 (random phase, buffer and SAC training under way), resume to epoch 5 (actor)."""
    config = _config()
    config = TrainConfig.from_dict({**config.to_dict(), "method": method})
    straight, resumed = assert_resume_is_bit_identical(config, epochs=5, stop_after=1, global_seed=777)
    bs, br = straight.method.balancer, resumed.method.balancer
    assert bs.num_updates == br.num_updates > 0 and len(bs.buffer) == len(br.buffer) > 0
    for pa, pb in zip(bs.agent.critic.parameters(), br.agent.critic.parameters()):
        assert torch.equal(pa, pb)


def test_the_trainers_lr_ratio_reaches_the_reward():
    """With the step scheduler halving the lr each epoch, α_lr = initial lr / current lr doubles."""
    trainer = Trainer(_config(epochs=3))
    b = trainer.method.balancer
    ratios = []
    original = b.reward
    b.reward = lambda prev, cur, lr_ratio: ratios.append(lr_ratio) or original(prev, cur, lr_ratio)
    for _ in range(3):
        trainer.run_epoch()
    # L_base after epoch 0: transitions from epoch 1 (lr/2) and 2 (lr/4)
    assert ratios == [2.0] * 3 + [4.0] * 3


def test_igbv2_is_a_log_loss_method():
    method = build_method("igbv2", ["a", "b"])
    losses = torch.tensor([2.0, 0.5], requires_grad=True)
    res = method.balancer(losses, StepContext(epoch=0, step=1))
    torch.testing.assert_close(res.terms, res.weights * torch.log(losses.detach() + 1e-8))
