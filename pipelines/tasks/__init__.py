"""Tasks: how examples become prompts and tensors, and how predictions are produced."""
