#!/bin/sh
# Remove what deploy/install.sh installed. The config (/etc/hilsim) and the database
# (/var/lib/hilsim) stay unless --purge: they are the bench's state, and installing again picks
# them up.
#
#   sudo deploy/uninstall.sh             remove the service, the program, the user, the udev rule
#   sudo deploy/uninstall.sh --purge     ... and the config and the database too
#   deploy/uninstall.sh --dry-run        print what it would do, change nothing
set -eu

PREFIX=/opt/hilsim
VENV=$PREFIX/venv
CONFIG_DIR=/etc/hilsim
STATE_DIR=/var/lib/hilsim
UNIT=/etc/systemd/system/hilsim.service
DROP_INS=/etc/systemd/system/hilsim.service.d
UDEV_RULE=/etc/udev/rules.d/99-hilsim-meter.rules
LINK=/usr/local/bin/hilsim
SERVICE_USER=hilsim

DRY_RUN=0
PURGE=0

usage() {
    cat <<EOF
Usage: sudo $0 [--purge] [--dry-run]

Stops and disables hilsim, then removes $UNIT (and drop-ins in $DROP_INS), $UDEV_RULE,
$PREFIX, $LINK and the system user $SERVICE_USER.
Keeps the config $CONFIG_DIR and the database $STATE_DIR unless --purge.

Options:
  --purge     also delete $CONFIG_DIR and $STATE_DIR
  --dry-run   print every step instead of doing it (no root needed)
  -h, --help  this text
EOF
}

say() { printf '%s\n' "hilsim uninstall: $*"; }
fail() {
    printf '%s\n' "hilsim uninstall: error: $*" >&2
    exit 1
}
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '  would run: %s\n' "$*"
    else
        "$@"
    fi
}

# Remove a file or directory; a dry run lists it even when absent, so it shows the whole plan.
remove() {
    if [ -e "$1" ] || [ -L "$1" ]; then
        say "removing $1${2:+ ($2)}"
        run rm -rf "$1"
    elif [ "$DRY_RUN" = 1 ]; then
        say "removing $1${2:+ ($2)} (not present now)"
        run rm -rf "$1"
    fi
}

for arg in "$@"; do
    case $arg in
        --dry-run) DRY_RUN=1 ;;
        --purge) PURGE=1 ;;
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

if [ "$DRY_RUN" = 1 ]; then
    say "dry run: nothing will be changed"
fi
if [ "$(id -u)" -ne 0 ]; then
    if [ "$DRY_RUN" = 1 ]; then
        say "note: not root; the real uninstall needs: sudo $0"
    else
        fail "must run as root: sudo $0"
    fi
fi

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if systemctl cat hilsim.service >/dev/null 2>&1; then
        # Stopping ends running transactions (StopTransaction, reason Local) before the exit.
        say "stopping and disabling hilsim"
        run systemctl disable --now hilsim.service
    fi
else
    say "note: systemd is not running; nothing to stop"
fi

remove "$UNIT" "the unit"
remove "$DROP_INS" "local overrides"
remove "$UDEV_RULE" "the udev rule"
if [ -d /run/systemd/system ]; then
    run systemctl daemon-reload
    run systemctl reset-failed hilsim.service 2>/dev/null || true
fi
if command -v udevadm >/dev/null 2>&1 && [ -d /run/udev ]; then
    run udevadm control --reload
fi

# Only our own link: never a hilsim someone installed there by other means.
if [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$VENV/bin/hilsim" ]; then
    say "removing $LINK"
    run rm -f "$LINK"
fi
remove "$PREFIX" "the program and its virtual environment"

if getent passwd "$SERVICE_USER" >/dev/null 2>&1; then
    say "removing the system user $SERVICE_USER"
    run userdel "$SERVICE_USER"
fi
if getent group "$SERVICE_USER" >/dev/null 2>&1; then
    run groupdel "$SERVICE_USER"
fi

if [ "$PURGE" = 1 ]; then
    remove "$CONFIG_DIR" "--purge: the config"
    remove "$STATE_DIR" "--purge: the database"
else
    say "keeping $CONFIG_DIR (the config) and $STATE_DIR (the database); --purge deletes them"
fi

if [ "$DRY_RUN" = 1 ]; then
    say "dry run finished: nothing was changed"
else
    say "done."
fi
