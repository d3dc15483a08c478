"""Theory of SpecGD vs GD on imbalanced Gaussian mixtures (paper A), pure NumPy/SciPy."""
