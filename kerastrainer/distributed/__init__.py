"""Distributed training: strategies and the local launcher."""
