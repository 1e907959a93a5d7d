"""Exported model implementations: standalone PyTorch source files written by `nas export`."""
