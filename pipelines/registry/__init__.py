"""MLflow packaging and the model registry: register a run's bundle, gate promotions, roll back."""
