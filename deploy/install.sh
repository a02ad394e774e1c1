#!/bin/sh
# Install (or upgrade in place) hilsim as a systemd service on a Raspberry Pi.
#
#   sudo deploy/install.sh              run from a clone; re-run after `git pull` to upgrade
#   deploy/install.sh --dry-run         print what it would do, change nothing
#   deploy/install.sh --help
#
# Idempotent: every step checks before it acts, the config in /etc/hilsim and the database in
# /var/lib/hilsim are never overwritten, and the running service is only restarted once the new
# code and the existing config have been checked.
set -eu

PREFIX=/opt/hilsim
VENV=$PREFIX/venv
CONFIG_DIR=/etc/hilsim
CONFIG=$CONFIG_DIR/hilsim.toml
STATE_DIR=/var/lib/hilsim
UNIT_DIR=/etc/systemd/system
UNIT=$UNIT_DIR/hilsim.service
UDEV_RULE=/etc/udev/rules.d/99-hilsim-meter.rules
LINK=/usr/local/bin/hilsim
SERVICE_USER=hilsim
MIN_PYTHON=3.11

SOURCE=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
DRY_RUN=0
ALLOW_NON_PI=0
PRINT_CONFIG=0

usage() {
    cat <<EOF
Usage: sudo $0 [--dry-run] [--allow-non-pi] [--print-config]

Installs hilsim from this clone ($SOURCE):
  - Debian packages: python3-venv, python3-systemd (sd_notify, journald), python3-lgpio
  - system user '$SERVICE_USER' in groups gpio and dialout
  - a virtual environment in $VENV (with the system's site packages, for python3-systemd)
  - a starter config $CONFIG, written only if absent
  - the database directory $STATE_DIR
  - the udev rule $UDEV_RULE (/dev/hilsim-meter)
  - the unit $UNIT, enabled and (re)started
  - the command $LINK

Re-running upgrades in place and keeps the config and the database.

Options:
  --dry-run        print every step instead of doing it (no root needed)
  --allow-non-pi   install on a machine that is not a Raspberry Pi (for testing)
  --print-config   print the starter config this machine would get, and exit
  -h, --help       this text
EOF
}

say() { printf '%s\n' "hilsim install: $*"; }
fail() {
    printf '%s\n' "hilsim install: error: $*" >&2
    exit 1
}

# The command line as a shell would need it typed: arguments with spaces or quotes are quoted.
quoted() {
    line=""
    for word in "$@"; do
        case $word in
            "" | *[!A-Za-z0-9_./:=,+@%-]*)
                word="'$(printf '%s' "$word" | sed "s/'/'\\\\''/g")'"
                ;;
        esac
        line="$line${line:+ }$word"
    done
    printf '%s' "$line"
}

# Do it, or with --dry-run only say it.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '  would run: %s\n' "$(quoted "$@")"
    else
        "$@"
    fi
}

for arg in "$@"; do
    case $arg in
        --dry-run) DRY_RUN=1 ;;
        --allow-non-pi) ALLOW_NON_PI=1 ;;
        --print-config) PRINT_CONFIG=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            fail "unknown option '$arg'"
            ;;
    esac
done

charge_point_id() {
    # Unique per Pi without asking: the host name (never contains '/').
    name=$(hostname 2>/dev/null || cat /etc/hostname 2>/dev/null || echo bench)
    printf 'hilsim-%s' "$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '-' | cut -c1-40)"
}

starter_config() {
    sed "s/@CHARGE_POINT_ID@/$(charge_point_id)/" "$SOURCE/deploy/hilsim.toml"
}

if [ "$PRINT_CONFIG" = 1 ]; then
    starter_config
    exit 0
fi

# -- checks: each failure is one clear line and a non-zero exit, before anything changes ---------

if [ "$DRY_RUN" = 1 ]; then
    say "dry run: nothing will be changed"
fi

if [ "$(id -u)" -ne 0 ]; then
    if [ "$DRY_RUN" = 1 ]; then
        say "note: not root; the real install needs: sudo $0"
    else
        fail "must run as root: sudo $0"
    fi
fi

