"""Improvable Gap Balancing v2 (Dai et al. 2023, IGB paper Alg. 2): SAC-chosen task weights."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.balancers.base import Balancer
from mtl.balancers.registry import BALANCERS
from mtl.balancers.sac import ReplayBuffer, SoftActorCritic
from mtl.context import StepContext
from mtl.errors import ConfigError


@BALANCERS.register("igbv2", "igb_v2")
class IGBv2(Balancer):
    """IGBv2: loss ``Σ_t λ_t log L_t`` with ``λ`` chosen by a soft actor-critic agent.

    MDP (IGB paper, IGBv2): the state is the step's raw batch losses ``s_k = L_k`` [T]; the action is the
    weight vector ``a_k = T · softmax(u_k)`` of a Gaussian sample ``u_k ~ N(μ(s_k), σ(s_k))`` (no tanh
    squashing, as the reference code); the reward of ``a_{k−1}`` is
    ``r_k = α_lr · min_t (L_{k−1,t} − L_{k,t}) / L_base,t`` (the IGBv2 reward) with ``α_lr`` = initial lr /
    current lr (``ctx.lr_ratio``; the reference's QM9 script leaves it at 1 by mistake).

    Schedule (epochs 0-based, as the reference with ``train_batch`` = steps per epoch):

    * ``L_base`` = mean raw training loss per task over epoch ``base_epoch`` (1), set in :meth:`end_epoch`;
    * transitions ``(s_{k−1}, a_{k−1}, r_k, s_k)`` enter a ring buffer of ``buffer_size`` (1e4) once
      ``L_base`` is known, i.e. from epoch 2 on (the first one links the last step of epoch 1);
    * from epoch ``update_after_epoch`` (3), at every global step ``k`` with ``(k − 1) % update_every == 0``
      (every 50 steps) the agent takes ``⌊update_every · κ / 2⌋`` gradient steps on replay batches of
      ``⌊sac_batch_size · κ / 2⌋`` with ``κ = 1 + |buffer| / buffer_size`` (the reference's schedule: 25
      steps of 128 when the buffer is nearly empty, 50 of 256 when full);
    * before epoch ``start_epoch`` (5) the weights are random, ``T · softmax(ε)``, ``ε ~ N(0, I)``; from then
      on they are the actor's stochastic sample for the current state.

    Agent (:class:`~mtl.balancers.sac.SoftActorCritic`): actor and twin critics are 128-128 ReLU MLPs, Adam
    with ``sac_lr`` (3e-4), discount 0.99, Polyak τ 0.005, temperature auto-tuned from 0.2 towards entropy
    −T; ``log π`` includes the reference's tanh-squashing term (``squash_correction``).

    All randomness comes from a generator seeded with ``seed`` (the agent's initial networks from ``seed``
    too); the networks, optimisers, temperature, buffer, ``L_base``, the previous state/action and the
    generator are all in the state dict, so a run resumes exactly.
    """

    def __init__(
        self,
        num_tasks: int,
        seed: int = 0,
        sac_lr: float = 3e-4,
        buffer_size: int = 10_000,
        base_epoch: int = 1,
        update_after_epoch: int = 3,
        start_epoch: int = 5,
        update_every: int = 50,
        sac_batch_size: int = 256,
        discount: float = 0.99,
        tau: float = 0.005,
        init_temperature: float = 0.2,
        hidden_size: int = 128,
        squash_correction: bool = True,
    ) -> None:
        super().__init__(num_tasks, log=True)
        if not sac_lr > 0:
            raise ConfigError(f"igbv2 sac_lr must be > 0, got {sac_lr}")
        for key, value, low in (
            ("buffer_size", buffer_size, 1),
            ("update_every", update_every, 1),
            ("sac_batch_size", sac_batch_size, 1),
            ("hidden_size", hidden_size, 1),
            ("base_epoch", base_epoch, 0),
            ("update_after_epoch", update_after_epoch, 0),
            ("start_epoch", start_epoch, 0),
        ):
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ConfigError(f"igbv2 {key} must be an integer >= {low}, got {value!r}")
        if not 0.0 <= discount < 1.0:
            raise ConfigError(f"igbv2 discount must be in [0, 1), got {discount}")
        if not 0.0 < tau <= 1.0:
            raise ConfigError(f"igbv2 tau must be in (0, 1], got {tau}")
        if not init_temperature > 0:
            raise ConfigError(f"igbv2 init_temperature must be > 0, got {init_temperature}")
        self.sac_lr = float(sac_lr)
        self.buffer_size = int(buffer_size)
        self.base_epoch = int(base_epoch)
        self.update_after_epoch = int(update_after_epoch)
        self.start_epoch = int(start_epoch)
        self.update_every = int(update_every)
        self.sac_batch_size = int(sac_batch_size)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.agent = SoftActorCritic(
            num_tasks,
            num_tasks,
            hidden=(int(hidden_size), int(hidden_size)),
            lr=self.sac_lr,
            discount=discount,
            tau=tau,
            init_temperature=init_temperature,
            squash_correction=squash_correction,
            seed=int(seed),
        )
        self.buffer = ReplayBuffer(num_tasks, num_tasks, self.buffer_size)
        self.base_losses: Tensor | None = None
        self.prev_state: Tensor | None = None
        self.prev_action: Tensor | None = None
        self.num_updates = 0  # SAC gradient steps taken so far
        self.last_reward: float | None = None

    # -- the MDP -----------------------------------------------------------------------------------
    def reward(self, prev_losses: Tensor, losses: Tensor, lr_ratio: float) -> float:
        """The IGBv2 reward: ``α_lr · min_t (L_{k−1,t} − L_{k,t}) / L_base,t``."""
        if self.base_losses is None:
            raise ValueError("igbv2 reward needs L_base, which is set at the end of epoch base_epoch")
        return float(lr_ratio) * float(((prev_losses - losses) / self.base_losses).min())

    def phase(self, epoch: int) -> str:
        """``random`` weights before ``start_epoch``, then ``actor``."""
        return "random" if epoch < self.start_epoch else "actor"

    def updates_due(self, ctx: StepContext) -> bool:
        """Whether this step triggers SAC training (from ``update_after_epoch``, every ``update_every``)."""
        due = ctx.epoch >= self.update_after_epoch and (ctx.step - 1) % self.update_every == 0
        return due and len(self.buffer) > 0

    def train_agent(self) -> None:
        """The reference's burst: ``⌊update_every κ/2⌋`` steps on batches of ``⌊sac_batch_size κ/2⌋``."""
        kappa = 1.0 + len(self.buffer) / self.buffer.capacity
        steps = max(1, int(self.update_every * kappa / 2))
        batch = max(1, int(self.sac_batch_size * kappa / 2))
        for _ in range(steps):
            self.agent.update(self.buffer, batch, self.generator)
        self.num_updates += steps

    def compute_weights(self, losses: Tensor, ctx: StepContext) -> Tensor:
        state = losses.detach().to("cpu", torch.float32)
        if self.base_losses is not None and self.prev_state is not None:
            self.last_reward = self.reward(self.prev_state, state, ctx.lr_ratio)
            self.buffer.add(self.prev_state, self.prev_action, self.last_reward, state)
        if self.updates_due(ctx):
            self.train_agent()
        if self.phase(ctx.epoch) == "random":
            u = torch.randn(self.num_tasks, generator=self.generator)
            action = self.num_tasks * torch.softmax(u, dim=0)
        else:
            action = self.agent.act(state, self.generator)
        self.prev_state, self.prev_action = state, action.clone()
        return action.to(losses.device, losses.dtype)

    def end_epoch(self, epoch: int, mean_losses: Tensor) -> None:
        if epoch == self.base_epoch and self.base_losses is None:
            self.base_losses = mean_losses.detach().to("cpu", torch.float32).clone()

    # -- state ---------------------------------------------------------------------------------------
    def get_extra_state(self) -> dict:
        def copy(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.clone()

        return {
            "generator": self.generator.get_state(),
            "agent": self.agent.state_dict(),
            "buffer": self.buffer.state_dict(),
            "base_losses": copy(self.base_losses),
            "prev_state": copy(self.prev_state),
            "prev_action": copy(self.prev_action),
            "num_updates": self.num_updates,
            "last_reward": self.last_reward,
        }

    def set_extra_state(self, state: dict) -> None:
        def copy(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.clone()

        self.generator.set_state(state["generator"])
        self.agent.load_state_dict(state["agent"])
        self.buffer.load_state_dict(state["buffer"])
        self.base_losses = copy(state["base_losses"])
        self.prev_state = copy(state["prev_state"])
        self.prev_action = copy(state["prev_action"])
        self.num_updates = int(state["num_updates"])
        self.last_reward = state["last_reward"]
