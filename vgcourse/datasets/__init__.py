"""Data files shipped inside the package: the MNIST test split (``mnist/``, CC BY-SA 3.0, see its README).

The loaders are in :mod:`vgcourse.data`; ``python -m vgcourse.datasets --check`` verifies the files.
"""
