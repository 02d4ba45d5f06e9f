"""Soft actor-critic (Haarnoja et al. 2018) for IGBv2's task weights, with a replay buffer.

The networks live on the CPU (they are tiny) and are deliberately *not* submodules of the balancer: the
trainer optimises every parameter of a method with the model's optimiser, while the SAC networks have their
own Adam optimisers. Their whole state (networks, target networks, optimisers, temperature) is exported by
:meth:`SoftActorCritic.state_dict` and stored in the balancer's extra state.

All randomness (network initialisation, action noise, replay sampling) comes from explicit generators.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0


def mlp(sizes: Sequence[int], last_activation: bool) -> nn.Sequential:
    """Linear layers with ReLU between them (and after the last one when ``last_activation``)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if last_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the tiny SAC networks on one intra-op thread: faster than several for 128-wide MLPs (much faster
    on a loaded machine) and independent of the host's thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Actor(nn.Module):
    """Gaussian policy ``u ~ N(μ(s), σ(s))``: a ReLU trunk (ReLU after every hidden layer, as the IGB
    reference), then linear heads for μ and log σ (clamped to [−20, 2])."""

    def __init__(self, state_dim: int, action_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.trunk = mlp([state_dim, *hidden], last_activation=True)
        self.mu = nn.Linear(hidden[-1], action_dim)
        self.log_std = nn.Linear(hidden[-1], action_dim)

    def forward(self, state: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(state)
        return self.mu(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)


class TwinCritic(nn.Module):
    """Two independent Q networks ``Q_i(s, a)`` (clipped double-Q, Fujimoto et al. 2018)."""

    def __init__(self, state_dim: int, action_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        sizes = [state_dim + action_dim, *hidden, 1]
        self.q1 = mlp(sizes, last_activation=False)
        self.q2 = mlp(sizes, last_activation=False)

    def forward(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        sa = torch.cat([state, action], dim=-1)
        return self.q1(sa), self.q2(sa)


class ReplayBuffer:
    """A ring buffer of transitions ``(s, a, r, s')`` with a fixed capacity; the oldest is overwritten."""

    def __init__(self, state_dim: int, action_dim: int, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"replay buffer capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.state = torch.zeros(self.capacity, state_dim)
        self.action = torch.zeros(self.capacity, action_dim)
        self.reward = torch.zeros(self.capacity, 1)
        self.next_state = torch.zeros(self.capacity, state_dim)
        self.ptr = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, state: Tensor, action: Tensor, reward: float, next_state: Tensor) -> None:
        self.state[self.ptr] = state
        self.action[self.ptr] = action
        self.reward[self.ptr] = float(reward)
        self.next_state[self.ptr] = next_state
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``batch_size`` transitions drawn uniformly with replacement."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = torch.randint(0, self.size, (batch_size,), generator=generator)
        return self.state[idx], self.action[idx], self.reward[idx], self.next_state[idx]

    def state_dict(self) -> dict[str, Any]:
        n = self.size
        return {
            "capacity": self.capacity,
            "ptr": self.ptr,
            "size": n,
            "state": self.state[:n].clone(),
            "action": self.action[:n].clone(),
            "reward": self.reward[:n].clone(),
            "next_state": self.next_state[:n].clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"replay buffer capacity {state['capacity']} in the state, {self.capacity} here")
        n = int(state["size"])
        for name in ("state", "action", "reward", "next_state"):
            getattr(self, name).zero_()
            getattr(self, name)[:n] = state[name]
        self.ptr = int(state["ptr"])
        self.size = n


class SoftActorCritic:
    """SAC with twin critics, target critics (Polyak ``τ``) and an auto-tuned temperature (Haarnoja et al.
    2018b, Alg. 1 and Eq. 5, 7, 18): target entropy ``−dim(A)``.

    Actions are task weights ``a = A · softmax(u)`` of the Gaussian sample ``u`` (no tanh squashing, as
    the IGB reference). ``log π`` is the Gaussian log-density of ``u``; with ``squash_correction`` (default,
    as the IGB reference code, which kept the tanh-squashing term of its SAC template) ``Σ log(1 − tanh²u)``
    is subtracted too, i.e. ``log π = Σ log N(u; μ, σ) − Σ 2(log 2 − u − softplus(−2u))``.
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        *,
        hidden: Sequence[int] = (128, 128),
        lr: float = 3e-4,
        discount: float = 0.99,
        tau: float = 0.005,
        init_temperature: float = 0.2,
        squash_correction: bool = True,
        seed: int = 0,
    ) -> None:
        self.action_dim = int(action_dim)
        self.discount = float(discount)
        self.tau = float(tau)
        self.squash_correction = bool(squash_correction)
        self.target_entropy = -float(action_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.actor = Actor(state_dim, action_dim, hidden)
            self.critic = TwinCritic(state_dim, action_dim, hidden)
        self.critic_target = copy.deepcopy(self.critic)
        for p in self.critic_target.parameters():
            p.requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(init_temperature), requires_grad=True)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=lr)

    @property
    def alpha(self) -> Tensor:
        """The current temperature ``exp(log α)`` (detached)."""
        return self.log_alpha.detach().exp()

    def to_weights(self, u: Tensor) -> Tensor:
        """IGBv2's action map ``a = A · softmax(u)`` (the IGB paper and reference code)."""
        return self.action_dim * torch.softmax(u, dim=-1)

    def log_prob(self, u: Tensor, mu: Tensor, log_std: Tensor) -> Tensor:
        """``log π(u | s)`` summed over action dimensions, with the optional tanh-squashing term."""
        std = log_std.exp()
        density = -0.5 * ((u - mu) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
        logp = density.sum(dim=-1, keepdim=True)
        if self.squash_correction:
            logp = logp - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(dim=-1, keepdim=True)
        return logp

    def policy(self, state: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Reparameterised sample: weights ``a`` and ``log π``, differentiable w.r.t. the actor."""
        mu, log_std = self.actor(state)
        noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
        u = mu + log_std.exp() * noise
        return self.to_weights(u), self.log_prob(u, mu, log_std)

    @torch.no_grad()
    @single_thread()
    def act(self, state: Tensor, generator: torch.Generator, deterministic: bool = False) -> Tensor:
        """Task weights for one state [S] -> [A] (a stochastic sample unless ``deterministic``)."""
        mu, log_std = self.actor(state.unsqueeze(0))
        if deterministic:
            u = mu
        else:
            u = mu + log_std.exp() * torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
        return self.to_weights(u).squeeze(0)

    @single_thread()
    def update(self, buffer: ReplayBuffer, batch_size: int, generator: torch.Generator) -> dict[str, float]:
        """One SAC gradient step on a replay batch: critics (Eq. 5, clipped double-Q target without a
        terminal mask), actor (Eq. 7), temperature (Eq. 18), then Polyak averaging of the target critics."""
        s, a, r, s_next = buffer.sample(batch_size, generator)
        alpha = self.alpha
        with torch.no_grad():
            a_next, logp_next = self.policy(s_next, generator)
            q1_t, q2_t = self.critic_target(s_next, a_next)
            target = r + self.discount * (torch.min(q1_t, q2_t) - alpha * logp_next)
        q1, q2 = self.critic(s, a)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        for p in self.critic.parameters():
            p.requires_grad_(False)
        a_new, logp = self.policy(s, generator)
        q1_pi, q2_pi = self.critic(s, a_new)
        actor_loss = (alpha * logp - torch.min(q1_pi, q2_pi)).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        for p in self.critic.parameters():
            p.requires_grad_(True)

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()

        with torch.no_grad():
            for p, p_t in zip(self.critic.parameters(), self.critic_target.parameters(), strict=True):
                p_t.mul_(1.0 - self.tau).add_(p, alpha=self.tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "alpha": alpha.item()}

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy(
            {
                "actor": self.actor.state_dict(),
                "critic": self.critic.state_dict(),
                "critic_target": self.critic_target.state_dict(),
                "log_alpha": self.log_alpha.detach(),
                "actor_optimizer": self.actor_optimizer.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict(),
                "alpha_optimizer": self.alpha_optimizer.state_dict(),
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = copy.deepcopy(state)
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
