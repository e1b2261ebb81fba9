"""sentiment-train: fine-tunes a sequence classifier into the next version of a sentiment-server
model repository, tracked in MLflow (docs/training.md)."""
