#!/usr/bin/env bash
# What `npm test` needs besides npm packages: Debian's registry, skopeo, htpasswd, nginx, curl,
# testssl.sh, pebble, caddy, haproxy, OpenLDAP's slapd and ldapadd, openssl and redis-server (the end-to-end tests, the
# htpasswd fixtures, the TLS scan, the ACME CA, the benchmark's smoke test with its peers, the directory
# and the client certificates of the identity tests, the replicas' shared store).
# Installs the missing ones when it may (root, or passwordless sudo, with apt-get); otherwise names the
# exact command and fails, so that no test is skipped for a missing tool. `npm test` runs this first
# (pretest), and CI runs `npm test`: one list, used by both.
set -euo pipefail

# command -> Debian package
tools=(
  "docker-registry docker-registry"
  "skopeo skopeo"
  "htpasswd apache2-utils"
  "nginx nginx-light"
  "curl curl"
  "testssl testssl.sh"
  "pebble pebble"
  "caddy caddy"
  "haproxy haproxy"
  "slapd slapd"
  "ldapadd ldap-utils"
  "openssl openssl"
  "redis-server redis-server"
)
missing=()
for entry in "${tools[@]}"; do
  set -- $entry
  # slapd lives in /usr/sbin, which a non-root PATH may lack (the tests look there too)
  command -v "$1" >/dev/null 2>&1 || { [ "$1" = slapd ] && [ -x /usr/sbin/slapd ]; } || missing+=("$2")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

install="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "npm test needs these Debian packages (or your system's equivalents): ${missing[*]}" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  echo "installing what the tests need: ${missing[*]}" >&2
  sh -c "$install"
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  echo "installing what the tests need: ${missing[*]}" >&2
  sudo sh -c "$install"
else
  echo "npm test needs these Debian packages; install them with:" >&2
  echo "  sudo sh -c '$install'" >&2
  exit 1
fi
