"""Turning Google's official ViT `.npz` checkpoints into verified Hub repos: the registry of official files,
downloads, conversion, and verification against an independent NumPy forward pass.

Installed as `hf_vit_port_tools.conversion`; from a checkout `python -m conversion ...` is `hf-vit-port ...`.
"""
