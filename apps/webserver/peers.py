"""Starting every server the benchmark compares, pinned to given CPUs, and always stopping it.

Each launcher returns a `ServerProcess` whose `url` is ready to serve. Our server and aiohttp say
so on stdout; nginx and Apache are polled until they answer. nginx and Apache run as foreground
(non-daemon) processes from a config written into a temporary folder that also holds their pid,
lock and log files, listen on 127.0.0.1 only, and get as many worker processes as CPUs:
  nginx   `worker_processes k; worker_cpu_affinity auto;`, sendfile, open_file_cache
  Apache  mpm_event with k child processes (`StartServers = ServerLimit = k`), each with
          64 threads (at least the benchmark's connections), keep-alive unlimited
  aiohttp k single-threaded processes on one port (SO_REUSEPORT), process i pinned to CPU i
  ours    `--colors off`, `--colors on --workers k`, or `--ncopy k`, with `--cpus`
Nothing here relies on systemd or on the system's own nginx/Apache configuration.
"""
from __future__ import annotations

import http.client
import os
import pwd
import grp
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .pinning import pinned

REPO = Path(__file__).resolve().parents[2]
APACHE_MODULES = Path("/usr/lib/apache2/modules")
NGINX_MIME = Path("/etc/nginx/mime.types")


class ServerProcess:
    """A running server: its URL, its main process and the folder of its config and logs."""

    def __init__(self, name: str, procs: list[subprocess.Popen], url: str,
                 workdir: str | None = None, stop_signal: int = signal.SIGTERM):
        self.name, self.procs, self.url, self.workdir = name, procs, url, workdir
        self.stop_signal = stop_signal

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.send_signal(self.stop_signal)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _start_announcing(name: str, cmd: list[str], cpus, env=None) -> tuple[subprocess.Popen, str]:
    """Start a program that prints 'serving URL ...' when ready; return it and the URL."""
    proc = subprocess.Popen(pinned(cmd, cpus), stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env=env)
    line = proc.stdout.readline()
    if not line.startswith("serving "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{name} did not start: {' '.join(cmd)} printed {line!r}")
    return proc, line.split()[1]


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def wait_until_serving(url: str, procs, name: str, timeout_s: float = 15.0) -> None:
    """Poll until GET /index.html answers 200 (for servers that do not announce readiness)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode} while starting")
        try:
            conn = _connection(url, timeout=2)
            conn.request("GET", "/index.html")
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer on {url} within {timeout_s}s")
        time.sleep(0.05)


def check_serves(url: str, root: str | Path, paths: list[str]) -> None:
    """GET each of `paths` and compare the reply with the file under `root`: RuntimeError if it is
    not a 200 with the file's bytes. wrk counts every reply under 400 as served, whatever its
    body, so a server that redirected, or answered 200 with other bytes, would be measured as if
    it served the files. (A server that does so only under load is not caught.)"""
    conn = _connection(url, timeout=10)
    try:
        for path in paths:
            conn.request("GET", path)
            reply = conn.getresponse()
            body, want = reply.read(), (Path(root) / path.lstrip("/")).read_bytes()
            if reply.status != 200 or body != want:
                raise RuntimeError(f"{url}{path} answered {reply.status} {reply.reason} with "
                                   f"{len(body)} bytes, not 200 with the file's {len(want)}")
    finally:
        conn.close()


# ---- our server -------------------------------------------------------------------------------
def start_colorloop(mode: str, k: int, cpus: list[int], root: str, *, python: str | None = None,
                    extra: list[str] = ()) -> ServerProcess:
    """mode: 'off' (one thread), 'on' (k workers, pinned), 'ncopy' (k processes)."""
    cmd = [python or sys.executable, "-m", "apps.webserver", "--root", root, "--port", "0",
           "--cpus", ",".join(map(str, cpus))]
    if mode == "off":
        cmd += ["--colors", "off"]
    elif mode == "on":
        cmd += ["--colors", "on", "--workers", str(k)]
    elif mode == "ncopy":
        cmd += ["--ncopy", str(k)]
    else:
        raise ValueError(f"unknown mode {mode!r}")
    proc, url = _start_announcing(f"colorloop {mode}", cmd + list(extra), None)
    return ServerProcess(f"colorloop-{mode}", [proc], url)


# ---- aiohttp ----------------------------------------------------------------------------------
def start_aiohttp(k: int, cpus: list[int], root: str) -> ServerProcess:
    from .ncopy import reserve_port
    holder = reserve_port("127.0.0.1", 0)
    port = holder.getsockname()[1]
    procs = []
    try:
        for i in range(k):
            cmd = [sys.executable, "-m", "apps.webserver.aiohttp_static", "--root", root,
                   "--port", str(port), "--reuse-port"]
            proc, url = _start_announcing("aiohttp", cmd, [cpus[i % len(cpus)]])
            procs.append(proc)
    except BaseException:
        ServerProcess("aiohttp", procs, "").stop()
        raise
    finally:
        holder.close()
    return ServerProcess("aiohttp", procs, url)


# ---- nginx ------------------------------------------------------------------------------------
def nginx_config(workdir: str, root: str, port: int, workers: int) -> str:
    user = ""
    if os.geteuid() == 0:      # workers would otherwise become 'nobody', who cannot read workdir
        user = f"user {pwd.getpwuid(0).pw_name} {grp.getgrgid(0).gr_name};"
    mime = f"include {NGINX_MIME};" if NGINX_MIME.exists() else ""
    return f"""
{user}
worker_processes {workers};
worker_cpu_affinity auto;
daemon off;
master_process on;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    {mime}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    open_file_cache max=10000 inactive=60s;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {root};
    }}
}}
"""


def start_nginx(k: int, cpus: list[int], root: str) -> ServerProcess:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    workdir = tempfile.mkdtemp(prefix="colorloop-nginx-")
    port = free_port()
    conf = Path(workdir) / "nginx.conf"
    conf.write_text(nginx_config(workdir, root, port, k))
    proc = subprocess.Popen(
        pinned([binary, "-c", str(conf), "-p", workdir, "-e", f"{workdir}/error.log"], cpus),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = ServerProcess("nginx", [proc], f"http://127.0.0.1:{port}/", workdir, signal.SIGQUIT)
    try:
        wait_until_serving(server.url, [proc], "nginx")
    except BaseException:
        err = _log_tail(Path(workdir) / "error.log")
        server.stop()
        raise RuntimeError(f"nginx failed to start: {err}")
    return server


# ---- Apache -----------------------------------------------------------------------------------
def apache_config(workdir: str, root: str, port: int, processes: int) -> str:
    user = ""
    if os.geteuid() == 0:      # Apache refuses to serve as root; www-data must read `root`
        user = "User www-data\nGroup www-data"
    threads = 64
    return f"""
