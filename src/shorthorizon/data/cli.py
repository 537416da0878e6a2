"""``shorthorizon data list`` and ``shorthorizon data download NAME``."""

from __future__ import annotations

import argparse
from pathlib import Path

from shorthorizon.data.fetch import download
from shorthorizon.data.registry import SPECS
from shorthorizon.data.store import dataset_status, obtaining_data_help, search_roots


def register(subparsers) -> None:
    """Add the ``data`` command to the top-level parser."""
    p = subparsers.add_parser("data", help="list, verify and download datasets", epilog=obtaining_data_help(),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="data_command", required=True)
    p_list = sub.add_parser("list", help="show every known dataset, where it is and whether it verified")
    p_get = sub.add_parser("download", help="fetch a dataset's official files into the cache")
    p_get.add_argument("name", choices=list(SPECS))
    for q in (p_list, p_get):
        q.add_argument("--data-dir", type=Path, default=None,
                       help="folder searched first (download target: DIR/<name>/)")
    p_list.set_defaults(handler=_list)
    p_get.set_defaults(handler=_download)


def _list(args: argparse.Namespace) -> int:
    print("searched: " + ", ".join(str(r) for r in search_roots(args.data_dir)))
    for name in SPECS:
        status = dataset_status(name, args.data_dir)
        where = status.location.folder if status.location else "-"
        state = "verified" if status.verified else status.problem
        print(f"{name:<14} {str(where):<40} {state}")
    return 0


def _download(args: argparse.Namespace) -> int:
    folder = download(args.name, args.data_dir)
    print(f"{args.name}: downloaded and verified in {folder}")
    return 0
