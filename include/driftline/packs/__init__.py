"""Dataset packs: a team's data, label, features and task, declared in one spec file.

See :mod:`driftline.packs.spec` for the fields and :mod:`driftline.packs.pack` for what
every stage derives from them.
"""

from driftline.packs.pack import Pack, PackError, discover_packs, load_pack

__all__ = ["Pack", "PackError", "discover_packs", "load_pack"]
