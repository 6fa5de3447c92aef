#!/usr/bin/env bash
# Install the Debian packages prunekit's speech half needs (offline synthesizers, sox, sctk) where
# they are missing. Run by `make setup`; as root with apt-get it installs them, otherwise it names
# the packages to install and fails.
set -euo pipefail

PACKAGES="espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festlex-cmu festlex-poslex sox sctk"

missing=()
for pkg in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "prunekit needs these Debian packages: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
