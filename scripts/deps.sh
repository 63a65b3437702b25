#!/usr/bin/env bash
# Installs the Debian packages sluice needs to build, test and benchmark,
# only those that are missing.  Not root: prints the apt-get line instead.
set -euo pipefail
PKGS=(build-essential cmake pkg-config liburing-dev libssl-dev libjemalloc-dev
      libcriterion-dev python3 python3-pytest python3-aiosmtpd swaks postfix
      strace openssl procps gnuplot-nox iproute2 libc-ares-dev libcrypt-dev
      fiu-utils libfiu-dev
      dnsmasq-base python3-cryptography prometheus libnet-ssleay-perl clang
      libcurl4-openssl-dev python3-dkim python3-nacl opendkim-tools python3-spf
      python3-dnspython libpsl-dev opendkim python3-milter liblua5.4-dev)
missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "sluice: missing Debian packages; run as root:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "sluice: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# postfix is only wanted for smtp-source/smtp-sink and the benchmark peer:
# never let its package start a system-wide instance on port 25.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
# prometheus is only wanted for promtool and a test's own server on a free
# loopback port: no package may start a system-wide daemon (prometheus on
# :9090, postfix on :25).  Where no policy-rc.d exists, one that refuses
# every start is in place for the install, and removed after it.
# (--no-install-recommends also keeps prometheus-node-exporter out.)
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# ... nor at the next boot: the package enables prometheus.service.
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    systemctl disable prometheus.service >/dev/null 2>&1 ||
        rm -f /etc/systemd/system/multi-user.target.wants/prometheus.service
fi
