"""Reference architectures (VGG, GoogLeNet, ResNet/ResNeXt, DenseNet, HighwayNet, ViT) built through the IR.

Each model family lives in its own module and registers its builders; use
``create_model(name, **kwargs) -> ArchGraph`` and ``list_models()``.
"""

from search_spaces.reference import densenet, googlenet, highway, resnet, vgg, vit
from search_spaces.reference.registry import create_model, list_models, register_model

__all__ = ["create_model", "densenet", "googlenet", "highway", "list_models", "register_model", "resnet", "vgg",
           "vit"]
