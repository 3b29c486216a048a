"""The classifier as MLflow loads it (models from code: see registry/pyfunc.py)."""
from mlflow.models import set_model

from registry.classifier import ClassifierModel

set_model(ClassifierModel())
