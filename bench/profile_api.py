"""Where the API stack's time goes: a request loop in-process, timed and profiled.

    uv run python -m bench.profile_api [--requests N] [--endpoint read_stack|write_stack|...]

Same database, seed and settings as bench.api_stack, but no server and no wrk: each
endpoint of the benchmark is requested N times through Django's test client (the full
middleware and URL resolution, no socket), the mean time per request is printed for all
of them, then one endpoint is run under cProfile and its own time is grouped by layer
(django.db, psycopg, rest_framework, redis, ...) followed by the heaviest call paths.
cProfile inflates code with many small calls, so read the shares, not the milliseconds.
"""

import argparse
import collections
import cProfile
import os
import pstats
import secrets
import sys
import time

from bench.api_stack import bench_database_url, endpoints, ensure_database, server_environment


def _layer(filename: str, name: str) -> str:
    if "site-packages/" in filename:
        package = filename.split("site-packages/")[1].split("/")
        return "/".join(package[:2]) if package[0] == "django" else package[0]
    if filename.startswith(("~", "<")):
        return f"builtin {name}"[:50]
    if "/bench/" in filename:
        return "bench (this loop)"
    if "/lib/python3" in filename:
        return "stdlib " + filename.rsplit("/", 1)[-1]
    return "ryorin " + filename.rsplit("/", 2)[-2] + "/" + filename.rsplit("/", 1)[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_api")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--endpoint", default="read_stack")
    args = parser.parse_args(argv)

    database_url = bench_database_url()
    os.environ.update(server_environment(database_url, secrets.token_urlsafe(50)))
    ensure_database(database_url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from bench.seed import analyze, seed

    call_command("migrate", interactive=False, verbosity=0)
    seeded = seed()
    analyze()
    eps = endpoints(seeded)
    if args.endpoint not in eps:
        parser.error(f"--endpoint must be one of {', '.join(eps)}")
    client = Client(HTTP_HOST="127.0.0.1")

    def loop(key: str, n: int) -> None:
        endpoint = eps[key]
        extra = {}
        if "Authorization" in endpoint.headers:
            extra["HTTP_AUTHORIZATION"] = endpoint.headers["Authorization"]
        if "Cookie" in endpoint.headers:
            extra["HTTP_COOKIE"] = endpoint.headers["Cookie"]
        for i in range(n):
            path = endpoint.paths[i % len(endpoint.paths)]
            if endpoint.method == "GET":
                response = client.get(path, **extra)
            else:
                body = endpoint.bodies[(i // len(endpoint.paths)) % len(endpoint.bodies)]
                response = client.generic(
                    endpoint.method, path, body, content_type="application/json", **extra
                )
            if response.status_code >= 300:
                sys.exit(f"{key}: HTTP {response.status_code} {response.content[:300]!r}")

    print(f"in-process, mean of {args.requests} requests (after 20 warm-up requests):")
    for key in eps:
        loop(key, 20)
        started = time.perf_counter()
        loop(key, args.requests)
        elapsed = (time.perf_counter() - started) / args.requests * 1000
        print(f"  {eps[key].label:<26} {elapsed:7.2f} ms")

    profile = cProfile.Profile()
    profile.enable()
    loop(args.endpoint, args.requests)
    profile.disable()
    stats = pstats.Stats(profile)
    layers: collections.Counter[str] = collections.Counter()
    for (filename, _line, name), (_cc, _nc, own, _cum, _callers) in stats.stats.items():
        layers[_layer(filename, name)] += own
    total = sum(layers.values())
    print(f"\n{eps[args.endpoint].label}: own time by layer under cProfile")
    for layer, own in layers.most_common(15):
        print(f"  {own / total * 100:5.1f}%  {layer}")
    print()
    stats.sort_stats("cumulative").print_stats(
        r"accounts/|rest_framework/(views|mixins|generics|pagination|serializers|throttling)"
        r"|core/cache/backends/redis|db/transaction",
        30,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
