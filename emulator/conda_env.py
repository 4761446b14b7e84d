"""A deployment environment's conda file, read as what the emulator can install with pip's names.

Azure builds an image from the environment's base image and conda file. The emulator
has no images: it installs the conda file's Python packages into a virtual environment
(emulator/env_builds.py) on its own interpreter. So:

- `python=` must name the emulator's Python (3.11 here); another is refused, naming both.
- `pip:` entries are taken as they are (requirement strings; options such as `-r` or
  `--index-url` are refused, as they point at files or indexes the emulator cannot see).
- Plain conda packages are mapped to their PyPI names (`pytorch` -> `torch`,
  `py-xgboost` -> `xgboost`, ...), with conda's version forms turned into pip's
  (`numpy=1.26` -> `numpy==1.26.*`); conda's system libraries (`openssl`, `libgcc-ng`,
  `_libgcc_mutex`, ...) have no PyPI package and are left to the host.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from emulator.assets import Assets
from emulator.errors import ApiError
from emulator.store import Doc

# conda-forge / defaults names whose PyPI package is called otherwise.
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "py-xgboost": "xgboost",
    "py-xgboost-cpu": "xgboost",
    "py-lightgbm": "lightgbm",
    "pytables": "tables",
    "matplotlib-base": "matplotlib",
    "tensorflow-base": "tensorflow",
    "py-opencv": "opencv-python",
    "pyyaml": "PyYAML",
    "msgpack-python": "msgpack",
}
# conda packages that are the interpreter's or the system's, not Python's: nothing to install.
_BUILD_TOOLS = {"pip", "setuptools", "wheel"}  # every virtual environment has its own
_HOST_PACKAGES = {"python_abi", "ca-certificates", "tzdata"}
_HOST_LIBRARY = re.compile(
    r"^(_.*|lib(gcc|stdcxx|gomp|ffi|zlib|blas|cblas|lapack|openblas|uuid|nsl|sqlite|xcrypt"
    r"|mpdec|ssh2|curl|edit|iconv|lzma|expat|gfortran|jpeg|png|tiff|webp|xml2|uv)\b.*"
    r"|openssl|ncurses|readline|tk|xz|zlib|bzip2|sqlite|ld_impl_.*|mkl|intel-openmp|blas"
    r"|openblas)$"
)
_CONDA_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<rest>.*)$")


class EnvironmentRefused(ValueError):
    """The conda file asks for what the emulator cannot give; the message says what."""


@dataclass(frozen=True)
class EnvironmentSpec:
    """What a deployment's instances need installed: pip requirement strings."""

    requirements: tuple[str, ...]
    skipped: tuple[str, ...] = ()  # conda packages left to the host, said in the build log


def python_version() -> str:
    return ".".join(str(part) for part in sys.version_info[:3])


def read_conda_file(text: str, *, what: str) -> EnvironmentSpec:
    """The pip requirements of a conda file's text; EnvironmentRefused names what is not taken."""
    try:
        doc = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise EnvironmentRefused(f"{what}: the conda file is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise EnvironmentRefused(f"{what}: the conda file must be a mapping with 'dependencies'")
    dependencies = doc.get("dependencies") or []
    if not isinstance(dependencies, list):
        raise EnvironmentRefused(f"{what}: 'dependencies' must be a list, not {dependencies!r}")
    requirements: list[str] = []
    skipped: list[str] = []
    for entry in dependencies:
        if isinstance(entry, dict):
            requirements += _pip_section(entry, what=what)
            continue
        text_entry = str(entry).strip()
        package = _conda_package(text_entry, what=what)
        if package is None:
            skipped.append(text_entry)
        elif package:
            requirements.append(package)
    return EnvironmentSpec(tuple(requirements), tuple(skipped))


def _pip_section(entry: dict[object, object], *, what: str) -> list[str]:
    unknown = [str(k) for k in entry if k != "pip"]
    if unknown:
        raise EnvironmentRefused(
            f"{what}: the conda file's dependency {unknown[0]!r} is not taken (only 'pip:' "
            "lists are)"
        )
    listed = entry.get("pip") or []
    if not isinstance(listed, list):
        raise EnvironmentRefused(f"{what}: 'pip' must be a list, not {listed!r}")
    requirements = []
    for item in listed:
        line = str(item).strip()
        if line.startswith("-"):
            raise EnvironmentRefused(
                f"{what}: the pip option {line!r} is not taken by the emulator (it builds from "
                "PyPI by package names); list the packages themselves"
            )
        if line:
            requirements.append(line)
    return requirements


def _conda_package(spec: str, *, what: str) -> str | None:
    """One conda spec's pip requirement: "" for python (checked) and pip, None for the host's."""
    spec = spec.split("::", 1)[-1].strip()  # a channel prefix: conda-forge::numpy
    match = _CONDA_SPEC.match(spec)
    if match is None:
        raise EnvironmentRefused(f"{what}: {spec!r} is not a conda package spec")
    name, rest = match.group("name"), match.group("rest").strip()
    version = _pip_version(rest, spec=spec, what=what)
    if name.lower() == "python":
        _check_python(version, spec=spec, what=what)
        return ""
    lowered = name.lower()
    if lowered in _BUILD_TOOLS:
        return ""
    if lowered in _HOST_PACKAGES or _HOST_LIBRARY.match(lowered):
        return None
    return CONDA_TO_PYPI.get(lowered, name) + version


def _pip_version(rest: str, *, spec: str, what: str) -> str:
    """conda's `=1.2` (1.2.*), `==1.2.3`, `>=1`, `1.2 build` as a pip specifier."""
    if not rest:
        return ""
    if rest[0] not in "=<>!~":
        rest = "=" + rest.split()[0]  # "numpy 1.26.4 py311h..." (a version and a build)
    if rest.startswith("=") and not rest.startswith("=="):
        version = rest[1:].split("=", 1)[0].strip()  # drop a build string: =1.2.2=py311_0
        rest = f"=={version}" if version.endswith("*") else f"=={version}.*"
    try:
        SpecifierSet(rest)
    except InvalidSpecifier:
        raise EnvironmentRefused(f"{what}: the version in {spec!r} is not understood") from None
    return rest


def _check_python(version: str, *, spec: str, what: str) -> None:
    running = python_version()
    if version and not SpecifierSet(version).contains(running):
        minor = ".".join(running.split(".")[:2])
        raise EnvironmentRefused(
            f"{what}: the conda file asks for {spec!r}, but the emulator's instances run "
            f"Python {running} (its own interpreter; it cannot install another): use "
            f"python={minor} or leave python out"
        )


def environment_of(assets: Assets, ref: object, *, what: str) -> Doc | None:
    """What a deployment's environment needs installed, from its registered conda file.

    None when there is nothing to build: no environment, one with no conda file, or one
    that is not registered here (a curated one): the instances run in the emulator's
    own Python environment then. A conda file the emulator cannot build is refused (400).
    """
    try:
        doc = assets.resolve("environments", ref, what=f"environment of {what}")
    except ApiError as exc:
        if exc.status == 404:
            raise
        return None
    conda = (doc or {}).get("properties", {}).get("condaFile")
    if not conda:
        return None
    try:
        spec = read_conda_file(str(conda), what=f"environment {ref} of {what}")
    except EnvironmentRefused as exc:
        raise ApiError(400, "BadArgument", str(exc)) from None
    return {"id": str(ref), "requirements": list(spec.requirements), "skipped": list(spec.skipped)}
