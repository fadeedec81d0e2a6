# Sourced by the setup scripts: apt_install PKG... installs the Debian packages not yet present
# (APT_NO_RECOMMENDS=1: without their recommended packages).
apt_install() {
    local missing=() pkg sudo=""
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    printf '[apt] apt-get install %s\n' "${missing[*]}"
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -q
    local options=(-y -q)
    [[ ${APT_NO_RECOMMENDS:-0} == 1 ]] && options+=(--no-install-recommends)
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install "${options[@]}" "${missing[@]}"
}
