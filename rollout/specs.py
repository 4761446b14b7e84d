"""What a new deployment is made of, before anything is sent: parsed from an `az ml`
deployment YAML (`load_deployment_yaml`, with azure-ai-ml's own loader, its relative paths
resolved against the file's folder), or "a new version like this one" (`deployment_like`:
an existing deployment's settings with another model, code folder or instance count).

Either way it is a `NewDeployment` the UI can show without touching SDK entities; deploy.py
sends it. Everything here is pure or reads only local files.
"""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from azure.ai.ml import load_online_deployment
from azure.ai.ml.entities import CodeConfiguration, Model, OnlineDeployment
from azure.ai.ml.exceptions import MlException
from marshmallow.exceptions import ValidationError as SchemaError

from rollout import rules
from rollout.endpoints import asset_label
from rollout.errors import RolloutError, Violation

MAX_YAML_BYTES = 1 << 20


class InvalidDeploymentFile(RolloutError):
    """A deployment YAML that cannot be read or parsed; the message says where and why."""


@dataclass(frozen=True)
class RegisteredModel:
    """A model version already registered in the workspace."""

    name: str
    version: str

    @property
    def reference(self) -> str:
        return f"azureml:{self.name}:{self.version}"


@dataclass(frozen=True)
class LocalModel:
    """A model folder on the machine that runs the dashboard, registered as it is deployed
    (under `name` when given; Azure and the emulator name it from its content otherwise)."""

    path: Path
    name: str | None = None


ModelChoice = RegisteredModel | LocalModel


@dataclass(frozen=True)
class NewDeployment:
    """A deployment about to be created, as the UI shows it; `entity` is what is sent."""

    endpoint: str
    name: str
    model: str
    code: str
    scoring_script: str
    environment: str
    instance_type: str
    instance_count: int
    source: str  # where it came from, in words: a file, or "like 'blue'"
    entity: OnlineDeployment = field(repr=False, compare=False)

    def summary(self) -> dict[str, object]:
        """What the audit log and the confirmation show."""
        return {
            "deployment": self.name,
            "model": self.model,
            "code": self.code,
            "environment": self.environment,
            "instance_type": self.instance_type,
            "instance_count": self.instance_count,
            "live": 0,
            "source": self.source,
        }


def _code_label(code: object) -> str:
    if code is None:
        return "-"
    text = str(code)
    return asset_label(text) if text.startswith(("/subscriptions/", "azureml:")) else text


def _model_label(model: object) -> str:
    if isinstance(model, Model) and model.path is not None:
        return f"{model.name or '(named from its content)'} from {model.path}"
    return asset_label(model)


def _environment_label(environment: object) -> str:
    image = getattr(environment, "image", None)
    if image:
        return str(image)
    return asset_label(environment)


def describe(entity: OnlineDeployment, *, source: str) -> NewDeployment:
    """A deployment entity as the UI shows it."""
    configuration = entity.code_configuration
    return NewDeployment(
        endpoint=str(entity.endpoint_name or ""),
        name=str(entity.name or ""),
        model=_model_label(entity.model),
        code=_code_label(configuration.code if configuration else None),
        scoring_script=str(configuration.scoring_script if configuration else "-"),
        environment=_environment_label(entity.environment),
        instance_type=str(entity.instance_type or "-"),
        instance_count=int(entity.instance_count or 0),
        source=source,
        entity=entity,
    )


def _resolved(base: Path, value: object) -> Path | None:
    """A local path of the YAML, resolved against its folder; None for an asset reference."""
    if value is None:
        return None
    text = str(value)
    if text.startswith(("azureml:", "/subscriptions/", "azureml://", "http://", "https://")):
        return None
    return (base / text).resolve()


def load_deployment_yaml(
    source: Path | str,
    *,
    endpoint: str,
    name: str | None = None,
    relative_to: Path | None = None,
) -> NewDeployment:
    """Parse an `az ml online-deployment` YAML for `endpoint`, under `name` when given.

    `source` is a path on this machine (its relative model and code paths are resolved
    against its folder), or the file's text (uploaded; resolved against `relative_to`,
    default the working directory). Local paths must exist; nothing is sent.
    """
    if isinstance(source, Path):
        where = str(source)
        try:
            size = source.stat().st_size
        except OSError as exc:
            raise InvalidDeploymentFile(f"cannot read {where}: {exc.strerror or exc}") from exc
        if size > MAX_YAML_BYTES:
            raise InvalidDeploymentFile(f"{where} is {size:,} bytes; a deployment YAML is small")
        base = source.resolve().parent
        parse: Callable[[], OnlineDeployment] = lambda: load_online_deployment(str(source))  # noqa: E731
    else:
        where = "the uploaded file"
        base = (relative_to or Path.cwd()).resolve()
        text = source
        parse = lambda: load_online_deployment(  # noqa: E731
            io.StringIO(text), relative_origin=str(base / "uploaded.yml")
        )
    if not base.is_dir():
        raise InvalidDeploymentFile(f"folder {base} does not exist; relative paths need it")
    try:
        entity = parse()
    except (MlException, SchemaError, ValueError, OSError) as exc:
        raise InvalidDeploymentFile(f"{where}: {_load_problem(exc)}") from exc
    if not isinstance(entity, OnlineDeployment):
        raise InvalidDeploymentFile(f"{where} is not an online deployment YAML")
    entity.endpoint_name = endpoint
    if name:
        entity.name = name
    if not entity.name:
        raise InvalidDeploymentFile(f"{where} has no deployment name; give one")
    model = entity.model
    if isinstance(model, Model) and model.path is not None:
        path = _resolved(base, model.path)
        if path is not None:
            if not path.exists():
                raise InvalidDeploymentFile(f"{where}: the model path {path} does not exist")
            model.path = str(path)
    configuration = entity.code_configuration
    if configuration is not None:
        code = _resolved(base, configuration.code)
        if code is not None:
            if not code.is_dir():
                raise InvalidDeploymentFile(f"{where}: the code folder {code} does not exist")
            script = code / str(configuration.scoring_script or "")
            if not script.is_file():
                raise InvalidDeploymentFile(
                    f"{where}: the scoring script {configuration.scoring_script} is not a "
                    f"file in {code}"
                )
            configuration.code = str(code)
    return describe(entity, source=where)