for file in pyproject.toml hilsim/__init__.py systemd/hilsim.service deploy/hilsim.toml \
    deploy/99-hilsim-meter.rules; do
    [ -f "$SOURCE/$file" ] || fail "$SOURCE/$file is missing: run this script from a hilsim clone"
done

model=""
for file in /proc/device-tree/model /sys/firmware/devicetree/base/model; do
    if [ -r "$file" ]; then
        model=$(tr -d '\0' <"$file")
        break
    fi
done
case $model in
    *"Raspberry Pi"*) say "board: $model" ;;
    *)
        if [ "$ALLOW_NON_PI" = 1 ]; then
            say "note: not a Raspberry Pi (${model:-no device-tree model}); going on (--allow-non-pi)"
        else
            fail "not a Raspberry Pi (${model:-no device-tree model}); use --allow-non-pi to install anyway"
        fi
        ;;
esac

command -v apt-get >/dev/null 2>&1 ||
    fail "apt-get not found: this installer needs Raspberry Pi OS or Debian (Bookworm or newer)"

command -v python3 >/dev/null 2>&1 || fail "python3 not found: sudo apt-get install python3"
python3 -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$MIN_PYTHON'.split('.'))))" ||
    fail "python3 is $(python3 -V 2>&1 | cut -d' ' -f2); hilsim needs $MIN_PYTHON or newer (Raspberry Pi OS Bookworm or newer)"

# No network shows first as no default route; an unreachable mirror is caught at apt-get update.
if ! awk 'NR > 1 && $2 == "00000000" { found = 1 } END { exit !found }' /proc/net/route 2>/dev/null &&
    ! awk '$1 == "00000000000000000000000000000000" && $2 == "00" && $10 != "lo" { found = 1 }
           END { exit !found }' /proc/net/ipv6_route 2>/dev/null; then
    fail "no network: no default route (connect the Pi to the network, then run this again)"
fi

if [ ! -d /run/systemd/system ]; then
    if [ "$DRY_RUN" = 1 ]; then
        say "note: systemd is not running here; the real install needs it"
    else
        fail "systemd is not running (is this a container?); hilsim installs as a systemd service"
    fi
fi

# -- packages -------------------------------------------------------------------------------------

say "installing Debian packages"
if [ "$DRY_RUN" = 1 ]; then
    run apt-get update
else
    apt-get update -q >/dev/null ||
        fail "apt-get update failed: no network, or the package sources are unreachable"
fi
packages="python3 python3-venv python3-pip python3-systemd"
# lgpio drives the GPIO on Bookworm; not every Debian architecture has it.
if apt-cache show python3-lgpio >/dev/null 2>&1; then
    packages="$packages python3-lgpio"
fi
# shellcheck disable=SC2086 # the package list is split on purpose
if [ "$DRY_RUN" = 1 ]; then
    run apt-get install -y $packages
else
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $packages >/dev/null ||
        fail "apt-get install $packages failed (see the messages above)"
fi

# -- user and groups ------------------------------------------------------------------------------

for group in gpio dialout; do
    if ! getent group "$group" >/dev/null; then
        # Raspberry Pi OS has both; elsewhere (--allow-non-pi) the unit still needs them to exist.
        say "creating system group $group"
        run groupadd --system "$group"
    fi
done
if getent passwd "$SERVICE_USER" >/dev/null; then
    say "user $SERVICE_USER exists; making sure it is in gpio and dialout"
    run usermod --append --groups gpio,dialout "$SERVICE_USER"
else
    say "creating system user $SERVICE_USER (groups gpio, dialout)"
    run useradd --system --user-group --groups gpio,dialout --home-dir "$STATE_DIR" \
        --no-create-home --shell /usr/sbin/nologin --comment "hilsim charge point" "$SERVICE_USER"
fi
if [ -n "${SUDO_USER:-}" ] && [ "${SUDO_USER:-}" != root ]; then
    say "adding $SUDO_USER to group $SERVICE_USER, for hilsim ctl without sudo (log in again)"
    run usermod --append --groups "$SERVICE_USER" "$SUDO_USER"
fi

# -- the program ----------------------------------------------------------------------------------

