"""Package mapping: the repository keeps latency/, search/, adapt/ and models/ at its top level
(the layout the project was specified with); installed, they are hwnas.latency, hwnas.search,
hwnas.adapt and hwnas.models. Metadata lives in pyproject.toml."""
from setuptools import find_packages, setup

TOP_LEVEL = {"hwnas": "hwnas", "hwnas.latency": "latency", "hwnas.search": "search",
             "hwnas.adapt": "adapt", "hwnas.models": "models"}

packages, package_dir = [], {}
for name, folder in TOP_LEVEL.items():
    package_dir[name] = folder
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=package_dir,
      package_data={"hwnas": ["devices.yaml", "py.typed"], "hwnas.models": ["torchvision_keys.json.gz"]}, include_package_data=True)