def _load_problem(exc: BaseException) -> str:
    """What azure-ai-ml's loader said, short: a missing local path, or its first words."""
    text = str(getattr(exc, "message", None) or exc)
    missing = re.findall(r"No such file or directory: ([^\"'\n\]]+)", text)
    if missing:
        paths = ", ".join(dict.fromkeys(m.strip() for m in missing))
        return f"{paths} does not exist (relative paths are resolved against the YAML's folder)"
    flat = " ".join(text.split())
    return "azure-ai-ml cannot load it: " + (flat[:400] + "…" if len(flat) > 400 else flat)


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def deployment_like(
    existing: OnlineDeployment,
    *,
    name: str,
    model: ModelChoice | None = None,
    code: Path | None = None,
    instance_count: int | None = None,
    instance_type: str | None = None,
) -> OnlineDeployment:
    """A copy of `existing`'s settings under `name`, with the model, code folder, instance
    count or instance type changed (pure: nothing is read or sent)."""
    entity = copy.deepcopy(existing)
    # Its id and provisioning state come along but are not sent: the REST body has neither.
    entity.name = name
    if isinstance(model, RegisteredModel):
        entity.model = model.reference
    elif isinstance(model, LocalModel):
        # As azure-ai-ml's YAML loader makes a named model without a version: Azure registers
        # it as that name's next version (an unnamed one gets a name from its content).
        entity.model = Model(
            path=str(model.path.resolve()),
            name=model.name or None,
            auto_increment_version=bool(model.name),
        )
    if code is not None:
        script = entity.code_configuration.scoring_script if entity.code_configuration else None
        entity.code_configuration = CodeConfiguration(
            code=str(code.resolve()), scoring_script=script or "score.py"
        )
    if instance_count is not None:
        entity.instance_count = instance_count
    if instance_type:
        entity.instance_type = instance_type
    return entity


def check_like_form(
    endpoint: str,
    existing: Collection[str],
    name: str,
    *,
    model: ModelChoice | None,
    code: Path | None,
    instance_count: int,
) -> list[Violation]:
    """Everything wrong with a "like this one" deployment as chosen, before anything is sent."""
    found = check_new_deployment(endpoint, existing, name)
    found += rules.check_instance_count(endpoint, name, instance_count)
    if isinstance(model, LocalModel) and not model.path.exists():
        found.append(
            Violation("InvalidModel", f"the model folder {model.path} does not exist", name)
        )
    if isinstance(model, LocalModel) and model.name:
        found += [
            Violation("InvalidModel", f"model name {model.name!r}: {v.message}", name)
            for v in _check_asset_name(model.name)
        ]
    if code is not None and not code.is_dir():
        found.append(Violation("InvalidCode", f"the code folder {code} does not exist", name))
    return found


def _check_asset_name(name: str) -> list[Violation]:
    # The emulator's rule for asset names (README), close to Azure's.
    ok = name[:1].isalnum() and all(c.isalnum() or c in "-_." for c in name) and len(name) <= 255
    if ok:
        return []
    return [
        Violation(
            "InvalidModel",
            "start with a letter or digit, then letters, digits, '-', '_' and '.'",
        )
    ]


def check_new_deployment(endpoint: str, existing: Collection[str], name: str) -> list[Violation]:
    """Azure's rules for a new deployment (rules.check_new_deployment), and the name not taken:
    here a deployment is added, never replaced."""
    found = rules.check_new_deployment(endpoint, existing, name)
    if name.lower() in {e.lower() for e in existing}:
        found.append(
            Violation(
                "DeploymentExists",
                f"deployment {name!r} already exists on endpoint {endpoint!r}; choose another "
                "name (a new version is a new deployment)",
                name,
            )
        )
    return found


def model_name(label: str) -> str:
    """'model-1' of a model label 'model-1:3' (as DeploymentView.model has it)."""
    return label.rsplit(":", 1)[0] if ":" in label else label
