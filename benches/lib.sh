# Shared by the benchmark scripts: installing the tools they need.

# need COMMAND PACKAGE: install PACKAGE (as root, with apt) when COMMAND is missing.
need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
        else
            echo "missing $1: sudo apt-get install -y $2" >&2
            exit 1
        fi
    fi
}