ServerRoot {workdir}
LoadModule mpm_event_module {APACHE_MODULES}/mod_mpm_event.so
LoadModule authz_core_module {APACHE_MODULES}/mod_authz_core.so
LoadModule mime_module {APACHE_MODULES}/mod_mime.so
LoadModule dir_module {APACHE_MODULES}/mod_dir.so
{user}
ServerName localhost
Listen 127.0.0.1:{port}
PidFile {workdir}/apache.pid
DefaultRuntimeDir {workdir}
Mutex file:{workdir} default
ErrorLog {workdir}/error.log
LogLevel warn
TypesConfig {'/etc/mime.types' if Path('/etc/mime.types').exists() else '/dev/null'}
StartServers {processes}
ServerLimit {processes}
ThreadsPerChild {threads}
ThreadLimit {threads}
MaxRequestWorkers {processes * threads}
MinSpareThreads 1
MaxSpareThreads {processes * threads}
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 60
EnableSendfile On
DocumentRoot {root}
<Directory />
    Require all denied
    AllowOverride None
</Directory>
<Directory {root}>
    Require all granted
    Options None
</Directory>
DirectoryIndex index.html
"""


def start_apache(k: int, cpus: list[int], root: str) -> ServerProcess:
    binary = shutil.which("apache2") or "/usr/sbin/apache2"
    workdir = tempfile.mkdtemp(prefix="colorloop-apache-")
    os.chmod(workdir, 0o755)
    port = free_port()
    conf = Path(workdir) / "httpd.conf"
    conf.write_text(apache_config(workdir, root, port, k))
    proc = subprocess.Popen(pinned([binary, "-f", str(conf), "-DFOREGROUND"], cpus),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # SIGWINCH is Apache's graceful stop; SIGTERM stops at once, which is what we want here.
    server = ServerProcess("apache", [proc], f"http://127.0.0.1:{port}/", workdir, signal.SIGTERM)
    try:
        wait_until_serving(server.url, [proc], "apache")
    except BaseException:
        err = _log_tail(Path(workdir) / "error.log")
        server.stop()
        raise RuntimeError(f"apache failed to start: {err}")
    return server


def _log_tail(path: Path) -> str:
    try:
        return path.read_text()[-1500:]
    except OSError:
        return "(no log)"


def start(server: str, mode: str, k: int, cpus: list[int], root: str) -> ServerProcess:
    if server == "colorloop":
        return start_colorloop(mode, k, cpus, root)
    if server == "nginx":
        return start_nginx(k, cpus, root)
    if server == "apache":
        return start_apache(k, cpus, root)
    if server == "aiohttp":
        return start_aiohttp(k, cpus, root)
    raise ValueError(f"unknown server {server!r}")
