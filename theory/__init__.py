"""Theory of spectral vs Euclidean descent on imbalanced Gaussian mixtures (paper A), NumPy/SciPy only.

Modules (one concept each; no plotting, no file I/O, randomness through explicit generators):
    data_model    the DM: priors, population moments (diagonal in the shared bases), samples
    models        linear / deep linear products and layer-wise gradients (squared, cross-entropy)
    algorithms    GD, NGD, SignGD, SpecGD (truncated SVD), Muon (SVD or Newton-Schulz), flows
    closed_forms  exact population trajectories, saturation times, DeltaT(L)
    metrics       per-class / balanced loss, per-class accuracy (quadrature, Monte Carlo, samples)
    theorems      Theorems 1-2: min over (0, t*] of gap / (mu t), and the assumption flags
    fast_path     O(k)-per-step population dynamics in the shared basis, batched over settings

Checking the theorems on new parameters (mu = 1.5, sigma = 1, k = 5 classes):

>>> from theory import theorems
>>> check = theorems.theorem_ratios(mu=1.5, sigma=1.0, p=[0.3, 0.25, 0.24, 0.19, 0.02])
>>> check.assumptions["all"]          # mu >= 1, k >= 3 mu, p_m <= 1 / (5 SNR + 6 k)
True
>>> {name: round(r, 3) for name, r in check.ratios.items()}
{'thm1_minority': 0.906, 'thm1_balanced': 0.645, 'thm2_minority': 0.9, 'thm2_balanced': 0.542}
>>> check.holds("thm1_minority"), check.holds("thm1_balanced"), check.holds("thm2_minority")
(True, True, True)

Sweeping many settings at once with the O(k) path (leading axes are independent settings):

>>> import numpy as np
>>> from theory import fast_path
>>> p = np.array([[0.5, 0.3, 0.2], [0.7, 0.2, 0.1]])          # two prior vectors
>>> mu, sigma = 1.0, 1.0
>>> alpha = fast_path.diagonal_dynamics(mu**2 * p + sigma**2, mu * p, "specgd", lr=0.01, steps=40)
>>> alpha.shape                                                # (steps + 1, settings, k)
(41, 2, 3)
>>> alpha[10].round(3).tolist()                                # equal entries before saturation
[[0.1, 0.1, 0.1], [0.1, 0.1, 0.1]]
"""
