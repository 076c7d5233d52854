"""The paper as pure functions on tensors (Krotov & Hopfield 2020; Ramsauer et al. 2020).

lagrangians (L, g = ∇L), models (energies and updates of Models A, B, C), dynamics (the
two-layer network, eqs. (1)-(2)), diagnostics (separations and the fixed-point condition),
bound (the prefilter's missed-mass certificate), merge (log-sum-exp partials of a pass and
their exact merge). These modules import only `errors` and `config`'s constants and
validators, never the engine, the kernels or the store.
"""
