#!/usr/bin/env bash
# Installs the proxy as a systemd service: `make prereqs`, `make install`, `make uninstall`
# call this with the Makefile's variables (PYTHON, DESTDIR, PREFIX, CONFDIR, UNITDIR,
# SYSUSERSDIR, BINDIR) in the environment.
#
# install:   a virtualenv in PREFIX with the proxy, the command linked into BINDIR, the unit
#            in UNITDIR, the user (sysusers.d), CONFDIR/proxy.toml (kept if present).
# uninstall: the reverse, keeping the configuration, the state and the user.
# DESTDIR:   install into a staging root (for tests and packaging); the virtualenv's scripts
#            then name their interpreter as PREFIX/bin/python, where it will be, and nothing
#            is done to the running system (no user created, no daemon-reload).
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=ovirt-scheduler-proxy
PYTHON=${PYTHON:-python3}
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/$NAME}
CONFDIR=${CONFDIR:-/etc/$NAME}
UNITDIR=${UNITDIR:-/etc/systemd/system}
SYSUSERSDIR=${SYSUSERSDIR:-/etc/sysusers.d}
BINDIR=${BINDIR:-/usr/local/bin}
INCLUDEDIR=${INCLUDEDIR:-/usr/include}  # where the C headers of the system's libraries are
VENV=$DESTDIR$PREFIX

die() { echo "$NAME: $*" >&2; exit 1; }

# --- prerequisites ---------------------------------------------------------------------------
# ovirt-engine-sdk-python is a source package: pip compiles its C extension (gcc, Python's
# headers, libxml2's headers in INCLUDEDIR/libxml2).  Its dependency pycurl has binary wheels
# (libcurl and OpenSSL inside) for x86_64 and aarch64; elsewhere pip compiles it too, which
# needs curl-config and OpenSSL's headers.

pycurl_from_source() { case "$(uname -m)" in x86_64|aarch64) return 1 ;; *) return 0 ;; esac; }

install_command() {
  local py ids curl_deb="" curl_rpm=""
  py=$(basename "$PYTHON")
  ids=$( (. /etc/os-release 2>/dev/null && echo " ${ID:-} ${ID_LIKE:-} ") || echo "")
  if pycurl_from_source; then curl_deb=" libcurl4-openssl-dev libssl-dev"; curl_rpm=" libcurl-devel openssl-devel"; fi
  local deb="apt-get install -y gcc $py-dev $py-venv libxml2-dev$curl_deb"
  local rpm="dnf install -y gcc $py-devel libxml2-devel$curl_rpm"
  case "$ids" in
    *" debian "*|*" ubuntu "*) echo "$deb" ;;
    *" rhel "*|*" fedora "*|*" centos "*) echo "$rpm" ;;
    *) echo "$deb   (Debian, Ubuntu)"; echo "  $rpm   (EL9, Fedora)" ;;
  esac
}

prereqs() {
  [ -z "${SKIP_PREREQS:-}" ] || return 0
  local missing=() include
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    missing+=("Python 3.11 or newer as $PYTHON (on EL9: dnf install python3.11, then make ... PYTHON=python3.11)")
  fi
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=("$PYTHON's venv module with ensurepip")
  command -v gcc >/dev/null || missing+=("gcc")
  include=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null || true)
  [ -f "$include/Python.h" ] || missing+=("Python's C headers (Python.h)")
  [ -f "$INCLUDEDIR/libxml2/libxml/parser.h" ] || missing+=("libxml2's C headers")
  if pycurl_from_source; then
    command -v curl-config >/dev/null || missing+=("libcurl's development files (curl-config)")
    [ -f "$INCLUDEDIR/openssl/ssl.h" ] || missing+=("OpenSSL's C headers")
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "$NAME: the oVirt SDK is compiled when it is installed, and this machine lacks:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    echo "Install them with:" >&2
    echo "  $(install_command)" >&2
    exit 1
  fi
}

# --- install ---------------------------------------------------------------------------------

need_root() {
  [ -n "$DESTDIR" ] || [ "$(id -u)" = 0 ] \
    || die "$1 changes $PREFIX, $CONFDIR and $UNITDIR: run it as root (or set DESTDIR=a staging folder)"
}