version='import sys; print("%d.%d" % sys.version_info[:2])'
if [ -x "$VENV/bin/python" ] &&
    [ "$("$VENV/bin/python" -c "$version" 2>/dev/null)" = "$(python3 -c "$version")" ]; then
    say "upgrading $VENV"
else
    # Missing, broken, or made by an older system Python (after an OS upgrade): start afresh.
    say "creating $VENV"
    run mkdir -p "$PREFIX"
    # System site packages: python3-systemd and python3-lgpio come from Debian, built for the
    # system's Python and libsystemd.
    run python3 -m venv --clear --system-site-packages "$VENV"
fi
say "installing hilsim from $SOURCE"
# pip always reinstalls a project given as a local directory, so the code after a `git pull` is
# in place even when the version number did not change.
if [ "$DRY_RUN" = 1 ]; then
    run "$VENV/bin/pip" install --upgrade "$SOURCE"
else
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade "$SOURCE" ||
        fail "pip could not install hilsim or its dependencies (no network, or the package index unreachable)"
    "$VENV/bin/python" -c 'from systemd import daemon, journal' 2>/dev/null ||
        fail "python3-systemd is not importable from $VENV (is the venv's Python the system's python3?)"
fi
run install -m 0644 "$SOURCE/README.md" "$PREFIX/README.md"
run ln -sfn "$VENV/bin/hilsim" "$LINK"

# -- config and data: created when absent, never overwritten --------------------------------------

run install -d -m 0750 -o root -g "$SERVICE_USER" "$CONFIG_DIR"
if [ -e "$CONFIG" ]; then
    say "keeping $CONFIG"
else
    say "writing the starter config $CONFIG (charge point id $(charge_point_id))"
    if [ "$DRY_RUN" = 1 ]; then
        printf '  would write: %s (root:%s 0640; see --print-config)\n' "$CONFIG" "$SERVICE_USER"
    else
        tmp=$(mktemp "$CONFIG_DIR/.hilsim.toml.XXXXXX")
        starter_config >"$tmp"
        chown "root:$SERVICE_USER" "$tmp"
        chmod 0640 "$tmp"
        mv "$tmp" "$CONFIG"
    fi
fi
run install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE_DIR"
if [ "$DRY_RUN" = 1 ]; then
    run chown -R "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR"
    run "$VENV/bin/python" -m hilsim.daemon.checks "$CONFIG"
else
    # A re-created user may have a new uid: the kept database must stay its own.
    chown -R "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR"
    # Refuse to restart into a config that does not load: the running service stays up.
    "$VENV/bin/python" -m hilsim.daemon.checks "$CONFIG" >/dev/null ||
        fail "fix $CONFIG (the line above says where), then run this again; the service was not restarted"
fi

# -- udev and systemd -----------------------------------------------------------------------------

say "installing the udev rule $UDEV_RULE"
run install -m 0644 "$SOURCE/deploy/99-hilsim-meter.rules" "$UDEV_RULE"
if command -v udevadm >/dev/null 2>&1 && [ -d /run/udev ]; then
    run udevadm control --reload
    run udevadm trigger --subsystem-match=tty --action=add
fi

say "installing the unit $UNIT"
run install -m 0644 "$SOURCE/systemd/hilsim.service" "$UNIT"
run systemctl daemon-reload
run systemctl enable hilsim.service
say "starting hilsim (waits for READY=1: config loaded, database open)"
if [ "$DRY_RUN" = 1 ]; then
    run systemctl restart hilsim.service
else
    if ! systemctl restart hilsim.service; then
        journalctl -u hilsim.service -n 30 --no-pager >&2 || true
        fail "hilsim did not start; the log is above (journalctl -u hilsim)"
    fi
    say "running: $(systemctl show -P StatusText hilsim.service)"
fi

if [ "$DRY_RUN" = 1 ]; then
    say "dry run finished: nothing was changed"
    exit 0
fi
cat <<EOF
hilsim install: done.
  edit the config:   sudo nano $CONFIG   then   sudo systemctl restart hilsim
  see it:            systemctl status hilsim   ·   hilsim ctl status
  read the log:      journalctl -u hilsim -f
  upgrade:           git pull && sudo deploy/install.sh
EOF
