# Sourced by the CI scripts: apt_install LABEL PACKAGE... installs Debian packages (as root,
# or through sudo) and exits with an error naming them when that is impossible or fails.
# The caller defines die().
apt_install() {
  local label="$1"; shift
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "$* missing and not root (no sudo) to apt-get install them"
    sudo="sudo"
  fi
  echo "$label: installing $*"
  $sudo apt-get update || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "$@" \
    || die "apt-get install $* failed"
}
