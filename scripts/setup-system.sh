#!/usr/bin/env bash
# Installs the Debian packages drimcheck needs (Makefile APT_PACKAGES, python3-venv included: stock Debian
# lacks it), without leaving an Orthanc service running.
# Idempotent: does nothing when every package is already installed.
set -euo pipefail
missing=()
for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup : paquets Debian manquants : ${missing[*]} (lancez « make setup » en root, ou installez-les avec apt-get)" >&2
  exit 2
fi
# Refuse service auto-start during the install (the orthanc and postgresql packages ship services).
guard_added=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard_added=1
fi
echo "setup : apt-get install ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ $guard_added -eq 1 ] && rm -f /usr/sbin/policy-rc.d
# On a systemd host the package may still have enabled the service: stop and disable it.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now orthanc postgresql >/dev/null 2>&1 || true
fi
if command -v service >/dev/null 2>&1; then service orthanc stop >/dev/null 2>&1 || true; service postgresql stop >/dev/null 2>&1 || true; fi
exit 0
