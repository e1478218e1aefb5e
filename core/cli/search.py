"""``dockyard search``: ``docker search``, the daemon asking a registry's search API
(``GET /images/search``), its answer as docker's table: descriptions cut to 45
characters unless ``--no-trunc``, ``[OK]`` for official and automated images.
Credentials for the term's registry go along, as docker sends them.
"""

from dockyard.cli import output

SEARCH_FORMAT = "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}\t{{.IsAutomated}}"
SEARCH_HEADERS = {"Name": "NAME", "Description": "DESCRIPTION", "StarCount": "STARS", "IsOfficial": "OFFICIAL",
                  "IsAutomated": "AUTOMATED"}
DESCRIPTION_WIDTH = 45


def register(sub):
    p = sub.add_parser("search", help="Search the Docker Hub (or a registry) for images", allow_abbrev=False)
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions provided")
    p.add_argument("--format", help="Pretty-print search using a Go template")
    p.add_argument("--limit", type=int, default=25, help="Max number of search results (default 25)")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("term", metavar="TERM")
    p.set_defaults(func=cmd_search)


def records(results, trunc=True):
    """The rows docker's search formatter shows."""
    for r in results:
        description = " ".join((r.get("description") or "").split("\n"))
        yield {"Name": r.get("name", ""), "StarCount": str(r.get("star_count", 0)),
               "Description": output.ellipsis(description, DESCRIPTION_WIDTH) if trunc else description,
               "IsOfficial": "[OK]" if r.get("is_official") else "",
               "IsAutomated": "[OK]" if r.get("is_automated") else ""}


def cmd_search(ctx, args):
    import json

    from dockyard.cli.references import registry_of
    from dockyard.cli.registry import credentials
    from dockyard.client import APIError
    from dockyard.client.registry import encode_auth

    try:
        filters = output.parse_filters(args.filter)
    except ValueError as exc:
        output.error(f"Error: {exc}")
        return 1
    host = registry_of(args.term)
    params = {"term": args.term, "limit": args.limit or None, "filters": json.dumps(filters) if filters else None}
    try:
        results = ctx.client.request("GET", "/images/search", params,
                                     headers={"X-Registry-Auth": encode_auth(credentials(host))})
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    return output.print_rows(args.format or SEARCH_FORMAT, records(results or [], trunc=not args.no_trunc),
                             SEARCH_HEADERS)
