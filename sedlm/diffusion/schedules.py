"""Noise schedules as pure functions of continuous time t in [0, 1].

Each schedule maps t to abar_t, the signal variance of the variance-preserving forward process
    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps                       (DESIGN.md §1.3)
with abar_0 ~= 1 (clean) and abar_1 ~= 0 (pure noise). log-SNR is log(abar / (1 - abar)).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from sedlm.errors import SedlmError

Schedule = Callable[[torch.Tensor], torch.Tensor]
_EPS = 1e-7


def cosine(t: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal 2021: abar_t = cos^2((t + s)/(1 + s) * pi/2) / cos^2(s/(1 + s) * pi/2)."""
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (f / math.cos(s / (1 + s) * math.pi / 2) ** 2).clamp(0.0, 1.0)


def linear(t: torch.Tensor, beta_min: float = 0.1, beta_max: float = 20.0) -> torch.Tensor:
    """Continuous DDPM linear betas (Song et al. 2021): abar_t = exp(-(b0 t + (b1 - b0) t^2 / 2))."""
    return torch.exp(-(beta_min * t + 0.5 * (beta_max - beta_min) * t**2))


def sqrt(t: torch.Tensor, s: float = 1e-4) -> torch.Tensor:
    """Diffusion-LM (Li et al. 2022): abar_t = 1 - sqrt(t + s); noise rises fast near t = 0."""
    return (1 - torch.sqrt(t + s)).clamp(0.0, 1.0)


SCHEDULES: dict[str, Schedule] = {"cosine": cosine, "linear": linear, "sqrt": sqrt}


def get_schedule(name: str) -> Schedule:
    if name not in SCHEDULES:
        raise SedlmError(f"unknown schedule '{name}'; valid schedules: {', '.join(SCHEDULES)}")
    return SCHEDULES[name]


def log_snr(alpha_bar: torch.Tensor) -> torch.Tensor:
    ab = alpha_bar.clamp(_EPS, 1 - _EPS)
    return torch.log(ab) - torch.log1p(-ab)


def time_grid(steps: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Uniform decreasing grid t_0 = 1 > t_1 > ... > t_K = 0 with K = steps. (K + 1,)"""
    return torch.linspace(1.0, 0.0, steps + 1, device=device)
