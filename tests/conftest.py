"""Suite-wide settings: hypothesis without deadlines (the CI machine is shared and noisy)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "lam", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=25
)
settings.load_profile("lam")
