"""Integrations with tracking tools (MLflow). Imported lazily: nothing here loads mlflow at import time."""