install_venv() {
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  # Built from a copy, so the checkout gets no build/ or *.egg-info from this install.
  local src status=0
  src=$(mktemp -d)
  cp -r setup.cfg pyproject.toml README.md proxy balancers "$src"
  find "$src" -name __pycache__ -prune -exec rm -rf {} +
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$src" || status=$?
  rm -rf "$src"
  [ "$status" = 0 ] || die "pip could not install the proxy into $VENV (its messages above say why)"
  if [ -n "$DESTDIR" ]; then
    grep -rlI -- "$VENV" "$VENV/bin" "$VENV/pyvenv.cfg" | xargs -r sed -i "s|$VENV|$PREFIX|g"
  fi
}

install_files() {
  mkdir -p "$DESTDIR$BINDIR" "$DESTDIR$UNITDIR" "$DESTDIR$SYSUSERSDIR" "$DESTDIR$CONFDIR"
  ln -sfn "$PREFIX/bin/$NAME" "$DESTDIR$BINDIR/$NAME"
  sed -e "s|/opt/$NAME|$PREFIX|g" -e "s|/etc/$NAME|$CONFDIR|g" "config/$NAME.service" \
    > "$DESTDIR$UNITDIR/$NAME.service"
  chmod 0644 "$DESTDIR$UNITDIR/$NAME.service"
  install -m 0644 "config/$NAME.sysusers" "$DESTDIR$SYSUSERSDIR/$NAME.conf"
  if [ -e "$DESTDIR$CONFDIR/proxy.toml" ]; then
    echo "kept $CONFDIR/proxy.toml"
  else
    install -m 0644 config/proxy.toml "$DESTDIR$CONFDIR/proxy.toml"
  fi
}

# The service runs as its own user with ProtectHome=yes: an interpreter under /root or
# /home (pyenv, a user's build) would be out of its reach, and the virtualenv with it.
system_python() {
  local base
  base=$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.base_prefix))')
  case "$base/" in
    /root/*|/home/*) die "$PYTHON lives in $base, which the service cannot reach (ProtectHome=yes):" \
                         "use the system's Python, e.g. make install PYTHON=/usr/bin/python3" ;;
  esac
}

install_() {
  need_root "make install"
  prereqs
  [ -n "$DESTDIR" ] || system_python  # a staging root: its packager chooses the interpreter
  echo "installing into $VENV (a few minutes the first time: the oVirt SDK is compiled)"
  install_venv
  install_files
  if [ -z "$DESTDIR" ]; then
    if command -v systemd-sysusers >/dev/null; then
      systemd-sysusers "$SYSUSERSDIR/$NAME.conf"
    else
      echo "warning: no systemd-sysusers; create the system user $NAME yourself" >&2
    fi
    [ ! -d /run/systemd/system ] || systemctl daemon-reload
  fi
  cat <<EOF
installed. Next:
  1. edit $CONFDIR/proxy.toml ([engine]: url, user, password_file, ca_file)
  2. runuser -u $NAME -- $BINDIR/$NAME check --config $CONFDIR/proxy.toml
  3. systemctl daemon-reload && systemctl enable --now $NAME
EOF
}

uninstall() {
  need_root "make uninstall"
  if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
    systemctl disable --now "$NAME.service" 2>/dev/null || true
  fi
  rm -f "$DESTDIR$UNITDIR/$NAME.service" "$DESTDIR$SYSUSERSDIR/$NAME.conf"
  [ ! -L "$DESTDIR$BINDIR/$NAME" ] || rm -f "$DESTDIR$BINDIR/$NAME"
  # Only ever a virtualenv: never whatever else PREFIX might name.
  [ ! -f "$VENV/pyvenv.cfg" ] || rm -rf -- "$VENV"
  if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
  echo "uninstalled; kept $CONFDIR (configuration), /var/lib/$NAME and /var/log/$NAME (state, logs)" \
       "and the user $NAME (userdel $NAME removes it)"
}

case "${1:-}" in
  prereqs) prereqs ;;
  install) install_ ;;
  uninstall) uninstall ;;
  *) die "usage: $0 prereqs|install|uninstall (the Makefile's targets of the same names call it)" ;;
esac
