"""Maps the top-level folders onto the `loft.*` namespace (see DEVELOPERS.md: no generic names in site-packages).

pyproject.toml holds the metadata; only this mapping needs code, because every sub-folder has to be
listed under its `loft.` name and setuptools cannot glob a package-dir mapping.
"""

from setuptools import find_namespace_packages, setup

FOLDERS = ("compiler", "runtime", "schemas", "chat_templates", "targets")
DATA = ["*.json", "*.jinja", "*.j2", "*.md", "*.yaml", "*.txt", "py.typed", "*.html", "*.js", "*.css"]

packages: list[str] = []
package_dir: dict[str, str] = {}
for folder in FOLDERS:
    top = f"loft.{folder}"
    packages.append(top)
    package_dir[top] = folder
    for sub in find_namespace_packages(folder, exclude=["*__pycache__*"]):
        packages.append(f"{top}.{sub}")

setup(packages=packages, package_dir=package_dir, package_data={p: DATA for p in packages})
