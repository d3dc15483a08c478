"""The project's torch models, each seeded through an explicit generator:
vision (MLP, ResNetCNN), transformer (TinyTransformer), autoencoder (DeepAutoencoder)."""
