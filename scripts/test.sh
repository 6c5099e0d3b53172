#!/usr/bin/env bash
# The project's test command: installs everything the tests need, then runs pytest under Xvfb.
#
#   ./scripts/test.sh [pytest args...]
#
# 1. Debian packages a real headless napari viewer needs: Xvfb, Mesa (OpenGL) and the xcb
#    libraries of Qt's xcb platform plugin (QT_QPA_PLATFORM=offscreen alone gives vispy no
#    OpenGL context). Installed with apt-get when missing (as root, or through sudo).
# 2. This package with its [testing] extra, editable, into the Python that runs the script
#    ($PYTHON, default python3).
# 3. pytest under xvfb-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

APT_PACKAGES=(
    xvfb xauth libgl1 libglx-mesa0 libgl1-mesa-dri libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3
    libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0
    libxcb-render-util0 libxcb-randr0 libxcb-shape0 libxcb-xfixes0 libxcb-cursor0
)
missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "== installing system packages: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    # with recommends, as verified on these machines (xvfb's recommended fonts and utilities)
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

echo "== installing napari-patchwork[testing] into $("$PYTHON" -c 'import sys; print(sys.executable)')"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[testing]"

echo "== running the tests under Xvfb"
exec xvfb-run -a -s "-screen 0 1280x1024x24" "$PYTHON" -m pytest "$@"
