"""One pack inside one installation: the pack, its resolved settings and where its state
lives. Every stage takes a :class:`Workspace`.

Settings resolve per field: embedded defaults, then the installation's TOML sections, then
the pack's spec, then the TOML's ``[packs.<name>.<section>]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from driftline.packs import Pack, PackError, discover_packs, load_pack
from driftline.settings import (
    INSTALLATION_WIDE,
    PACK_SECTIONS,
    AlertsSettings,
    GateSettings,
    MonitorSettings,
    RetrainSettings,
    ServingSettings,
    Settings,
    TrainingSettings,
    ValidationSettings,
    build_section,
    load_settings,
)


def resolve_section(settings: Settings, pack: Pack, section: str):
    """The settings section ``section`` as ``pack`` runs with it.

    :raises PackError: the pack's spec sets an unknown or mistyped field, or one that is
        installation-wide.
    """
    spec_values = getattr(pack.spec, section)
    wide = INSTALLATION_WIDE.get(section, set()) & set(spec_values)
    if wide:
        raise PackError(pack.name, pack.spec_path, [(
            f"{section}.{sorted(wide)[0]}", "is installation-wide; set it in driftline's "
                                            "configuration, not in a pack")])
    try:
        build_section(section, spec_values, f"[{section}]")
    except ValueError as exc:
        raise PackError(pack.name, pack.spec_path, [(section, str(exc).removeprefix(
            f"[{section}]: "))]) from None
    values = {**settings.sections.get(section, {}), **spec_values,
              **settings.pack_overrides.get(pack.name, {}).get(section, {})}
    return build_section(section, values, f"pack {pack.name!r} [{section}]")


@dataclass(frozen=True)
class Workspace:
    """A pack in an installation.

    :param settings: installation-wide settings.
    :param pack: the loaded pack.
    """

    settings: Settings
    pack: Pack

    @property
    def name(self) -> str:
        return self.pack.name

    # -- resolved settings -----------------------------------------------------------------
    @cached_property
    def validation(self) -> ValidationSettings:
        return resolve_section(self.settings, self.pack, "validation")

    @cached_property
    def training(self) -> TrainingSettings:
        return resolve_section(self.settings, self.pack, "training")

    @cached_property
    def gate(self) -> GateSettings:
        return resolve_section(self.settings, self.pack, "gate")

    @cached_property
    def monitor(self) -> MonitorSettings:
        return resolve_section(self.settings, self.pack, "monitor")

    @cached_property
    def retrain(self) -> RetrainSettings:
        return resolve_section(self.settings, self.pack, "retrain")

    @cached_property
    def serving(self) -> ServingSettings:
        return resolve_section(self.settings, self.pack, "serving")

    @cached_property
    def alerts(self) -> AlertsSettings:
        return resolve_section(self.settings, self.pack, "alerts")

    def check(self) -> None:
        """Resolve every section now, so a bad value fails at load, not mid-run."""
        for section in PACK_SECTIONS:
            getattr(self, section)

    # -- where its state lives ---------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def model_name(self) -> str:
        """The registry namespace: the pack's name."""
        return self.pack.name

    @property
    def landing_dir(self) -> Path:
        return self.home / "landing" / self.name

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine" / self.name

    @property
    def data_repo(self) -> Path:
        return self.home / "data" / self.name

    @property
    def registry_dir(self) -> Path:
        return self.home / "registry"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports" / self.name

    @property
    def serving_dir(self) -> Path:
        return self.settings.serving_dir / self.name

    @property
    def dvc_remote(self) -> str:
        return self.settings.dvc_remote

    def landing_path(self, start) -> Path:
        return self.landing_dir / self.pack.landing_name(start)


def open_workspace(pack: str | Pack, settings: Settings | None = None) -> Workspace:
    """The workspace of ``pack`` (a name under the packs directory, or a loaded pack).

    :raises PackError: the pack does not exist, is invalid, or sets invalid settings.
    """
    settings = settings or load_settings()
    if isinstance(pack, str):
        directory = settings.packs_dir / pack
        if not (directory / "pack.toml").is_file():
            known = sorted(p.parent.name for p in settings.packs_dir.glob("*/pack.toml"))
            raise PackError(pack, directory, [("", f"no such pack in {settings.packs_dir} "
                                                   f"(packs there: {known})")])
        pack = load_pack(directory, overrides=settings.pack_overrides.get(pack))
    workspace = Workspace(settings, pack)
    workspace.check()
    return workspace


def open_workspaces(settings: Settings) -> tuple[dict[str, Workspace], dict[str, PackError]]:
    """A workspace for every valid pack of the installation, and the broken packs' errors
    (a pack whose spec or settings do not validate never hides the others)."""
    packs, errors = discover_packs(settings.packs_dir, settings.pack_overrides)
    workspaces = {}
    for name, pack in packs.items():
        workspace = Workspace(settings, pack)
        try:
            workspace.check()
        except PackError as exc:
            errors[name] = exc
            continue
        workspaces[name] = workspace
    return workspaces, errors
