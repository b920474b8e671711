"""Release: package a passed eval as an MLflow model, register it, promote by alias, roll back."""
