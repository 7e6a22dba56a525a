#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the report rendering tests (Debian packages chromium and
# chromium-driver), and a font with Chinese glyphs (fonts-wqy-microhei) for the Chinese report test, installed
# when missing and this user may install packages; otherwise those tests skip.
set -uo pipefail
has_cjk_font() { command -v fc-list >/dev/null 2>&1 && [[ -n "$(fc-list :lang=zh family 2>/dev/null)" ]]; }
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && has_cjk_font; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-browser: no apt-get; the report rendering test will be skipped" >&2
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "setup-browser: not root and no sudo; the report rendering test will be skipped" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q chromium chromium-driver fonts-wqy-microhei >/dev/null 2>&1 \
  || { $SUDO apt-get update -q >/dev/null 2>&1 \
       && $SUDO apt-get install -y -q chromium chromium-driver fonts-wqy-microhei >/dev/null 2>&1; } \
  || echo "setup-browser: could not install chromium and a Chinese font; the browser tests will be skipped" >&2
command -v chromium >/dev/null 2>&1 && echo "setup-browser: $(chromium --version 2>/dev/null)"
exit 0
