"""Adaptation methods. Each is a small typed config with `apply(model)`; adding one means
writing its module and listing its class in `METHODS`."""
from typing import Annotated, Union

from pydantic import Field

from pipelines.methods.base import BaseMethod
from pipelines.methods.full import FullMethod
from pipelines.methods.lora import LoraMethod

METHODS = (BaseMethod, FullMethod, LoraMethod)

# The spec picks the class by its `name` key; an unknown name fails at load time.
MethodSpec = Annotated[Union[METHODS], Field(discriminator="name")]  # noqa: UP007 (built from the tuple)

__all__ = ["METHODS", "BaseMethod", "FullMethod", "LoraMethod", "MethodSpec"]
