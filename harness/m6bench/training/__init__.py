"""Training: the Recommender interface, model and component specs, and the training loop."""
