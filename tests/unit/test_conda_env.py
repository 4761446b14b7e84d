"""Reading a conda file as pip requirements: what is taken, mapped, left to the host, refused."""

from __future__ import annotations

import pytest

from emulator.conda_env import EnvironmentRefused, python_version, read_conda_file


def _read(dependencies: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    spec = read_conda_file(f"dependencies: {dependencies}", what="environment e")
    return spec.requirements, spec.skipped


def test_pip_entries_are_taken_as_they_are_and_pip_itself_is_not_a_package() -> None:
    requirements, skipped = _read('[python=3.11, pip, {pip: ["numpy==2.4.6", "flask>=3"]}]')
    assert requirements == ("numpy==2.4.6", "flask>=3")
    assert skipped == ()


def test_conda_packages_get_their_pypi_names_and_pip_version_forms() -> None:
    requirements, _ = _read(
        '[pytorch>=2, py-xgboost, "conda-forge::numpy=1.26", "scikit-learn=1.2.2=py311h_0",'
        ' "pandas 2.2.3 py311hf", scipy==1.11.4, "matplotlib-base=3.8.*"]'
    )
    assert requirements == (
        "torch>=2",
        "xgboost",
        "numpy==1.26.*",
        "scikit-learn==1.2.2.*",
        "pandas==2.2.3.*",
        "scipy==1.11.4",
        "matplotlib==3.8.*",
    )


def test_system_libraries_are_left_to_the_host_but_python_packages_named_lib_are_not() -> None:
    requirements, skipped = _read("[libgcc-ng, _libgcc_mutex, openssl, librosa, libcst=1.1]")
    assert skipped == ("libgcc-ng", "_libgcc_mutex", "openssl")
    assert requirements == ("librosa", "libcst==1.1.*")


def test_the_emulators_python_is_taken_in_any_form() -> None:
    minor = ".".join(python_version().split(".")[:2])
    for spec in (f"python={minor}", f"python={python_version()}", "python>=3.9", "python"):
        assert _read(f'["{spec}"]') == ((), ())


@pytest.mark.parametrize("spec", ["python=3.8", "python==3.12.1", "python<3.10"])
def test_another_python_is_refused_naming_both(spec: str) -> None:
    with pytest.raises(EnvironmentRefused) as refused:
        _read(f'["{spec}"]')
    message = str(refused.value)
    assert message.startswith("environment e:")
    assert repr(spec) in message and f"Python {python_version()}" in message


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('dependencies: [{pip: ["-r requirements.txt"]}]', "'-r requirements.txt'"),
        ('dependencies: [{pip: ["--index-url https://x"]}]', "--index-url"),
        ("dependencies: [{npm: [left-pad]}]", "'npm'"),
        ("dependencies: numpy", "'dependencies' must be a list"),
        ("dependencies: [numpy=>1]", "numpy=>1"),
        ("[1, 2]", "must be a mapping"),
        ("dependencies: [", "not valid YAML"),
    ],
)
def test_what_cannot_be_built_is_refused_naming_the_part(text: str, named: str) -> None:
    with pytest.raises(EnvironmentRefused, match="environment e") as refused:
        read_conda_file(text, what="environment e")
    assert named in str(refused.value)
