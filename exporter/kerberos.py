"""Kerberos (SPNEGO, ``WWW-Authenticate: Negotiate``) for the HTTP requests to a
target: a ``requests`` auth object from a principal and its keytab, or from a
ticket cache kept fresh by something else (kinit, k5start, sssd).

    from sparkwatch.kerberos import spnego_auth
    auth = spnego_auth(principal="monitor@EXAMPLE.COM", keytab="/etc/sparkwatch/monitor.keytab")
    session.auth = auth            # only on the session of the target's own origin
    auth = spnego_auth(ccache="/tmp/krb5cc_sparkwatch")       # the cache's default principal

It needs the ``kerberos`` extra (``pip install 'sparkwatch[kerberos]'``):
``requests-gssapi``, on ``gssapi`` (MIT Kerberos' GSSAPI; built from source, with
``libkrb5-dev`` and a C compiler). Importing this module does not need them;
:func:`spnego_auth` says so if they are missing.

What it does, and what it does not:

* **No process-wide state per target.** A keytab's tickets are kept in a
  ``MEMORY:`` ticket cache of this process named after the (principal, keytab)
  pair, through GSSAPI's credential store extension (``client_keytab``,
  ``ccache``): no ``KRB5CCNAME`` is set, no kinit runs, no file is written, and
  two targets with two principals do not see each other's tickets. The tickets
  are fetched from the KDC at the first request and again when half their
  lifetime is over (MIT's refresh of ``client_keytab`` credentials); a rotated
  keytab file is read then. The realm configuration is the process's own
  (``/etc/krb5.conf``, or ``KRB5_CONFIG`` in the exporter's environment): which
  KDC serves which realm is not a per-target setting.
* **Mutual authentication.** ``mutual="optional"`` (the default): the server's
  answer token, when it sends one, must prove that the server holds the
  service's key, or the request fails; an answer without one is accepted (Hadoop's
  authentication filter answers later requests on its ``hadoop.auth`` cookie with
  no token, which ``"required"`` refuses). Without TLS a man in the middle can
  still leave the token out: mutual authentication does not replace ``https``.
* **No delegation.** The tickets are never forwarded to the server.
* **The service** is ``HTTP@<host of the URL>`` (``HTTP/<host>@REALM``), the host
  name as written (``service_host`` names another: a URL by IP address, an alias).
  The Negotiate token is a credential for that service, valid for minutes: the
  auth must only be used for requests to the target's own origin.
* **Bounded.** libkrb5 waits about a minute for a KDC that does not answer, and
  cannot be interrupted: what may ask the KDC (getting the credentials and the
  service ticket, before each SPNEGO exchange) runs in a thread of its own, one
  at a time per auth, and the request waits for it no longer than its
  ``timeout`` (the read timeout of a ``(connect, read)`` pair); one still
  running then is left to finish, and until it has, the next requests fail at
  once. Tickets are cached: the KDC is asked once per ticket lifetime
  and per service, not at every request.
* **Errors** raise :class:`KerberosError` (a :class:`~sparkwatch.collector.TargetError`
  of reason ``auth``) with a message that says what to fix: a keytab that is
  missing, unreadable, not a keytab, or without the principal, a ticket cache
  that is missing or not one (raised by :func:`spnego_auth`, before any request);
  at a request (out of ``session.get``), a KDC that cannot be reached or does
  not answer in time, a key the KDC refuses (a keytab exported before the
  principal's key changed: a key version mismatch), an expired password, a
  disabled principal, an expired ticket cache, a service principal the KDC does
  not know, clock skew, a server that fails mutual authentication. Messages name
  principals, files and realms, never a key or a token. A server that refuses
  the token answers 401, as without this auth.
* **No secret in the logs.** ``requests_gssapi`` logs the ``Authorization``
  header (a token) at debug level and every failure with a traceback: its logger
  is set to ``CRITICAL`` when an auth is built; this module raises instead.
* **Threads.** One auth object may serve the request threads of a target at once:
  the security context of each request is kept per thread (``requests_gssapi``
  keeps one per host, shared by all threads: two threads authenticating to the
  same host at once would check one's answer against the other's context).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from typing import Callable, Optional
from urllib.parse import urlparse

from .collector import TargetError

try:  # the ``kerberos`` extra
    import gssapi
    import gssapi.exceptions
    from requests_gssapi import DISABLED, OPTIONAL, REQUIRED, HTTPSPNEGOAuth
    from requests_gssapi.exceptions import MutualAuthenticationError, SPNEGOExchangeError
except ImportError as e:  # pragma: no cover - depends on the install
    _MISSING: Optional[str] = f"{type(e).__name__}: {e}"
    HTTPSPNEGOAuth = object  # type: ignore[assignment,misc]
    DISABLED, OPTIONAL, REQUIRED = 3, 2, 1
else:
    _MISSING = None

MUTUAL = {"required": REQUIRED, "optional": OPTIONAL, "disabled": DISABLED}
KRB5_MECH = "1.2.840.113554.1.2.2"

# MIT krb5 error codes (com_err, /usr/include/krb5/krb5.h), as GSSAPI's minor status reports them
_KDC_UNREACH = -1765328228
_C_PRINCIPAL_UNKNOWN = -1765328378
_S_PRINCIPAL_UNKNOWN = -1765328377
_CLIENT_REVOKED = -1765328366
_KEY_EXP = -1765328361
_PREAUTH_FAILED = -1765328360
_BAD_INTEGRITY = -1765328353
_TKT_EXPIRED = -1765328352
_SKEW = -1765328347
_CC_NOTFOUND = -1765328243
_CC_END = -1765328242
_REALM_UNKNOWN = -1765328230
_FCC_NOFILE = -1765328189
_PREAUTH_FAILED_LIB = -1765328174
_REALM_CANT_RESOLVE = -1765328164
_KT_KVNONOTFOUND = -1765328154
_KEYTAB_MAGIC = b"\x05"  # every MIT keytab starts with 0x05 0x01 or 0x05 0x02


class KerberosError(TargetError):
    """Kerberos authentication cannot work as configured: the message says what to fix."""

    def __init__(self, message: str):
        super().__init__("auth", message)


def spnego_auth(principal: Optional[str] = None, keytab: Optional[str] = None, ccache: Optional[str] = None,
                mutual: str = "optional", service_host: Optional[str] = None,
                check_tickets: bool = True) -> "SpnegoAuth":
    """A ``requests`` auth for SPNEGO from ``principal`` and its ``keytab`` (a file path),
    or from the ticket cache file ``ccache`` (its default principal, or ``principal``).

    ``mutual``: ``"optional"`` (default), ``"required"`` or ``"disabled"`` (see the
    module's documentation). ``service_host``: the host of the service principal
    ``HTTP/<service_host>``, when it is not the host of the URL.

    Checks what it can without the network (the files, the principal in the
    keytab; with ``check_tickets``, that the ticket cache holds tickets of the
    principal) and raises :class:`KerberosError` when it cannot work. The
    configuration passes ``check_tickets=False``: a cache whose tickets another
    program renews may be empty or expired for a moment, which each request says."""
    if _MISSING is not None:
        raise KerberosError("Kerberos authentication needs the kerberos extra: pip install 'sparkwatch[kerberos]' "
                            f"(requests-gssapi and gssapi, built with libkrb5-dev): {_MISSING}")
    if mutual not in MUTUAL:
        raise KerberosError(f"mutual: {mutual!r} is not one of {', '.join(MUTUAL)}")
    if (keytab is None) == (ccache is None):
        raise KerberosError("give a keytab (with its principal) or a ticket cache, not both nor neither")
    if keytab is not None:
        if not principal:
            raise KerberosError(f"keytab {keytab}: the principal to authenticate as is missing")
        _check_keytab(principal, keytab)
        key = hashlib.sha256(f"{principal}\0{os.path.abspath(keytab)}".encode()).hexdigest()[:16]
        store = {"client_keytab": f"FILE:{os.path.abspath(keytab)}", "ccache": f"MEMORY:sparkwatch-{key}"}
        source = f"principal {principal} with keytab {keytab}"
    else:
        _check_file(ccache, "ticket cache", "run kinit (or k5start) for the exporter's principal, or use a keytab")
        store = {"ccache": f"FILE:{os.path.abspath(ccache)}"}
        source = f"ticket cache {ccache}" + (f" (principal {principal})" if principal else "")
    name = gssapi.Name(principal, gssapi.NameType.kerberos_principal) if principal else None

    def acquire() -> "gssapi.Credentials":
        return gssapi.Credentials(name=name, usage="initiate", store=store)

    def why(e: Exception, host: Optional["gssapi.Name"] = None) -> KerberosError:
        return _classify(e, principal, keytab, ccache, source, host)

    if ccache is not None and check_tickets:  # it is a ticket cache, with the principal (for a keytab, this asks the KDC)
        try:
            acquire()
        except gssapi.exceptions.GSSError as e:
            raise why(e) from None
    logging.getLogger("requests_gssapi").setLevel(logging.CRITICAL)
    return SpnegoAuth(acquire, MUTUAL[mutual], service_host, why, source)


def check_realm_config() -> None:
    """The realm configuration libkrb5 will read (``KRB5_CONFIG``'s first file, else
    ``/etc/krb5.conf``) exists and is readable: without it no realm has a KDC."""
    conf = _krb5_conf()
    how = "KRB5_CONFIG in the exporter's environment" if os.environ.get("KRB5_CONFIG") else \
        "the default; set KRB5_CONFIG in the exporter's environment to use another file"
    if not os.path.isfile(conf):
        raise KerberosError(f"the Kerberos realm configuration {conf} does not exist ({how}): it names the "
                            "realms and their KDCs")
    if not os.access(conf, os.R_OK):
        raise KerberosError(f"the Kerberos realm configuration {conf} is not readable by the exporter "
                            f"(uid {os.geteuid()})")


def _check_file(path: str, what: str, fix: str) -> None:
    if not os.path.isfile(path):
        raise KerberosError(f"{what} {path}: no such file ({fix})")
    if not os.access(path, os.R_OK):
        raise KerberosError(f"{what} {path}: not readable by the exporter (uid {os.geteuid()}): fix its owner or mode")


def _check_keytab(principal: str, keytab: str) -> None:
    """The keytab exists, is readable, is a keytab, and holds a key of ``principal``."""
    _check_file(keytab, "keytab", "export one for the principal: kadmin ktadd -k <file> -norandkey <principal>, "
                                  "or ktpass on Active Directory")
    with open(keytab, "rb") as f:
        if f.read(1) != _KEYTAB_MAGIC:
            raise KerberosError(f"keytab {keytab}: not a keytab file (a keytab starts with byte 0x05)")
    # acquiring acceptor credentials reads the keytab for the principal's keys: no network
    try:
        gssapi.Credentials(name=gssapi.Name(principal, gssapi.NameType.kerberos_principal), usage="accept",
                           store={"keytab": f"FILE:{os.path.abspath(keytab)}"},
                           mechs=[gssapi.OID.from_int_seq(KRB5_MECH)])
    except gssapi.exceptions.GSSError as e:
        raise KerberosError(f"keytab {keytab} has no key of principal {principal} ({_minor_text(e)}): "
                            "check the principal's name (and realm) with klist -k, or export its keys") from None


def _signed(code: int) -> int:
    return code - (1 << 32) if code >= (1 << 31) else code


def _minor_text(e: "gssapi.exceptions.GSSError") -> str:
    try:
        return e.gen_message().split("Minor (", 1)[-1].split("): ", 1)[-1].strip()
    except Exception:  # pragma: no cover - a message that does not decode
        return type(e).__name__


def _krb5_conf() -> str:
    """The realm configuration libkrb5 reads (the first file of ``KRB5_CONFIG``, usually the only one)."""
    return (os.environ.get("KRB5_CONFIG") or "/etc/krb5.conf").split(":")[0]


def _service(host) -> str:
    return str(host).replace("@", "/", 1) if host is not None else "the service"


def _classify(e: Exception, principal, keytab, ccache, source, host) -> KerberosError:
    """The :class:`KerberosError` for the GSSAPI error ``e`` (or another, by its message)."""
    if not isinstance(e, gssapi.exceptions.GSSError):
        return KerberosError(f"{source}: SPNEGO to {_service(host)} failed: {e}")
    code, text = _signed(e.min_code), _minor_text(e)
    realm = principal.rpartition("@")[2] if principal and "@" in principal else "the default realm"
    conf = _krb5_conf()
    if code == _KDC_UNREACH:
        return KerberosError(f"{source}: cannot reach any KDC of {realm} ({text}): check the KDC is up and "
                             f"reachable, and the realm's kdc entries in {conf}")
    if code in (_REALM_UNKNOWN, _REALM_CANT_RESOLVE):
        return KerberosError(f"{source}: no KDC known for {realm} ({text}): add the realm to {conf}")
    if code in (_PREAUTH_FAILED, _BAD_INTEGRITY, _PREAUTH_FAILED_LIB, _KT_KVNONOTFOUND):
        if keytab is not None:
            return KerberosError(f"{source}: the KDC refused the keytab's key ({text}): the keytab is out of date "
                                 "(the principal's key, or key version, changed after it was exported): "
                                 "export a new keytab")
        return KerberosError(f"{source}: the KDC refused the key ({text})")
    if code == _KEY_EXP:
        return KerberosError(f"{source}: the principal's password has expired at the KDC ({text}): have it "
                             "changed (or its expiry removed) and export a new keytab")
    if code == _C_PRINCIPAL_UNKNOWN:
        return KerberosError(f"{source}: the KDC does not know the principal ({text}): check its name and realm")
    if code == _CLIENT_REVOKED:
        return KerberosError(f"{source}: the principal is disabled or locked out at the KDC ({text})")
    if code == _S_PRINCIPAL_UNKNOWN:
        return KerberosError(f"{source}: the KDC has no service principal {_service(host)} ({text}): check the "
                             "target's host name (the URL's host as written, or service_host), or register "
                             "the service principal")
    if code == _SKEW:
        return KerberosError(f"{source}: clock skew too great with the KDC ({text}): synchronise this host's clock")
    if code == _TKT_EXPIRED or isinstance(e, gssapi.exceptions.ExpiredCredentialsError):
        fix = "renew them (kinit -R, k5start) or use a keytab" if ccache is not None else "retry"
        return KerberosError(f"{source}: the tickets have expired ({text}): {fix}")
    if ccache is not None and code in (_FCC_NOFILE, _CC_NOTFOUND, _CC_END):
        return KerberosError(f"{source}: no usable ticket in the cache ({text}): run kinit (or k5start) for "
                             "the exporter's principal, or use a keytab")
    return KerberosError(f"{source}: Kerberos failed ({text})")


class _PerThread:
    """An attribute with one value per thread (``default()`` until a thread sets its own)."""

    def __init__(self, default: Callable):
        self.default = default

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        local = obj._local
        if not hasattr(local, self.name):
            setattr(local, self.name, self.default())
        return getattr(local, self.name)

    def __set__(self, obj, value):
        setattr(obj._local, self.name, value)


class _KdcCall:
    """The exchanges with the KDC of one auth: one at a time, each waited for at most a
    timeout. libkrb5 waits about a minute for a KDC that does not answer and cannot be
    interrupted: an exchange still running at the timeout is left to finish in its
    thread, and until it has, the next ones fail at once (one such thread per auth)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: Optional[threading.Event] = None

    def run(self, fn: Callable, timeout: Optional[float], stuck: Callable[[], Exception],
            late: Callable[[float], Exception]):
        if timeout is None:
            with self._lock:
                return fn()
        end = time.monotonic() + timeout
        if not self._lock.acquire(timeout=max(0.0, timeout)):
            raise late(timeout)
        try:
            if self._running is not None and not self._running.is_set():
                raise stuck()
            done, box = threading.Event(), {}

            def call():
                try:
                    box["value"] = fn()
                except BaseException as e:  # noqa: B036 - handed to the waiting thread
                    box["error"] = e
                finally:
                    done.set()

            self._running = done
            threading.Thread(target=call, name="sparkwatch-kerberos", daemon=True).start()
            if not done.wait(max(0.0, end - time.monotonic())):
                raise late(timeout)
            if "error" in box:
                raise box["error"]
            return box["value"]
        finally:
            self._lock.release()


def _seconds(timeout) -> Optional[float]:
    """The read timeout of a ``requests`` timeout (a number, a (connect, read) pair, or None)."""
    if isinstance(timeout, tuple):
        timeout = timeout[-1] if timeout[-1] is not None else timeout[0]
    return None if timeout is None else float(timeout)


class SpnegoAuth(HTTPSPNEGOAuth):  # type: ignore[misc,valid-type]
    """``requests_gssapi.HTTPSPNEGOAuth`` whose exchanges with the KDC are bounded by the
    request's timeout, with fresh credentials for every exchange, its state per thread,
    and its failures raised as :class:`KerberosError`. Built by :func:`spnego_auth`."""

    context = _PerThread(dict)          # host -> the security context of this thread's exchange
    pos = _PerThread(lambda: None)      # the request body's position (to resend it)
    creds = _PerThread(lambda: None)    # the credentials of this thread's exchange
    _timeout = _PerThread(lambda: None)  # the timeout of this thread's request

    def __init__(self, acquire: Callable, mutual: int, service_host: Optional[str],
                 why: Callable[[Exception, Optional["gssapi.Name"]], KerberosError], source: str):
        self._local = threading.local()
        self._acquire = acquire
        self._why = why
        self._source = source
        self._kdc = _KdcCall()
        self.service_host = service_host
        super().__init__(mutual_authentication=mutual, delegate=False, opportunistic_auth=False,
                         target_name=self._target(service_host) if service_host else "HTTP")

    @staticmethod
    def _target(host: str) -> "gssapi.Name":
        return gssapi.Name(f"HTTP@{host}", gssapi.NameType.hostbased_service)

    def authenticate_user(self, response, **kwargs):
        self._timeout = _seconds(kwargs.get("timeout"))
        return super().authenticate_user(response, **kwargs)

    def _prepare(self, target: "gssapi.Name") -> "gssapi.Credentials":
        """Fresh credentials, with a ticket for ``target`` in their cache: whatever needs the KDC.

        Fresh: a handle whose tickets expired unrefreshed (the process stopped for longer
        than their lifetime) keeps failing, a new one from the same store fetches new ones.
        A plain Kerberos context gets the service ticket (SPNEGO would report a failure
        with Kerberos' error code renumbered); the SPNEGO context then finds it cached."""
        try:
            creds = self._acquire()
            gssapi.SecurityContext(usage="initiate", name=target, creds=creds,
                                   mech=gssapi.OID.from_int_seq(KRB5_MECH)).step()
            return creds
        except gssapi.exceptions.GSSError as e:
            raise self._why(e, target) from None

    def generate_request_header(self, response, host, is_preemptive=False):
        target = self._target(self.service_host or host)
        conf = _krb5_conf()
        try:
            self.creds = self._kdc.run(
                lambda: self._prepare(target), self._timeout,
                stuck=lambda: KerberosError(f"{self._source}: the KDC has not answered an earlier request yet: "
                                            f"check the KDC, and the realm's kdc entries in {conf}"),
                late=lambda t: KerberosError(f"{self._source}: no answer from the KDC within {t:.1f}s: check the "
                                             f"KDC, and the realm's kdc entries in {conf}"))
        except KerberosError as e:
            self._fail(response, e)
        try:
            return super().generate_request_header(response, host, is_preemptive)
        except SPNEGOExchangeError as e:
            self._fail(response, self._why(e.__context__ or e, target))

    def authenticate_server(self, response):
        if urlparse(response.url).hostname not in self.context:  # a token with no exchange of ours
            return False
        return super().authenticate_server(response)

    def handle_other(self, response):
        try:
            return super().handle_other(response)
        except MutualAuthenticationError:
            self._fail(response, KerberosError(
                f"{response.url.split('?')[0]}: the server did not prove it holds the service's key "
                f"(mutual authentication failed, HTTP {response.status_code})"))

    @staticmethod
    def _fail(response, error: KerberosError):
        if response is not None:
            response.close()
        raise error
