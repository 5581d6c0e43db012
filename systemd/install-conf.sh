#!/bin/sh
# SPDX-License-Identifier: MIT
# meson install script: install-conf.sh SOURCE DEST. Copies the configuration file to
# $DESTDIR/DEST unless a file is there already (an administrator's edits are never
# overwritten by a re-install). Mode 0644, as for any file in /etc.
set -eu
src=$1
dest=${DESTDIR:-}$2

if [ -e "$dest" ]; then
        echo "Keeping $dest (already there; the shipped defaults are in p3samd.conf(5))"
        exit 0
fi
if [ -n "${MESON_INSTALL_DRY_RUN:-}" ]; then
        echo "Would install $src to $dest"
        exit 0
fi
echo "Installing $src to $dest"
mkdir -p "$(dirname "$dest")"
# Written aside and renamed: an interrupted install leaves no half file behind.
cp "$src" "$dest.tmp.$$"
chmod 0644 "$dest.tmp.$$"
mv "$dest.tmp.$$" "$dest"
