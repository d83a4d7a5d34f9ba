"""policy.routes: one per-route view, which both proxies print."""

from __future__ import annotations

from support.nginx import make_profile as nginx_profile
from support.nginx import render_files as nginx_files
from support.traefik import make_profile as traefik_profile
from support.traefik import render_files as traefik_files
from tempo_gen.policy.routes import api_routes, routes_for, strip_regex


def test_the_view_covers_the_table_then_the_api_then_the_frontend() -> None:
    profile = nginx_profile(tempo={"import_max_mb": 900, "media_max_mb": 7}, proxy={"body_max_kb": 256})
    routes = routes_for(profile)
    assert [r.name for r in routes] == ["login", "import", "chunk", "media", "api", "frontend"]
    assert [r.regex for r in routes[:4]] == [r.pattern for r in api_routes(profile.tempo.release)]
    assert [r.priority for r in routes] == sorted((r.priority for r in routes), reverse=True)
    sizes = {r.name: (r.body_max.bytes, r.body_max.nginx, str(r.body_max)) for r in routes}
    assert sizes["import"] == (900 * 1024 * 1024, "900m", "900 MiB")
    assert sizes["media"] == (7 * 1024 * 1024, "7m", "7 MiB")
    assert sizes["frontend"] == (256 * 1024, "256k", "256 KiB")
    # A 512 KiB chunk fits whatever the default body limit; a whole import never does.
    assert sizes["chunk"] == (1024 * 1024, "1024k", "1024 KiB")
    rates = {r.name: r.rate for r in routes}
    assert rates["chunk"] is not None and rates["chunk"].burst == 900 * 2  # every chunk of the largest import
    assert rates["login"] is not None and rates["login"].name == "login"
    assert {r.rate.name for r in routes if r.rate and r.name not in ("login", "chunk")} == {"api"}
    assert [r.name for r in routes if r.streamed] == ["import"]
    assert all(r.strip_prefix == "/api" for r in routes if r.upstream == "api")
    assert strip_regex("/api") == "^/api(/.*)$"


def test_both_proxies_print_every_route_of_the_view() -> None:
    nginx_site = next(text for path, text in nginx_files(nginx_profile()).items() if "sites-available" in path)
    routers = traefik_files(traefik_profile())["proxy/traefik/dynamic/routers.yml"]
    for route in routes_for(nginx_profile()):
        if route.regex:
            assert f'location ~ "{route.regex}"' in nginx_site and f"PathRegexp(`{route.regex}`)" in routers
        else:
            assert f"location {route.prefix} {{" in nginx_site
        assert f"# {route.description}:" in nginx_site or route.body == "default"
        assert f"# {route.description}: " in routers
