"""Tensor and pipeline parallelism: process groups, the launcher, group health."""
