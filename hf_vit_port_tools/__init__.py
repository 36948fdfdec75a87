"""The tooling built on the hf_vit_port plugin: conversion of the official `.npz` files into verified Hub repos
(`conversion`), model cards and publishing (`hub`), fine-tuning and training from scratch (`training`),
prediction, evaluation and pictures (`inference`), and the `hf-vit-port` command (`cli`).

Importing this package (or `options`, `cli`, `conversion.registry`) loads no torch: the command line starts fast.
"""
