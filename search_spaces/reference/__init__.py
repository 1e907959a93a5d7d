"""Reference architectures (VGG, GoogLeNet, ResNet/ResNeXt, DenseNet, HighwayNet, ViT) built through the IR."""
