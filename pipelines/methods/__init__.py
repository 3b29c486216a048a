"""Adaptation methods. Each is a small typed config with `load_kwargs(device)` (how the base model
must be loaded for it) and `apply(model)` (the model ready to train); adding one means writing its
module and listing its class in `METHODS`."""
from typing import Annotated, Union

from pydantic import Field

from pipelines.methods.base import BaseMethod
from pipelines.methods.full import FullMethod
from pipelines.methods.ia3 import Ia3Method
from pipelines.methods.lora import DoraMethod, LoraMethod
from pipelines.methods.prompt_learning import PrefixMethod, PromptMethod
from pipelines.methods.qlora import QloraMethod

METHODS = (BaseMethod, FullMethod, LoraMethod, QloraMethod, DoraMethod, Ia3Method, PrefixMethod, PromptMethod)

# The spec picks the class by its `name` key; an unknown name fails at load time.
MethodSpec = Annotated[Union[METHODS], Field(discriminator="name")]  # noqa: UP007 (built from the tuple)

__all__ = ["METHODS", "MethodSpec", "BaseMethod", "FullMethod", "LoraMethod", "QloraMethod", "DoraMethod",
           "Ia3Method", "PrefixMethod", "PromptMethod"]
