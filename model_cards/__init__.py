"""Model card templates, installed as package data of `hf_vit_port_tools.model_cards` (see pyproject.toml)."""
