#!/usr/bin/env bash
# Checks the Debian packages packaging/build-deb.sh made, without lintian.
#
#   packaging/check-deb.sh [--install] [DEB...]
#
# DEB defaults to the three packages of the workspace version in <target dir>/debian.
# For each package: control fields (version, architecture, dependencies), the files and
# conffiles it must hold, maintainer scripts that parse, the units agreeing with the
# package (ExecStart binary and --config file shipped, User= created by postinst, data_dir
# under StateDirectory=, certificates under the directory postinst prepares), the shipped
# configs byte-identical to packaging/*.example.toml; then it extracts each package and runs
# every binary with --version and --help (and the CLI's `ca init|issue|show`).
#
# --install (root only; refuses if any sluice package is already installed): dpkg -i the
# three packages on this machine, check the users, groups, directories and modes, the units
# present but not enabled (and `systemd-analyze verify` as installed), then install again (postinst must be idempotent), remove (data
# and conffiles stay), and purge (they go; the users stay). The machine ends as it began,
# except for the two system users.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
install_test=0
debs=()
while (($#)); do
  case $1 in
    --install) install_test=1; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "check-deb.sh: unknown option $1" >&2; exit 64 ;;
    *) debs+=("$1"); shift ;;
  esac
done

version=$(sed -n '/^\[workspace\.package\]/,/^\[/ s/^version *= *"\([^"]*\)".*/\1/p' "$root/Cargo.toml")
deb_version=${version//-/\~}
arch=$(dpkg --print-architecture)
if ((${#debs[@]} == 0)); then
  target_dir=${CARGO_TARGET_DIR:-$root/target}
  [[ $target_dir = /* ]] || target_dir=$root/$target_dir
  for p in sluice-coordinator sluice-agent sluice; do
    debs+=("$target_dir/debian/${p}_${deb_version}_${arch}.deb")
  done
fi

failures=0
fail() { echo "  FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "  ok: $*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-check-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT

field() { dpkg-deb --field "$1" "$2"; }

# Expected contents per package: files, conffiles, binaries, user, tls dir.
expect_files() {
  case $1 in
    sluice-coordinator) echo "/usr/bin/sluice-coordinator /lib/systemd/system/sluice-coordinator.service /etc/sluice/coordinator.toml /usr/share/doc/sluice-coordinator/copyright /usr/share/sluice/monitoring/sluice-dashboard.json /usr/share/sluice/monitoring/sluice-alerts.yml" ;;
    sluice-agent) echo "/usr/bin/sluice-agent /lib/systemd/system/sluice-agent.service /etc/sluice-agent/agent.toml /usr/share/doc/sluice-agent/copyright /usr/bin/sluice-proxy /lib/systemd/system/sluice-proxy.service" ;;
    sluice) echo "/usr/bin/sluice /usr/share/doc/sluice/copyright" ;;
  esac
}
expect_conffiles() {
  case $1 in
    sluice-coordinator) echo "/etc/sluice/coordinator.toml" ;;
    sluice-agent) echo "/etc/sluice-agent/agent.toml" ;;
    sluice) echo "" ;;
  esac
}
example_of() {
  case $1 in
    /etc/sluice/coordinator.toml) echo "$root/packaging/coordinator.example.toml" ;;
    /etc/sluice-agent/agent.toml) echo "$root/packaging/agent.example.toml" ;;
  esac
}
toml_string() { # KEY FILE: the first `KEY = "value"` (top level keys come first in these files)
  sed -n "s/^$1 *= *\"\([^\"]*\)\".*/\1/p;T;q" "$2"
}
unit_value() { # KEY UNIT
  sed -n "s/^$1=//p;T;q" "$2"
}

# The proxy's unit has no config file and no certificates: it runs as the helper user
# postinst creates, in the agent's group, with its state and control socket where systemd
# makes them.
check_proxy_unit() { # UNIT EXTRACTED_DIR EXECSTART
  local unit=$1 x=$2 exec=$3 name
  name=$(basename "$unit")
  local user group state runtime reload
  user=$(unit_value User "$unit"); group=$(unit_value Group "$unit")
  state=$(unit_value StateDirectory "$unit"); runtime=$(unit_value RuntimeDirectory "$unit")
  reload=$(unit_value ExecReload "$unit")
  grep -qx "helper_user=$user" "$x/control/postinst" && ok "$name: User=$user created by postinst" \
    || fail "$name: User=$user is not the helper user postinst creates"
  grep -qx "user=$group" "$x/control/postinst" && ok "$name: Group=$group is the agent's group" \
    || fail "$name: Group=$group is not the package user's group"
  [[ $exec == *"--state-dir /var/lib/$state "* ]] && ok "$name: --state-dir is StateDirectory=$state" \
    || fail "$name: --state-dir does not match StateDirectory=$state"
  grep -qx "helper_state_dir=/var/lib/$state" "$x/control/postrm" && ok "$name: postrm purges /var/lib/$state" \
    || fail "$name: postrm does not purge /var/lib/$state"
  [[ $exec == *"--control-socket /run/$runtime/"* ]] && ok "$name: control socket under RuntimeDirectory=$runtime" \
    || fail "$name: control socket not under /run/$runtime"
  [[ $exec == *"--control-uid $group"* ]] && ok "$name: --control-uid $group" || fail "$name: the agent's user is not allowed on the socket"
  [[ $reload == "${exec%% *} --upgrade ${exec#* }" ]] && ok "$name: ExecReload is ExecStart --upgrade" \
    || fail "$name: ExecReload '$reload' is not ExecStart with --upgrade"
  [[ -n $(unit_value FileDescriptorStoreMax "$unit") && $(unit_value NotifyAccess "$unit") == all ]] \
    && ok "$name: FileDescriptorStoreMax and NotifyAccess=all" || fail "$name: fd store or NotifyAccess missing"
}

check_deb() {
  local deb=$1
  echo "==> $(basename "$deb")"
  [[ -f $deb ]] || { fail "$deb does not exist (run packaging/build-deb.sh)"; return; }
  local pkg x
  pkg=$(field "$deb" Package)
  x=$work/$pkg
  mkdir -p "$x/root" "$x/control"
  dpkg-deb --info "$deb" >"$x/info" || { fail "dpkg-deb --info"; return; }
  dpkg-deb --contents "$deb" >"$x/contents" || { fail "dpkg-deb --contents"; return; }
  dpkg-deb -x "$deb" "$x/root"
  dpkg-deb -e "$deb" "$x/control"

  # Control fields.
  [[ $(field "$deb" Version) == "$deb_version" ]] && ok "Version $deb_version" || fail "Version $(field "$deb" Version), want $deb_version"
  [[ $(field "$deb" Architecture) == "$arch" ]] && ok "Architecture $arch" || fail "Architecture $(field "$deb" Architecture), want $arch"
  [[ -n $(field "$deb" Maintainer) && -n $(field "$deb" Description) ]] && ok "Maintainer and Description" || fail "Maintainer/Description missing"
  local depends recommends
  depends=$(field "$deb" Depends)
  recommends=$(field "$deb" Recommends)
  [[ $depends == *libc6* ]] && ok "Depends on libc6 ($depends)" || fail "Depends lacks libc6: $depends"
  if [[ $pkg != sluice ]]; then
    [[ $depends == *adduser* ]] && ok "Depends on adduser" || fail "Depends lacks adduser: $depends"
  fi
  if [[ $pkg == sluice-agent ]]; then
    [[ $recommends == *docker.io* ]] && ok "Recommends docker.io" || fail "Recommends lacks docker.io: $recommends"
  fi

  # Files, each owned by root.
  local f
  for f in $(expect_files "$pkg"); do
    if grep -Eq " \.$f\$" "$x/contents"; then ok "ships $f"; else fail "does not ship $f"; fi
  done
  if [[ -n $(awk '$2 != "root/root"' "$x/contents") ]]; then fail "files not owned by root/root"; else ok "every file root/root"; fi

  # Conffiles.
  local want got
  want=$(expect_conffiles "$pkg" | tr ' ' '\n' | sed '/^$/d' | sort)
  got=$( { cat "$x/control/conffiles" 2>/dev/null || true; } | sed '/^$/d' | sort)
  [[ $want == "$got" ]] && ok "conffiles: ${got:-none}" || fail "conffiles: got '${got}', want '${want}'"
  for f in $got; do
    [[ -f $x/root$f ]] || fail "conffile $f not in the package"
    if cmp -s "$x/root$f" "$(example_of "$f")"; then ok "$f is $(basename "$(example_of "$f")")"; else fail "$f differs from $(example_of "$f")"; fi
  done

  # Maintainer scripts.
  local s
  for s in postinst prerm postrm; do
    if [[ $pkg == sluice ]]; then
      [[ ! -e $x/control/$s ]] || fail "the CLI package has a $s"
      continue
    fi
    if [[ -x $x/control/$s ]] && sh -n "$x/control/$s" && ! grep -q '@[A-Z_]*@' "$x/control/$s"; then
      ok "$s present, executable, parses"
    else
      fail "$s missing, not executable, unparsable or with placeholders"
    fi
  done

  # The unit agrees with the package.
  local unit
  for unit in "$x"/root/lib/systemd/system/*.service; do
    [[ -e $unit ]] || continue
    local exec bin config user state data_dir
    exec=$(unit_value ExecStart "$unit")
    bin=${exec%% *}
    config=$(sed -n 's/.*--config[= ]\([^ ]*\).*/\1/p' <<<"$exec")
    [[ -x $x/root$bin ]] && ok "$(basename "$unit"): ExecStart $bin shipped" || fail "$(basename "$unit"): ExecStart $bin not in the package"
    if [[ $(basename "$unit") == sluice-proxy.service ]]; then check_proxy_unit "$unit" "$x" "$exec"; continue; fi
    [[ -n $config && -f $x/root$config ]] && grep -qx "$config" "$x/control/conffiles" \
      && ok "$(basename "$unit"): --config $config is a conffile" \
      || fail "$(basename "$unit"): --config '$config' is not a shipped conffile"
    user=$(unit_value User "$unit")
    grep -qx "user=$user" "$x/control/postinst" && ok "$(basename "$unit"): User=$user created by postinst" \
      || fail "$(basename "$unit"): User=$user is not the user postinst creates ($(grep '^user=' "$x/control/postinst"))"
    state=$(unit_value StateDirectory "$unit")
    data_dir=$(toml_string data_dir "$x/root$config")
    [[ -n $state && $data_dir == "/var/lib/$state" ]] && ok "data_dir $data_dir is StateDirectory=$state" \
      || fail "data_dir '$data_dir' is not /var/lib/\$StateDirectory ($state)"
    [[ $data_dir == "$(sed -n 's/^state_dir=//p' "$x/control/postinst")"* ]] && ok "data_dir under postinst's state_dir" \
      || fail "data_dir $data_dir not under postinst's $(grep '^state_dir=' "$x/control/postinst")"
    local tls_dir key
    tls_dir=$(sed -n 's/^tls_dir=//p' "$x/control/postinst")
    for key in ca cert key; do
      f=$(sed -n '/^\[tls\]/,/^\[/ s/^'"$key"' *= *"\([^"]*\)".*/\1/p' "$x/root$config")
      [[ $f == "$tls_dir"/* ]] && ok "tls.$key $f under $tls_dir" || fail "tls.$key '$f' not under postinst's $tls_dir"
    done
  done

  # The binaries run.
  for f in "$x"/root/usr/bin/*; do
    local name out
    name=$(basename "$f")
    if out=$("$f" --version 2>&1) && [[ $out == *"$version"* ]]; then ok "$name --version: $out"; else fail "$name --version: $out"; fi
    if "$f" --help >"$x/help" 2>&1 && [[ -s $x/help ]]; then ok "$name --help"; else fail "$name --help: $(head -3 "$x/help")"; fi
  done
  if [[ $pkg == sluice ]]; then
    local ca=$work/ca
    if "$x/root/usr/bin/sluice" ca init --dir "$ca" >/dev/null \
      && "$x/root/usr/bin/sluice" ca issue --dir "$ca" --role client --name ci >/dev/null \
      && out=$("$x/root/usr/bin/sluice" ca show "$ca/ci.pem") && [[ $out =~ role:\ +client ]]; then
      ok "sluice ca init|issue|show"
    else
      fail "sluice ca init|issue|show"
    fi
  fi
}

for deb in "${debs[@]}"; do check_deb "$deb"; done

install_checks() {
  echo "==> install on this machine"
  if [[ $(id -u) != 0 ]]; then fail "--install needs root"; return; fi
  local p
  for p in sluice-coordinator sluice-agent sluice; do
    local status
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    if [[ -n $status && $status != not-installed ]]; then
      fail "$p is already installed here; not touching it"; return
    fi
  done
  command -v adduser >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq adduser >/dev/null; }
  dpkg -i "${debs[@]}" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i"; return; }
  ok "dpkg -i"
  mode() { stat -c '%U:%G %a' "$1"; }
  for p in sluice sluice-agent; do
    if getent passwd "$p" >/dev/null; then ok "user $p: $(getent passwd "$p")"; else fail "no user $p"; fi
    getent group "$p" >/dev/null && ok "group $p" || fail "no group $p"
  done
  if getent group docker >/dev/null; then
    [[ " $(id -nG sluice-agent) " == *" docker "* ]] && ok "sluice-agent in group docker" || fail "sluice-agent not in group docker"
  else
    ok "no docker group on this machine (the agent joins it when it exists)"
  fi
  [[ " $(id -nG sluice) " == *" docker "* ]] && fail "sluice (coordinator) is in group docker" || ok "sluice not in group docker"
  if getent passwd sluice-proxy >/dev/null; then ok "user sluice-proxy: $(getent passwd sluice-proxy)"; else fail "no user sluice-proxy"; fi
  [[ $(id -gn sluice-proxy 2>/dev/null) == sluice-agent ]] && ok "sluice-proxy's group is sluice-agent" || fail "sluice-proxy's group: $(id -gn sluice-proxy 2>&1)"
  [[ " $(id -nG sluice-proxy 2>/dev/null) " == *" docker "* ]] && fail "sluice-proxy is in group docker" || ok "sluice-proxy not in group docker"
  [[ $(mode /var/lib/sluice) == "sluice:sluice 750" ]] && ok "/var/lib/sluice sluice:sluice 0750" || fail "/var/lib/sluice: $(mode /var/lib/sluice)"
  [[ $(mode /var/lib/sluice-agent) == "sluice-agent:sluice-agent 700" ]] && ok "/var/lib/sluice-agent 0700" || fail "/var/lib/sluice-agent: $(mode /var/lib/sluice-agent)"
  [[ $(mode /etc/sluice/tls) == "root:sluice 750" ]] && ok "/etc/sluice/tls root:sluice 0750" || fail "/etc/sluice/tls: $(mode /etc/sluice/tls)"
  [[ $(mode /etc/sluice-agent/tls) == "root:sluice-agent 750" ]] && ok "/etc/sluice-agent/tls root:sluice-agent 0750" || fail "/etc/sluice-agent/tls: $(mode /etc/sluice-agent/tls)"
  for p in sluice-coordinator sluice-agent sluice-proxy; do
    [[ -f /lib/systemd/system/$p.service ]] && ok "/lib/systemd/system/$p.service present" || fail "$p.service missing"
    # Not enabled: no symlink to it under /etc/systemd/system (systemctl may have no systemd to ask).
    if [[ -n $(find /etc/systemd/system -name "$p.service" 2>/dev/null) ]]; then fail "$p.service is enabled"; else ok "$p.service not enabled"; fi
    if [[ -d /run/systemd/system ]]; then
      [[ $(systemctl is-active "$p.service" 2>/dev/null || true) != active ]] && ok "$p.service not started" || fail "$p.service was started"
    fi
    [[ $p == sluice-proxy ]] && continue
    [[ -n $(dpkg-query -W -f='${Conffiles}' "$p") ]] && ok "$p conffiles registered" || fail "$p has no registered conffiles"
  done
  for p in sluice sluice-coordinator sluice-agent sluice-proxy; do
    /usr/bin/$p --version >/dev/null && ok "/usr/bin/$p --version" || fail "/usr/bin/$p --version"
  done
  if command -v systemd-analyze >/dev/null; then
    # As installed: ExecStart names the installed binary, the unit parses.
    systemd-analyze verify /lib/systemd/system/sluice-coordinator.service /lib/systemd/system/sluice-agent.service \
      /lib/systemd/system/sluice-proxy.service \
      && ok "systemd-analyze verify on the installed units" || fail "systemd-analyze verify on the installed units"
  fi

  echo "  (again: postinst must be idempotent)"
  dpkg -i "${debs[@]}" >"$work/dpkg.log" 2>&1 && ok "dpkg -i over itself" || { cat "$work/dpkg.log" >&2; fail "dpkg -i over itself"; }
  [[ $(mode /var/lib/sluice) == "sluice:sluice 750" ]] || fail "/var/lib/sluice after reinstall: $(mode /var/lib/sluice)"

  touch /var/lib/sluice/marker
  dpkg --remove sluice-coordinator sluice-agent sluice >"$work/dpkg.log" 2>&1 && ok "dpkg --remove" || { cat "$work/dpkg.log" >&2; fail "dpkg --remove"; }
  [[ ! -e /usr/bin/sluice-coordinator && ! -e /usr/bin/sluice-proxy ]] && ok "binaries gone" || fail "/usr/bin/sluice-coordinator or sluice-proxy still there"
  [[ -f /var/lib/sluice/marker && -f /etc/sluice/coordinator.toml ]] && ok "remove keeps data and conffiles" || fail "remove lost data or conffiles"
  dpkg --purge sluice-coordinator sluice-agent sluice >"$work/dpkg.log" 2>&1 && ok "dpkg --purge" || { cat "$work/dpkg.log" >&2; fail "dpkg --purge"; }
  [[ ! -e /var/lib/sluice && ! -e /var/lib/sluice-agent ]] && ok "purge removes /var/lib/sluice and /var/lib/sluice-agent" || fail "purge left data behind"
  [[ ! -e /etc/sluice/coordinator.toml && ! -e /etc/sluice-agent/agent.toml ]] && ok "purge removes the conffiles" || fail "purge left conffiles"
  [[ ! -e /etc/sluice && ! -e /etc/sluice-agent ]] && ok "purge removes the empty /etc directories" || fail "purge left /etc/sluice or /etc/sluice-agent"
  getent passwd sluice >/dev/null && ok "user sluice kept after purge" || fail "user sluice removed"
  [[ ! -e /var/lib/sluice-proxy ]] && ok "purge removes /var/lib/sluice-proxy" || fail "purge left /var/lib/sluice-proxy"
}
((install_test)) && install_checks

if ((failures)); then
  echo "check-deb.sh: $failures check(s) failed" >&2
  exit 1
fi
echo "check-deb.sh: all packages good"
