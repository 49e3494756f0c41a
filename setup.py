"""The one build setting pyproject.toml cannot express: ship the top-level ``conf/`` inside the package.

``conf/`` stays where the design puts it (the repository's top level, the only copy); ``package_dir`` maps it to
``mte.conf`` at build time, so a wheel carries the Hydra configs as ``mte/conf/**.yaml`` and
:func:`mte.paths.config_dir` finds them without the source tree. pyproject.toml's ``packages.find`` cannot add a
package that lives outside ``mte/``, hence this file; metadata, dependencies and package data stay in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(
    # namespace discovery, as pyproject's find did: mte/resources and mte/web/static are data dirs without __init__
    packages=[
        *find_namespace_packages(include=["mte", "mte.*"]),
        "mte.conf",
        *(f"mte.conf.{group}" for group in find_namespace_packages("conf")),  # Hydra's config groups
    ],
    package_dir={"mte.conf": "conf"},
)
