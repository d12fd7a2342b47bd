"""Runnable samples: ``python -m samples.demo``, ``python -m samples.hello``, ..."""
