"""Suite-wide settings: hypothesis without deadlines (the CI machine is shared and noisy)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "lam", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=25
)
settings.load_profile("lam")

# The suite's tensors are small: on 2 shared cores, one torch thread avoids oversubscription
# (measured ~40× faster for small sweeps under load). Servers started by tests are separate.
import torch  # noqa: E402

torch.set_num_threads(1)
