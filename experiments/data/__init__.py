"""Datasets, read from installed files only: images (digits, MNIST-5k, Fashion-MNIST, user MNIST and
CIFAR-10, with seeded class imbalance), groups (spurious-correlation datasets), text (next-token
corpora), and files (validated readers and provenance records shared by all of them)."""
