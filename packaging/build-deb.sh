#!/usr/bin/env bash
# Builds the Debian packages sluice-coordinator, sluice-agent and sluice (the CLI) with plain
# `dpkg-deb --build` from cargo-built binaries. No cargo-deb, no debhelper.
#
#   packaging/build-deb.sh [--profile release|debug] [--no-build] [--out DIR]
#
#   --profile P   cargo profile whose binaries are packaged (default: $PROFILE, else release);
#                 `debug` reuses the binaries `cargo build` / `cargo test` already made.
#   --no-build    package what is in target/<profile>/ without running cargo.
#   --out DIR     where the .deb files go (default: <target dir>/debian).
#
# Version: the workspace's [workspace.package] version (a `-pre` suffix becomes `~pre`, so
# it sorts before the release); Architecture: `dpkg --print-architecture`. Binaries are
# stripped (STRIP=0 keeps symbols). Timestamps come from SOURCE_DATE_EPOCH, else the last
# commit, so the same tree gives the same packages. Prints the paths of the packages built.
#
# Layout (packaging/debian/daemon.* are the maintainer scripts' templates; the units in systemd/ are
# installed as they are, never enabled or started by the package):
#   sluice-coordinator  /usr/bin/sluice-coordinator, /lib/systemd/system/sluice-coordinator.service,
#                       /etc/sluice/coordinator.toml (conffile), /usr/share/sluice/monitoring/
#                       (dashboard, alert rules); user `sluice`, /var/lib/sluice
#   sluice-agent        /usr/bin/sluice-agent, /lib/systemd/system/sluice-agent.service,
#                       /etc/sluice-agent/agent.toml (conffile); user `sluice-agent` (in group
#                       docker), /var/lib/sluice-agent; and the proxy it drives:
#                       /usr/bin/sluice-proxy, /lib/systemd/system/sluice-proxy.service, user
#                       `sluice-proxy` (group sluice-agent), /var/lib/sluice-proxy
#   sluice              /usr/bin/sluice
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
profile=${PROFILE:-release}
build=1
out=

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --profile) profile=${2:?--profile needs a value}; shift 2 ;;
    --profile=*) profile=${1#*=}; shift ;;
    --no-build) build=0; shift ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-deb.sh: unknown argument $1" >&2; usage >&2; exit 64 ;;
  esac
done

# cargo calls the debug profile `dev`; its output directory is `debug`.
case $profile in
  debug|dev) cargo_profile=dev; profile_dir=debug ;;
  *) cargo_profile=$profile; profile_dir=$profile ;;
esac

for tool in dpkg-deb dpkg cargo; do
  command -v "$tool" >/dev/null || { echo "build-deb.sh: $tool is required" >&2; exit 69; }
done

