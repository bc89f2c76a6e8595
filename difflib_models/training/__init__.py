"""Lightning training pieces used by the demo and examples: a LoRA chat fine-tune module and its data module.

Importing :mod:`difflib_models.training.lora_module` imports Lightning; this package's ``__init__`` does not.
"""
