"""Subcommands of the serving side: `publish` (and `publish rollback`), `lookup`, `serve`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date

from scorehouse.cli import registrar
from scorehouse.progress import rows_of
from scorehouse.settings import Settings


@registrar
def _register(sub: argparse._SubParsersAction) -> None:
    pub = sub.add_parser(
        "publish",
        help="load a day's champion predictions into a new Redis generation and flip to it",
        description="Load the champion predictions (and feature vectors) of --date into a new "
        "Redis generation, verify it and flip the pointer. `publish rollback` points readers "
        "back at the previous generation.",
    )
    pub.add_argument("action", nargs="?", choices=["rollback"], help="roll back instead of loading")
    pub.add_argument("--date", type=date.fromisoformat, help="the predictions' ds, YYYY-MM-DD")
    pub.add_argument(
        "--allow-older",
        action="store_true",
        help="publish even if the live generation holds a newer day (readers go back)",
    )
    pub.set_defaults(handler=_publish)

    look = sub.add_parser(
        "lookup", help="print the score of each id as a JSON line (what apps read)"
    )
    look.add_argument("ids", nargs="+", metavar="ID")
    look.add_argument(
        "--no-fallback",
        action="store_true",
        help="answer a miss with serving.default_score instead of scoring it with the champion",
    )
    look.set_defaults(handler=_lookup)

    srv = sub.add_parser("serve", help="run the HTTP lookup service")
    srv.add_argument("--host", help="default: serving.host")
    srv.add_argument("--port", type=int, help="default: serving.port")
    srv.set_defaults(handler=_serve)


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.serving import loader

    if args.action == "rollback":
        info = loader.rollback(settings)
        print(
            f"rolled back: readers now see {info.generation} (ds {info.ds}, model v{info.model_version})"
        )
        return 0
    if args.date is None:
        raise SystemExit("publish: --date is required (or use `publish rollback`)")
    from scorehouse.spark import get_spark

    info = loader.publish_date(
        get_spark(settings, app_name="publish"), settings, args.date, allow_older=args.allow_older
    )
    rows_of(info, "count", "features_count")
    print(
        f"published {info.count} scores and {info.features_count} feature vectors as generation "
        f"{info.generation} (model {info.model_name} v{info.model_version}); "
        f"`redis-cli GET {settings.redis.namespace}:current` names it"
    )
    return 0


def _lookup(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.serving import Client, keys

    # The service's Client: same fallback model, same id rule, so the same answer.
    with Client(settings, fallback=not args.no_fallback) as client:
        try:
            results = client.get_many(args.ids)
        except keys.InvalidEntityId as exc:
            print(f"error: invalid entity id: {exc}", file=sys.stderr)
            return 2
    for result in results:
        print(json.dumps(result.to_dict()))
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from scorehouse.serving.service import serve

    serve(settings, host=args.host, port=args.port)
    return 0
