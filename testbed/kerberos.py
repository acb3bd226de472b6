"""A real MIT Kerberos realm and an Apache SPNEGO front, on loopback, for the tests
of Kerberos (SPNEGO) authentication.

:class:`KerberosRealm` is a realm of its own in a temporary directory: its
``krb5.conf`` and ``kdc.conf``, its database (``kdb5_util create -s``, a random
master password), its principals and their keytabs (``kadmin.local``), and
``krb5kdc -n`` (in the foreground, a process group of its own) listening on
127.0.0.1 on one free port, UDP and TCP. Hostnames are taken as written: the
service principal is ``HTTP/localhost@REALM`` and ``rdns``,
``dns_canonicalize_hostname`` and DNS lookups of KDCs and realms are off, so
nothing here asks a resolver for more than ``localhost``. ``clockskew`` is one
second (instead of five minutes), so that an expired ticket is refused by the
KDC and by the acceptor as soon as it has expired. Clients (and the front) find
the realm through :attr:`KerberosRealm.env` (``KRB5_CONFIG``, ``KRB5_KDC_PROFILE``).

What makes a failure testable:

- :meth:`KerberosRealm.rekey` gives a principal a new key (a new key version):
  every keytab exported before holds the old key (a wrong keytab, the kvno
  mismatch of a key rotated behind the monitor's back);
- ``add_principal(..., maxlife=N)`` caps the tickets of a principal at ``N``
  seconds, and :meth:`KerberosRealm.kinit` puts one in a ticket cache of its own
  (a ticket cache that expires);
- :meth:`KerberosRealm.expire_password` makes a principal's password (its keys)
  expired at the KDC;
- :meth:`KerberosRealm.stop_kdc` / :meth:`KerberosRealm.start_kdc`: an
  unreachable KDC, on the same port; :meth:`KerberosRealm.unresponsive_kdc`: a
  hung one (its port open, no answer).

:class:`SpnegoFront` is a real Apache (``apache2 -f <conf> -DFOREGROUND``, its own
ServerRoot, PidFile and ErrorLog in a temporary directory, on a free 127.0.0.1
port) with ``mod_auth_gssapi`` (``AuthType GSSAPI``, ``GssapiAllowedMech krb5``,
the service keytab through ``GssapiCredStore keytab:``, ``Require valid-user``) as a
reverse proxy (``mod_proxy``, ``mod_proxy_http``) in front of a loopback backend:
an unauthenticated request gets ``401`` with ``WWW-Authenticate: Negotiate``, an
authenticated one the backend's answer, with the principal Apache authenticated
in the response header ``X-Authenticated-As`` (``mod_headers``). Started as
root, its workers run as ``nobody``/``nogroup`` with a copy of the service
keytab only they can read.

Debian packages (``scripts/install-test-deps`` installs them): ``krb5-kdc``
(krb5kdc, kdb5_util), ``krb5-admin-server`` (kadmin.local), ``krb5-user`` (kinit,
klist), ``apache2-bin`` (``/usr/sbin/apache2`` and the modules in
``/usr/lib/apache2/modules``: mpm_event, authn_core, authz_core, authz_user, headers, proxy,
proxy_http; not the ``apache2`` package, whose service would listen on port 80)
and ``libapache2-mod-auth-gssapi`` (mod_auth_gssapi).
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from .procs import free_port, stop_process_group

SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
# module name -> file in APACHE_MODULES, in load order
_APACHE_LOAD = {
    "mpm_event_module": "mod_mpm_event.so",
    "authn_core_module": "mod_authn_core.so",
    "authz_core_module": "mod_authz_core.so",
    "authz_user_module": "mod_authz_user.so",
    "headers_module": "mod_headers.so",
    "proxy_module": "mod_proxy.so",
    "proxy_http_module": "mod_proxy_http.so",
    "auth_gssapi_module": "mod_auth_gssapi.so",
}
TOOLS = ("krb5kdc", "kdb5_util", "kadmin.local", "kinit", "klist", "apache2")


def _which(tool: str) -> Optional[str]:
    return shutil.which(tool, path=SBIN_PATH)


def _tool(tool: str) -> str:
    """The path of ``tool`` (in the sbin directories too, which a user's PATH may lack)."""
    return _which(tool) or tool


def missing() -> List[str]:
    """What this module needs and cannot find here: tools and Apache modules (empty when all is here)."""
    out = [t for t in TOOLS if _which(t) is None]
    out += [f for f in _APACHE_LOAD.values() if not (APACHE_MODULES / f).is_file()]
    return out


def _free_udp_tcp_port() -> int:
    """A port free on 127.0.0.1 for TCP and for UDP a moment ago (the KDC listens on both)."""
    for _ in range(100):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for both TCP and UDP on 127.0.0.1")


def _start_listening(argv: List[str], env: Dict[str, str], out: Path, port: int, logs: List[Path],
                     timeout: float) -> subprocess.Popen:
    """``argv`` started in a process group of its own (its output appended to ``out``), once it
    accepts TCP connections on 127.0.0.1:``port``; stopped, and the end of ``out`` and of
    ``logs`` raised, if it exits or does not listen within ``timeout`` seconds."""
    what = Path(argv[0]).name
    with open(out, "ab") as logf:
        proc = subprocess.Popen(argv, env=env, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            stop_process_group(proc)
            raise RuntimeError(f"{what} exited with {proc.returncode}: {_tail([out] + logs)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return proc
        except OSError:
            time.sleep(0.05)
    stop_process_group(proc)
    raise RuntimeError(f"{what} not listening on 127.0.0.1:{port} within {timeout}s: {_tail([out] + logs)}")


def _tail(logs: List[Path]) -> str:
    """The end of each log that exists."""
    return " | ".join(p.read_text(errors="replace")[-2000:] for p in logs if p.is_file()) or "(no log)"


class KerberosRealm:
    """A realm with its KDC on loopback; ``start()`` creates it with a service principal
    ``HTTP/<service_host>`` (keytab :attr:`service_keytab`) and a client principal
    ``monitor`` (keytab :attr:`client_keytab`)."""

    def __init__(self, workdir: Path, realm: str = "SPARKWATCH.TEST", service_host: str = "localhost"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.realm = realm
        self.service_host = service_host
        self.port = _free_udp_tcp_port()
        self.krb5_conf = self.workdir / "krb5.conf"
        self.kdc_conf = self.workdir / "kdc.conf"
        self.kdc_log = self.workdir / "kdc.log"
        self.keytabs = self.workdir / "keytabs"
        self.keytabs.mkdir(exist_ok=True)
        self.proc: Optional[subprocess.Popen] = None
        self.krb5_conf.write_text(
            "[libdefaults]\n"
            f"    default_realm = {realm}\n"
            "    dns_lookup_kdc = false\n"
            "    dns_lookup_realm = false\n"
            "    dns_canonicalize_hostname = false\n"
            "    rdns = false\n"
            "    ignore_acceptor_hostname = true\n"
            "    clockskew = 1\n"
            "    forwardable = false\n"
            "    permitted_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96\n"
            "[realms]\n"
            f"    {realm} = {{\n"
            f"        kdc = 127.0.0.1:{self.port}\n"
            "    }\n"
            "[domain_realm]\n"
            f"    {service_host} = {realm}\n"
        )
        self.kdc_conf.write_text(
            "[kdcdefaults]\n"
            f"    kdc_listen = 127.0.0.1:{self.port}\n"
            f"    kdc_tcp_listen = 127.0.0.1:{self.port}\n"
            "[realms]\n"
            f"    {realm} = {{\n"
            f"        database_name = {self.workdir / 'db' / 'principal'}\n"
            f"        key_stash_file = {self.workdir / 'db' / 'stash'}\n"
            f"        acl_file = {self.workdir / 'kadm5.acl'}\n"
            "        max_life = 10h\n"
            "        max_renewable_life = 0\n"
            "        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n"
            "        default_principal_flags = +preauth\n"
            "    }\n"
            "[logging]\n"
            f"    kdc = FILE:{self.kdc_log}\n"
            f"    admin_server = FILE:{self.workdir / 'kadmin.log'}\n"
        )
        (self.workdir / "kadm5.acl").write_text("")
        (self.workdir / "db").mkdir(exist_ok=True)
        self.service_principal = self.principal(f"HTTP/{service_host}")
        self.client_principal = self.principal("monitor")
        self.service_keytab = self.keytabs / "http.keytab"
        self.client_keytab = self.keytabs / "monitor.keytab"

    @property
    def env(self) -> Dict[str, str]:
        """What a client (or a server) of this realm needs in its environment."""
        return {"KRB5_CONFIG": str(self.krb5_conf), "KRB5_KDC_PROFILE": str(self.kdc_conf)}

    def _env(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KRB5")}
        env.update(self.env, PATH=SBIN_PATH)
        return env

    def _run(self, argv: List[str], what: str) -> str:
        r = subprocess.run(argv, env=self._env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"{what}: {Path(argv[0]).name} exited with {r.returncode}: "
                               f"{(r.stderr or r.stdout)[-2000:]}")
        return r.stdout

    def principal(self, name: str) -> str:
        """``name@REALM`` (``name`` itself if it names a realm)."""
        return name if "@" in name else f"{name}@{self.realm}"

    def kadmin(self, query: str) -> str:
        """``kadmin.local -q query`` on this realm's database (no KDC needed); its output.
        Raises on a failed query (kadmin.local says so on stderr, and exits 0)."""
        r = subprocess.run([_tool("kadmin.local"), "-r", self.realm, "-q", query],
                           env=self._env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        err = "\n".join(line for line in r.stderr.splitlines()
                        if not line.startswith(("Authenticating as", "No policy specified")))
        if r.returncode != 0 or err.strip():
            raise RuntimeError(f"kadmin.local {query!r}: {err or r.stdout}"[-2000:])
        return r.stdout

    def create(self) -> "KerberosRealm":
        """The database (random master password, stashed), the service and the client principal, their keytabs."""
        self._run([_tool("kdb5_util"), "-r", self.realm, "create", "-s", "-P", secrets.token_hex(24)],
                  "creating the realm's database")
        self.add_principal(self.service_principal, keytab=self.service_keytab)
        self.add_principal(self.client_principal, keytab=self.client_keytab)
        return self

    def add_principal(self, name: str, keytab: Optional[Path] = None, maxlife: Optional[int] = None) -> Path:
        """A principal with a random key (``name`` without a realm is in this one), and a keytab
        holding it (``keytab``, or ``keytabs/<name>.keytab``): returns the keytab's path."""
        name = self.principal(name)
        life = f' -maxlife "{maxlife} seconds"' if maxlife is not None else ""
        self.kadmin(f"addprinc -randkey{life} {name}")
        return self.export_keytab(name, keytab)

    def export_keytab(self, name: str, keytab: Optional[Path] = None) -> Path:
        """The principal's current keys into ``keytab`` (its key version unchanged)."""
        name = self.principal(name)
        if keytab is None:
            keytab = self.keytabs / (name.split("@")[0].replace("/", "_") + ".keytab")
        self.kadmin(f"ktadd -k {keytab} -norandkey {name}")
        return Path(keytab)

    def rekey(self, name: str) -> None:
        """A new random key (and key version) for the principal: keytabs exported before are now wrong."""
        name = self.principal(name)
        self.kadmin(f"cpw -randkey {name}")

    def expire_password(self, name: str) -> None:
        """The principal's password (its keys) expired at the KDC (since 2000: "now" would
        only be past from the next second on)."""
        name = self.principal(name)
        self.kadmin(f'modprinc -pwexpire "2000-01-01 00:00:00 UTC" {name}')

    def kinit(self, name: str, keytab: Path, ccache: Path) -> Path:
        """A ticket for ``name`` from ``keytab`` into the ticket cache file ``ccache`` (kinit -k):
        returns ``ccache``. The ticket lives as long as the principal's maxlife allows."""
        name = self.principal(name)
        self._run([_tool("kinit"), "-k", "-t", str(keytab), "-c", f"FILE:{ccache}", name],
                  f"kinit {name}")
        return Path(ccache)

    def start_kdc(self, timeout: float = 30) -> "KerberosRealm":
        """``krb5kdc -n``, a process group of its own; returns once it accepts TCP connections."""
        assert self.proc is None
        self.proc = _start_listening([_tool("krb5kdc"), "-n", "-r", self.realm], self._env(),
                                     self.workdir / "krb5kdc.out", self.port, [self.kdc_log], timeout)
        return self

    def stop_kdc(self) -> None:
        p, self.proc = self.proc, None
        if p is not None:
            stop_process_group(p)

    @contextmanager
    def unresponsive_kdc(self) -> Iterator[None]:
        """A hung KDC: krb5kdc stopped, its port held by sockets that never answer (UDP bound,
        TCP listening: connections are accepted by the kernel, never answered); krb5kdc is
        started again after, on the same port."""
        self.stop_kdc()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            u.bind(("127.0.0.1", self.port))
            t.bind(("127.0.0.1", self.port))
            t.listen(64)
            yield
        self.start_kdc()

    def start(self) -> "KerberosRealm":
        return self.create().start_kdc()


@contextmanager
def kerberos_realm(workdir: Optional[Path] = None, **kw) -> Iterator[KerberosRealm]:
    """A started :class:`KerberosRealm` (in ``workdir``, or a temporary directory removed after);
    its KDC is stopped when the context ends."""
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sw-krb5-")))
        realm = KerberosRealm(workdir, **kw)
        stack.callback(realm.stop_kdc)
        yield realm.start()


@contextmanager
def realm_of_this_process(workdir: Optional[Path] = None, **kw) -> Iterator[KerberosRealm]:
    """A started :class:`KerberosRealm` that this process's libkrb5 uses (an in-process
    exporter's, requests_gssapi's): ``KRB5_CONFIG`` and ``KRB5_KDC_PROFILE`` set and
    ``KRB5CCNAME`` unset in ``os.environ`` while the context lasts, restored after."""
    saved = {k: os.environ.get(k) for k in ("KRB5_CONFIG", "KRB5_KDC_PROFILE", "KRB5CCNAME")}
    try:
        with kerberos_realm(workdir, **kw) as realm:
            os.environ.pop("KRB5CCNAME", None)
            os.environ.update(realm.env)
            yield realm
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class SpnegoFront:
    """Apache with mod_auth_gssapi in front of ``backend`` (a loopback URL), at :attr:`url`
    (``http://localhost:<port>``: the host of the service principal)."""

    def __init__(self, realm: KerberosRealm, backend: str, workdir: Path):
        self.realm = realm
        self.backend = backend.rstrip("/")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://{realm.service_host}:{self.port}"
        self.conf = self.workdir / "httpd.conf"
        self.error_log = self.workdir / "error.log"
        self.proc: Optional[subprocess.Popen] = None
        # what the workers read and write, in a directory of its own that they can reach (``workdir``
        # may be in one they cannot, pytest's is): the realm's files are its creator's alone
        self.shared = Path(tempfile.mkdtemp(prefix="sw-spnego-"))
        self.shared.chmod(0o711)
        self.keytab = self.shared / "http.keytab"
        shutil.copyfile(realm.service_keytab, self.keytab)
        self.keytab.chmod(0o400)
        self.krb5_conf = self.shared / "krb5.conf"
        shutil.copyfile(realm.krb5_conf, self.krb5_conf)
        self.krb5_conf.chmod(0o644)
        self.rcache = self.shared / "rcache"  # the acceptor's replay cache
        self.rcache.mkdir(mode=0o700)
        user = ""
        if os.geteuid() == 0:  # the workers drop to nobody: the keytab is theirs alone
            pw = pwd.getpwnam("nobody")
            for p in (self.keytab, self.rcache):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            user = f"User nobody\nGroup {grp.getgrgid(pw.pw_gid).gr_name}\n"
        loads = "".join(f"LoadModule {name} {APACHE_MODULES / f}\n" for name, f in _APACHE_LOAD.items())
        self.conf.write_text(
            f"ServerRoot {self.workdir}\n"
            f"DefaultRuntimeDir {self.workdir}\n"
            f"PidFile {self.workdir / 'httpd.pid'}\n"
            f"ErrorLog {self.error_log}\n"
            "LogLevel warn auth_gssapi:debug\n"
            f"{loads}{user}"
            f"Listen 127.0.0.1:{self.port}\n"
            f"ServerName {realm.service_host}\n"
            "StartServers 1\nServerLimit 1\nThreadsPerChild 32\nMaxRequestWorkers 32\n"
            "MinSpareThreads 1\nMaxSpareThreads 64\n"
            "Timeout 30\n"
            "<Location />\n"
            "    AuthType GSSAPI\n"
            '    AuthName "sparkwatch testbed"\n'
            f"    GssapiCredStore keytab:{self.keytab}\n"
            "    GssapiAllowedMech krb5\n"
            "    GssapiBasicAuth Off\n"
            "    Require valid-user\n"
            '    Header always set X-Authenticated-As "expr=%{REMOTE_USER}"\n'
            f"    ProxyPass {self.backend}/\n"
            f"    ProxyPassReverse {self.backend}/\n"
            "</Location>\n"
        )

    def start(self, timeout: float = 30) -> "SpnegoFront":
        assert self.proc is None
        env = dict(self.realm._env(), KRB5_CONFIG=str(self.krb5_conf), KRB5RCACHEDIR=str(self.rcache),
                   KRB5_KTNAME=f"FILE:{self.keytab}")
        env.pop("KRB5_KDC_PROFILE")
        self.proc = _start_listening(
            [_tool("apache2"), "-d", str(self.workdir), "-f", str(self.conf), "-DFOREGROUND"], env,
            self.workdir / "apache.out", self.port, [self.error_log], timeout)
        return self

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is not None:
            stop_process_group(p)
        shutil.rmtree(self.shared, ignore_errors=True)


@contextmanager
def spnego_front(realm: KerberosRealm, backend: str, workdir: Optional[Path] = None) -> Iterator[SpnegoFront]:
    """A started :class:`SpnegoFront`; Apache is stopped when the context ends."""
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sw-spnego-")))
        front = SpnegoFront(realm, backend, workdir)
        stack.callback(front.stop)
        yield front.start()
