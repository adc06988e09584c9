"""Engines turn (image, mask) into a ``Reconstruction``. See ``base.Engine``."""
