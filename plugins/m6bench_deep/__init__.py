"""deep: NeuMF, DeepFM, Wide&Deep and Mult-VAE baselines."""
