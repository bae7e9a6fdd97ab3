"""``driftline``: work with dataset packs without Airflow.

::

    driftline pack init SAMPLE_FILE DIR --label COLUMN   draft DIR/pack.toml from a sample
    driftline pack check DIR [FILE]                      validate a spec (and a file against it)
    driftline pack list                                  the packs under $DRIFTLINE_PACKS
    driftline pack replay NAME START END                 drop a pack's history into its landing zone

Exit status: 0 fine, 1 the spec is invalid, 2 the file failed its checks, 3 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from pathlib import Path

from driftline.packs import Pack, PackError, load_pack


def _check_file(pack: Pack, path: Path, out) -> int:
    from driftline.features import build_features
    from driftline.landing import read_landing_file
    from driftline.settings import load_settings
    from driftline.validation import validate_landing_frame
    from driftline.workspace import Workspace

    limits = Workspace(load_settings(packs_dir=pack.directory.parent), pack).validation
    start = _interval_of(pack, path)
    try:
        frame = read_landing_file(pack, path)
    except (FileNotFoundError, ValueError) as exc:
        print(f"{path.name}: FAILED: {exc}", file=out)
        return 2
    result = validate_landing_frame(pack, frame, path.name, limits, start=start)
    for check in result.failures:
        print(f"  {check.describe()}", file=out)
    if not result.passed:
        print(f"{path.name}: FAILED {len(result.failures)} of {len(result.checks)} checks",
              file=out)
        return 2
    features = build_features(pack, frame)
    labels = pack.label(frame)
    print(f"{path.name}: passed {len(result.checks)} checks; {len(frame)} rows, "
          f"{len(features.columns)} features, {int(labels.notna().sum())} labelled rows"
          + ("" if start else " (interval not checked: the name does not match the pattern)"),
          file=out)
    return 0


def _interval_of(pack: Pack, path: Path) -> dt.date | None:
    """The interval start encoded in a landing file's name, if it follows the pattern."""
    pattern = re.escape(pack.spec.landing.pattern).replace(r"\{date\}", r"(\d{4}-\d{2}-\d{2})")
    match = re.fullmatch(pattern, path.name)
    return dt.date.fromisoformat(match[1]) if match else None


def _describe(pack: Pack) -> str:
    return (f"pack {pack.name!r} ({pack.task}, {pack.metric}): {len(pack.spec.columns)} "
            f"columns, {len(pack.numeric_features)} numeric + "
            f"{len(pack.categorical_features)} categorical features, label "
            f"{pack.spec.label.column or pack.spec.label.hook!r}, "
            f"{pack.interval} files {pack.spec.landing.pattern!r}")


def pack_command(args, out=sys.stdout) -> int:
    if args.action == "init":
        from driftline.packs.draft import write_draft

        try:
            target = write_draft(Path(args.sample), Path(args.dir), args.label, task=args.task,
                                 time_column=args.time, interval=args.interval,
                                 timezone=args.timezone)
        except (ValueError, FileExistsError) as exc:
            print(f"driftline pack init: {exc}", file=sys.stderr)
            return 3
        print(f"drafted {target}; review it, then: driftline pack check {args.dir} "
              f"{args.sample}", file=out)
        try:
            load_pack(args.dir)
        except PackError as exc:
            print(f"the draft does not validate yet: {exc}", file=out)
            return 1
        return 0
    if args.action == "check":
        try:
            pack = load_pack(args.dir)
        except PackError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        print(_describe(pack), file=out)
        return _check_file(pack, Path(args.file), out) if args.file else 0
    from driftline.settings import load_settings

    settings = load_settings()
    if args.action == "list":
        from driftline.workspace import open_workspaces

        workspaces, errors = open_workspaces(settings)
        for ws in workspaces.values():
            print(_describe(ws.pack), file=out)
        for error in errors.values():
            print(f"BROKEN {error}", file=out)
        return 1 if errors else 0
    from driftline.landing import replay
    from driftline.workspace import open_workspace

    ws = open_workspace(args.name, settings)
    written = replay(ws, dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end))
    print(f"{len(written)} landing file(s) written to {ws.landing_dir}", file=out)
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="driftline", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack", help="draft, check, list and replay dataset packs")
    actions = pack.add_subparsers(dest="action", required=True)
    init = actions.add_parser("init", help="draft DIR/pack.toml from a sample file")
    init.add_argument("sample")
    init.add_argument("dir", help="the pack directory (its name is the pack's name)")
    init.add_argument("--label", required=True, help="the column the model learns")
    init.add_argument("--task", choices=["binary", "regression"], default=None)
    init.add_argument("--time", default=None, help="the time column (default: inferred)")
    init.add_argument("--interval", choices=["daily", "monthly"], default="daily")
    init.add_argument("--timezone", default="UTC",
                      help="the zone data intervals are cut in (default UTC)")
    check = actions.add_parser("check", help="validate a pack, and a landing file against it")
    check.add_argument("dir")
    check.add_argument("file", nargs="?")
    actions.add_parser("list", help="the packs under $DRIFTLINE_PACKS, and broken ones")
    replay = actions.add_parser("replay", help="drop a pack's [source] history into landing")
    replay.add_argument("name")
    replay.add_argument("start")
    replay.add_argument("end")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return pack_command(args)


if __name__ == "__main__":
    sys.exit(main())