target_dir=${CARGO_TARGET_DIR:-$root/target}
[[ $target_dir = /* ]] || target_dir=$root/$target_dir
bin_dir=$target_dir/$profile_dir
out=${out:-$target_dir/debian}
mkdir -p "$out"
out=$(cd "$out" && pwd)

version=$(sed -n '/^\[workspace\.package\]/,/^\[/ s/^version *= *"\([^"]*\)".*/\1/p' "$root/Cargo.toml")
[[ -n $version ]] || { echo "build-deb.sh: no version in [workspace.package] of Cargo.toml" >&2; exit 65; }
deb_version=${version//-/\~}
arch=$(dpkg --print-architecture)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}

if ((build)); then
  echo "build-deb.sh: cargo build --profile $cargo_profile (sluice-coordinator, sluice, sluice-agent, sluice-proxy)" >&2
  (cd "$root" && cargo build --locked --profile "$cargo_profile" -p sluice-coordinator -p sluice-agent -p sluice-proxy --bins)
fi
for b in sluice-coordinator sluice sluice-agent sluice-proxy; do
  [[ -x $bin_dir/$b ]] || { echo "build-deb.sh: $bin_dir/$b is missing (build it, or drop --no-build)" >&2; exit 66; }
done

# The lowest libc6 that provides every versioned glibc symbol a binary uses.
libc_dep() {
  local v
  v=$(objdump -T "$@" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1 || true)
  if [[ -n $v ]]; then echo "libc6 (>= $v)"; else echo "libc6"; fi
}

stage_root=$(mktemp -d "${TMPDIR:-/tmp}/sluice-deb.XXXXXX")
trap 'rm -rf "$stage_root"' EXIT

# daemon_scripts NAME USER STATE_DIR STATE_MODE TLS_DIR EXTRA_GROUP [HELPER_USER HELPER_UNIT HELPER_STATE_DIR]
# Renders packaging/debian/daemon.{postinst,prerm,postrm} for one daemon package; the helper
# is a second daemon of the package (the agent's proxy) with its own user in USER's group.
daemon_scripts() {
  local name=$1 user=$2 state_dir=$3 state_mode=$4 tls_dir=$5 extra_group=$6 script
  local helper_user=${7:-} helper_unit=${8:-} helper_state_dir=${9:-}
  install -d -m 0755 "$stage_root/$name/DEBIAN"
  for script in postinst prerm postrm; do
    sed -e "s#@PACKAGE@#$name#g" -e "s#@USER@#$user#g" -e "s#@STATE_DIR@#$state_dir#g" \
        -e "s#@STATE_MODE@#$state_mode#g" -e "s#@TLS_DIR@#$tls_dir#g" \
        -e "s#@UNIT@#$name.service#g" -e "s#@EXTRA_GROUP@#$extra_group#g" \
        -e "s#@HELPER_USER@#$helper_user#g" -e "s#@HELPER_UNIT@#$helper_unit#g" \
        -e "s#@HELPER_STATE_DIR@#$helper_state_dir#g" \
        "$root/packaging/debian/daemon.$script" > "$stage_root/$name/DEBIAN/$script"
    chmod 0755 "$stage_root/$name/DEBIAN/$script"
    if grep -n '@[A-Z_]*@' "$stage_root/$name/DEBIAN/$script" >&2; then
      echo "build-deb.sh: unreplaced placeholder in $name.$script" >&2; exit 70
    fi
  done
}

# make_pkg NAME DEPENDS RECOMMENDS SUMMARY DESCRIPTION
# Expects $stage_root/NAME to hold the file tree; adds DEBIAN/ and builds the .deb.
make_pkg() {
  local name=$1 depends=$2 recommends=$3 summary=$4 description=$5
  local dir=$stage_root/$name
  install -d -m 0755 "$dir/DEBIAN" "$dir/usr/share/doc/$name"
  install -m 0644 "$root/packaging/debian/copyright" "$dir/usr/share/doc/$name/copyright"
  if [[ -d $dir/etc ]]; then
    (cd "$dir" && find etc -type f | sort | sed 's#^#/#') > "$dir/DEBIAN/conffiles"
    chmod 0644 "$dir/DEBIAN/conffiles"
  fi
  local size
  size=$(du -sk --exclude=DEBIAN "$dir" | cut -f1)
  {
    echo "Package: $name"
    echo "Version: $deb_version"
    echo "Architecture: $arch"
    echo "Maintainer: Sluice maintainers <sluice@example.invalid>"
    echo "Installed-Size: $size"
    echo "Depends: $depends"
    [[ -z $recommends ]] || echo "Recommends: $recommends"
    echo "Section: admin"
    echo "Priority: optional"
    echo "Homepage: https://example.invalid/sluice"
    echo "Description: $summary"
    printf '%s\n' "$description" | fold -s -w 72 | sed 's/ *$//; s/^/ /'
  } > "$dir/DEBIAN/control"
  chmod 0644 "$dir/DEBIAN/control"
  # Directories 0755, files 0644 unless installed executable: whatever the umask was.
  find "$dir" -type d -exec chmod 0755 {} +
  local deb=$out/${name}_${deb_version}_${arch}.deb
  dpkg-deb --root-owner-group -Zxz --build "$dir" "$deb" >/dev/null
  echo "$deb"
}

install_bin() { # SRC DEST
  install -D -m 0755 "$1" "$2"
  if [[ ${STRIP:-1} != 0 ]] && command -v strip >/dev/null; then strip --strip-unneeded "$2"; fi
}

# sluice-coordinator
d=$stage_root/sluice-coordinator
install_bin "$bin_dir/sluice-coordinator" "$d/usr/bin/sluice-coordinator"
install -D -m 0644 "$root/systemd/sluice-coordinator.service" "$d/lib/systemd/system/sluice-coordinator.service"
install -D -m 0644 "$root/packaging/coordinator.example.toml" "$d/etc/sluice/coordinator.toml"
daemon_scripts sluice-coordinator sluice /var/lib/sluice 0750 /etc/sluice/tls ""
# The Grafana dashboard and Prometheus alert rules travel with the coordinator.
for f in README.md sluice-dashboard.json sluice-alerts.yml; do
  install -D -m 0644 "$root/packaging/monitoring/$f" "$d/usr/share/sluice/monitoring/$f"
done
make_pkg sluice-coordinator "adduser, $(libc_dep "$d/usr/bin/sluice-coordinator")" "sluice (= $deb_version)" \
  "Sluice coordinator: Raft-replicated deployment gateway" \
  "Sluice puts container images on servers for CI pipelines, safely: one deployment per service at a time behind a Raft lock fenced by log index, validation before anything is touched, health checks and automatic rollback. This package holds the coordinator node (run 1, 3 or 5 of them) and its systemd unit, installed but neither enabled nor started: configure /etc/sluice/coordinator.toml and its certificates first."

# sluice-agent
d=$stage_root/sluice-agent
install_bin "$bin_dir/sluice-agent" "$d/usr/bin/sluice-agent"
install -D -m 0644 "$root/systemd/sluice-agent.service" "$d/lib/systemd/system/sluice-agent.service"
install -D -m 0644 "$root/packaging/agent.example.toml" "$d/etc/sluice-agent/agent.toml"
# The proxy the agent drives (blue_green): its own unit and user, group sluice-agent.
install_bin "$bin_dir/sluice-proxy" "$d/usr/bin/sluice-proxy"
install -D -m 0644 "$root/systemd/sluice-proxy.service" "$d/lib/systemd/system/sluice-proxy.service"
# The unit runs the agent as sluice-agent with the docker group (SupplementaryGroups=docker);
# the user joins the group too, when it exists, so `sudo -u sluice-agent docker ps` works.
daemon_scripts sluice-agent sluice-agent /var/lib/sluice-agent 0700 /etc/sluice-agent/tls docker \
  sluice-proxy sluice-proxy.service /var/lib/sluice-proxy
make_pkg sluice-agent "adduser, $(libc_dep "$d/usr/bin/sluice-agent" "$d/usr/bin/sluice-proxy")" "docker.io | docker-ce" \
  "Sluice agent: runs Sluice deployments on this server's Docker" \
  "The Sluice agent is the only part of Sluice that touches a server: it owns the local Docker daemon and port table, obeys only Sluice coordinators over mutual TLS, refuses stale fencing tokens, and deploys, health-checks and rolls back containers. It ships sluice-proxy, the per-host proxy that owns the services' public ports for blue_green deployments (drains, persists its routes, upgrades without dropping a connection on systemctl reload). The systemd units are installed but neither enabled nor started: configure /etc/sluice-agent/agent.toml and its certificate first."

# sluice (the CLI)
d=$stage_root/sluice
install_bin "$bin_dir/sluice" "$d/usr/bin/sluice"
make_pkg sluice "$(libc_dep "$d/usr/bin/sluice")" "" \
  "Sluice command line: deploy, follow deployments, manage the CA and tokens" \
  "The sluice command talks to a Sluice coordinator over HTTPS: sluice deploy --wait for CI jobs (exit 0 success, 1 failed or rolled back, 2 refused by validation), sluice ca to create the project CA and issue certificates, sluice token to manage CI bearer tokens."
