"""Tooling that turns official ViT .npz checkpoints into verified Hub repos."""
