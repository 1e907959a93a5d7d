"""Export searched architectures: standalone PyTorch model source (:func:`generate_model_source`)."""

from nas.export.codegen import GeneratedModel, generate_model_source

__all__ = ["GeneratedModel", "generate_model_source"]
