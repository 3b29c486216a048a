"""Request checks every served pyfunc shares: one text column in, a 400 with a message out.

MLflow's scoring server (3.17) already answers 400 for bad JSON, a body that is not an object,
an unknown or missing input format key, a wrong column (schema enforcement) and a param of the
wrong type. What it lets through, and this module catches, is what only the model can judge:
null, numbers or blank strings in the text column, texts too long to be worth reading and more
rows than one request should hold. Anything raised here is an MlflowException with
INVALID_PARAMETER_VALUE, which the server turns into a 400 carrying the message. One gap is
MLflow's: in the `inputs` and `instances` formats it casts every value to the column's type
before `predict` runs (null arrives as "None", 3 as "3"), so only `dataframe_records` and
`dataframe_split` requests can be held to strict types.

How a pyfunc uses it (the summarizer does exactly this):

    LIMITS = RequestLimits(max_rows=256, max_chars=5_000)         # module level
    log_from_code(..., model_config={..., **LIMITS.as_config()})  # registry/pyfunc.py
    self.limits = LIMITS.updated_from(context.model_config)      # load_context
    texts = texts_from_input(model_input, "text", self.limits)   # first line of predict

Logging the limits in model_config lets a server change them without re-logging the model:
MLFLOW_PYFUNC_INFERENCE_CONFIG='{"max_rows": 64}' mlflow models serve ...
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from numbers import Integral, Real

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE


@dataclass(frozen=True)
class RequestLimits:
    max_rows: int = 32
    """Rows one request may hold; a client with more splits them over several requests."""
    max_chars: int = 50_000
    """Characters one text may hold. Longer texts are refused, not cut: a cut the client did not
    ask for would change the answer silently. 50,000 characters is beyond the context of the
    models served here (SmolLM2: 8,192 tokens); what fits is still truncated to the model's
    prompt budget in tokens, as in evaluation."""

    def __post_init__(self):
        if self.max_rows < 1 or self.max_chars < 1:
            raise ValueError(f"request limits must be positive, got {self}")

    def as_config(self) -> dict[str, int]:
        return asdict(self)

    def updated_from(self, config: dict) -> RequestLimits:
        """These limits with the ones a model_config sets (models logged before limits existed
        set none)."""
        return replace(self, **{k: int(config[k]) for k in asdict(self) if k in config})


def bad_request(message: str) -> MlflowException:
    """An error the scoring server answers with 400 and `message` (any other code means 500)."""
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def texts_from_input(model_input, column: str, limits: RequestLimits) -> list[str]:
    """The texts of `column`, each a non-empty string within the limits, or a 400 naming the
    first row at fault. Takes what MLflow hands `predict`: a DataFrame (served requests and
    `model.predict(frame)`), or a plain list of strings or a {column: list} dict in process."""
    if isinstance(model_input, pd.DataFrame):
        if column not in model_input.columns:
            raise bad_request(f"input needs a '{column}' column, got {list(model_input.columns)}")
        texts = model_input[column].tolist()
    elif isinstance(model_input, dict) and column in model_input:
        texts = list(model_input[column])
    elif isinstance(model_input, (list, tuple)):
        texts = list(model_input)
    else:
        raise bad_request(f"input must be a table with a '{column}' column, got {type(model_input).__name__}")
    if not texts:
        raise bad_request(f"input has no rows; send at least one '{column}'")
    if len(texts) > limits.max_rows:
        raise bad_request(f"input has {len(texts)} rows, at most {limits.max_rows} per request; "
                          "split them over several requests")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            # pandas turns a JSON null into NaN or NA: name it as the client wrote it.
            missing = text is None or text is pd.NA or (isinstance(text, float) and text != text)
            got = "null" if missing else type(text).__name__
            raise bad_request(f"row {i}: '{column}' must be a string, got {got}")
        if not text.strip():
            raise bad_request(f"row {i}: '{column}' is empty")
        if len(text) > limits.max_chars:
            raise bad_request(f"row {i}: '{column}' has {len(text):,} characters, at most {limits.max_chars:,}")
    return texts


def int_param(params: dict | None, name: str, default: int, low: int, high: int) -> int:
    """An integer param within [low, high]; absent or null takes `default`. MLflow has already
    refused values of the wrong type against the signature's ParamSpec."""
    value = (params or {}).get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise bad_request(f"param '{name}' must be an integer, got {value!r}")
    if not low <= value <= high:
        raise bad_request(f"param '{name}' must be between {low} and {high}, got {value}")
    return int(value)


def float_param(params: dict | None, name: str, default: float, low: float, high: float) -> float:
    """A number within [low, high] (integers too); absent or null takes `default`. MLflow's check
    of a `double` ParamSpec lets NaN through: it is refused here with the out-of-range values."""
    value = (params or {}).get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, Real):
        raise bad_request(f"param '{name}' must be a number, got {value!r}")
    if not low <= value <= high:
        raise bad_request(f"param '{name}' must be between {low:g} and {high:g}, got {float(value)!r}")
    return float(value)
