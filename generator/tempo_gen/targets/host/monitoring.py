"""monitoring/: fail2ban jails on the proxy's JSON access log, banning into nftables sets, and log retention.

Bans live in their own nftables table (inet tempo_gen_bans), hooked on input
and forward before every other chain (Docker's iptables-nft or legacy rules
and firewall/nftables.conf included): a drop in any base chain is final, so a
banned address reaches neither the host nor a published container port, under
nftables.conf, ufw, or no tempo-gen firewall at all. firewall/apply.sh replaces
table inet tempo_gen only, so loading the firewall keeps every ban; bans.nft
itself refreshes its rules and the never-banned networks and keeps the bans.
"""

from __future__ import annotations

from dataclasses import dataclass

from tempo_gen.bundle.files import RenderedFile
from tempo_gen.models.base import size_bytes
from tempo_gen.models.profile import Profile
from tempo_gen.policy import access_log
from tempo_gen.targets.base import TargetInput
from tempo_gen.targets.host.firewall import Sources

INSTALL_DIR = "/etc/tempo-gen/monitoring"
"""Where install.sh copies bans.nft; fail2ban's action loads it from there."""
TABLE = "inet tempo_gen_bans"
JAILS = ("login", "ratelimit", "scanner")


@dataclass(frozen=True)
class Runtime:
    """Where the rendered files expect things on the host; tests point these at their own folders."""

    log_file: str
    """The access log as the host (fail2ban, logrotate) sees it."""
    install_dir: str = INSTALL_DIR


def runtime_for(profile: Profile) -> Runtime:
    return Runtime(log_file=f"{access_log.host_log_dir(profile)}/{access_log.LOG_FILE}")


def failregexes(profile: Profile) -> dict[str, str]:
    """fail2ban's failregex per jail, for the profile's proxy. The client address is the first value of
    the line after the time (nginx) or the first key (Traefik sorts them); everything a client sends
    (path, user agent) comes later and is JSON-escaped, so it can never pose as another address."""
    login, scanner = access_log.LOGIN_PATH, access_log.SCANNER_PATHS
    if profile.proxy.kind == "traefik":
        start = r'^\{"ClientHost":"<ADDR>",'
        return {
            "login": start + rf'.*"DownstreamStatus":401,.*"RequestPath":"{login}",',
            "ratelimit": start + r'.*"DownstreamStatus":429,',
            "scanner": start + rf'.*"RequestPath":"{scanner}',
        }
    start = r'^\{"time":"[^"]*","client":"<ADDR>","method":"[^"]*",'
    return {
        "login": start + rf'"path":"{login}","status":401,',
        "ratelimit": start + r'"path":"(?:[^"\\]|\\.)*","status":429,',
        "scanner": start + rf'"path":"{scanner}',
    }


def datepattern(profile: Profile) -> str:
    """Where fail2ban finds the request's time (ConfigParser needs %% for %). Only the time itself is
    matched: fail2ban cuts the match out of the line before the failregex sees it."""
    key = "StartUTC" if profile.proxy.kind == "traefik" else "time"
    return f'(?<="{key}":")%%Y-%%m-%%dT%%H:%%M:%%S'


def files_for(target_input: TargetInput, runtime: Runtime | None = None) -> list[RenderedFile]:
    profile = target_input.profile
    if access_log.proxy_log_path(profile) is None:
        return []
    runtime = runtime or runtime_for(profile)
    monitoring = profile.monitoring
    container = profile.proxy.placement == "container"
    prefix = f"tempo-gen-{profile.name}"
    values = {
        "runtime": runtime,
        "prefix": prefix,
        "table": TABLE,
        "never": Sources.of(profile.firewall.admin_cidrs),
        "vpn": profile.firewall.vpn,
        "bans": monitoring.bans,
        "jails": JAILS,
        "failregex": failregexes(profile),
        "datepattern": datepattern(profile),
        "log_dir": access_log.host_log_dir(profile),
        "log_owner": profile.containers.users.proxy if container else 0,
        "max_bytes": size_bytes(monitoring.access_log.max_size),
        "host_nginx": profile.proxy.kind == "nginx" and not container,
    }
    files = [
        target_input.file("monitoring/bans.nft", "host/monitoring/bans.nft.j2", values),
        target_input.file("monitoring/logrotate", "host/monitoring/logrotate.j2", values),
        target_input.file("monitoring/install.sh", "host/monitoring/install.sh.j2", values, mode=0o755),
    ]
    if monitoring.alert:
        files.append(target_input.file("monitoring/alert.sh", "host/monitoring/alert.sh.j2", values, mode=0o755))
    if values["host_nginx"]:
        files.append(target_input.file("monitoring/nginx-utc.conf", "host/monitoring/nginx-utc.conf.j2", values))
    if monitoring.bans.enabled:
        files.append(
            target_input.file(f"monitoring/fail2ban/jail.d/{prefix}.local", "host/monitoring/jail.local.j2", values)
        )
        files.append(
            target_input.file(f"monitoring/fail2ban/action.d/{prefix}.conf", "host/monitoring/action.conf.j2", values)
        )
        for jail in JAILS:
            files.append(
                target_input.file(
                    f"monitoring/fail2ban/filter.d/{prefix}-{jail}.conf",
                    "host/monitoring/filter.conf.j2",
                    {**values, "jail": jail},
                )
            )
    return files
