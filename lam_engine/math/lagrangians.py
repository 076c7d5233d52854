"""Lagrangians L(x) and their activations g = ∇L (Krotov & Hopfield 2020, section 2).

A Lagrangian maps a batch of neuron states x (B, n) to one number per state (B,); its
gradient is the activation function of that layer. Every Lagrangian used by the two-layer
network of `dynamics.py` must be convex (PSD Hessian), which is what makes the energy a
Lyapunov function. `HiddenFunction` is the per-unit function F of the hidden layer of
Models A and C (L_h = Σ_μ F(h_μ)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..config import F_KINDS, check_beta
from ..errors import InvalidParameterError

_LOG2 = math.log(2.0)


@dataclass(frozen=True)
class Lagrangian:
    """A Lagrangian L: (B, n) → (B,) with its activation g = ∇L: (B, n) → (B, n)."""

    name: str
    fn: Callable[[Tensor], Tensor] = field(repr=False, compare=False)
    grad: Callable[[Tensor], Tensor] = field(repr=False, compare=False)
    convex: bool = True
    # The activation jumps (Σ|x| at x_i = 0, max(x, 0) at 0): E jumps where it does, and
    # an Euler step across two jumps at once can raise it (dynamics.py guards those).
    jumps: bool = False

    def lagrangian(self, x: Tensor) -> Tensor:
        return self.fn(x)  # (B,)

    def activation(self, x: Tensor) -> Tensor:
        return self.grad(x)  # (B, n)

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x)


@dataclass(frozen=True)
class HiddenFunction:
    """Per-unit hidden function F of Models A and C and its derivative F′.

    kind "power": F(x) = xⁿ (convex for even n and n = 1); "rectified_power":
    F(x) = max(x, 0)ⁿ (convex for n ≥ 1); "exp": F(x) = eˣ (convex, `power` unused).
    """

    kind: str
    power: int = 3

    def F(self, x: Tensor) -> Tensor:
        if self.kind == "exp":
            return torch.exp(x)
        if self.kind == "rectified_power":
            return torch.clamp(x, min=0.0) ** self.power
        return x**self.power

    def dF(self, x: Tensor) -> Tensor:
        n = self.power
        if self.kind == "exp":
            return torch.exp(x)
        if self.kind == "rectified_power":
            if n == 1:
                return (x > 0).to(x.dtype)
            return n * torch.clamp(x, min=0.0) ** (n - 1)
        if n == 1:
            return torch.ones_like(x)
        return n * x ** (n - 1)

    @property
    def convex(self) -> bool:
        return self.kind != "power" or self.power == 1 or self.power % 2 == 0

    @property
    def homogeneous(self) -> bool:
        """F(c x) = cⁿ F(x) for c > 0: sums of F can be compared after rescaling x."""
        return self.kind in ("power", "rectified_power")

    @property
    def name(self) -> str:
        return "exp" if self.kind == "exp" else f"{self.kind}({self.power})"


def hidden_function(kind: str, power: int = 3) -> HiddenFunction:
    """The hidden function F of kind "power", "rectified_power" or "exp" (API.md)."""
    if kind not in F_KINDS:
        raise InvalidParameterError(f"F must be one of {F_KINDS}", {"F": kind})
    if isinstance(power, bool) or not isinstance(power, int) or power < 1:
        raise InvalidParameterError("power must be an integer ≥ 1", {"power": power})
    return HiddenFunction(kind, power)


def elementwise(f: HiddenFunction) -> Lagrangian:
    """L(x) = Σ_i F(x_i), activation F′(x_i): the hidden Lagrangian of Models A and C."""
    jumps = f.kind == "rectified_power" and f.power == 1
    return Lagrangian(f"sum_{f.name}", lambda x: f.F(x).sum(-1), f.dF, convex=f.convex, jumps=jumps)


def quadratic() -> Lagrangian:
    """L = ½‖x‖², g = x: the feature Lagrangian of Model B."""
    return Lagrangian("quadratic", lambda x: 0.5 * (x * x).sum(-1), lambda x: x)


def absolute() -> Lagrangian:
    """L = Σ|x_i|, g = sign(x): the feature Lagrangian of Model A (binary states)."""
    return Lagrangian("abs", lambda x: x.abs().sum(-1), torch.sign, jumps=True)


def power(n: int) -> Lagrangian:
    """L = Σ xᵢⁿ, g = n xᵢⁿ⁻¹ (the DAM's F(x) = xⁿ per unit; convex for even n)."""
    return elementwise(hidden_function("power", n))


def rectified_power(n: int) -> Lagrangian:
    """L = Σ max(xᵢ, 0)ⁿ, g = n max(xᵢ, 0)ⁿ⁻¹ (convex)."""
    return elementwise(hidden_function("rectified_power", n))


def exponential() -> Lagrangian:
    """L = Σ exp(xᵢ), g = exp(x)."""
    return elementwise(hidden_function("exp"))


def log_sum_exp(beta: float, prior: Tensor | None = None) -> Lagrangian:
    """L = β⁻¹ log Σ exp(β xᵢ + bᵢ), g = softmax(β x + b): the hidden Lagrangian of Model B.

    `prior` b (log-strengths, math/strengths.py) is a constant shift of the arguments: the
    Hessian is still that of a log-sum-exp (PSD), so L stays convex.
    """
    beta = check_beta(beta)
    if prior is None:
        return Lagrangian(
            f"lse(beta={beta:g})",
            lambda x: torch.logsumexp(beta * x, dim=-1) / beta,
            lambda x: torch.softmax(beta * x, dim=-1),
        )
    b = prior

    def shifted(x: Tensor) -> Tensor:
        return beta * x + b.to(x.dtype)

    return Lagrangian(
        f"lse(beta={beta:g}, strengths)",
        lambda x: torch.logsumexp(shifted(x), dim=-1) / beta,
        lambda x: torch.softmax(shifted(x), dim=-1),
    )


def _unit(x: Tensor) -> Tensor:
    # x/‖x‖ with the convention g(0) = 0 (‖x‖ is not differentiable there).
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)  # (B, 1)
    return torch.where(norm > 0, x / torch.where(norm > 0, norm, 1.0), 0.0)


def spherical() -> Lagrangian:
    """L = ‖x‖, g = x/‖x‖ (g(0) = 0): the feature Lagrangian of Model C."""
    return Lagrangian("spherical", lambda x: torch.linalg.vector_norm(x, dim=-1), _unit)


def sigmoid() -> Lagrangian:
    """L = Σ log(1 + eˣ) (softplus), g = sigmoid(x)."""
    return Lagrangian("sigmoid", lambda x: _softplus(x).sum(-1), torch.sigmoid)


def _softplus(x: Tensor) -> Tensor:
    # log(1 + eˣ) as a log-sum-exp: finite for every x, and its gradient is sigmoid(x) to
    # rounding (torch's softplus turns linear past x = 20, where its slope is 1 − 2·10⁻⁹ off).
    return torch.logaddexp(x, torch.zeros_like(x))


def _log_cosh(x: Tensor) -> Tensor:
    # log cosh x = log(eˣ + e⁻ˣ) − log 2, a log-sum-exp for the same reasons.
    return torch.logaddexp(x, -x) - _LOG2


def tanh() -> Lagrangian:
    """L = Σ log cosh xᵢ, g = tanh(x)."""
    return Lagrangian("tanh", lambda x: _log_cosh(x).sum(-1), torch.tanh)
