"""The text generator as MLflow loads it (models from code: see registry/pyfunc.py)."""
from mlflow.models import set_model

from registry.text_generator import TextGeneratorModel

set_model(TextGeneratorModel())
