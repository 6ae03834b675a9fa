"""The one compiled part: the n-gram featuriser (sparse_distill/inference/_ngrams.c), built at
install.

Everything else is in pyproject.toml. The extension needs only the Python headers: no numpy C API,
so one build serves any numpy version.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("sparse_distill.inference._ngrams",
                             ["sparse_distill/inference/_ngrams.c"])])
