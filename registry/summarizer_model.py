"""The summarizer as MLflow loads it (models from code: see registry/pyfunc.py)."""
from mlflow.models import set_model

from registry.summarizer import SummarizerModel

set_model(SummarizerModel())
